"""Model builders, one per ``model.kind``. Each returns a Keras model whose output is logits (or, for a
regression, standardised values); ``with_outputs`` adds what ``model.keras`` gives users."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from dltrain.config.schema import ModelConfig
from dltrain.models import cnn, dense, pretrained, rnn  # noqa: F401  (registers the builders)
from dltrain.models.common import MODELS
from dltrain.models.fused_bn import REGISTERED_NAME as FUSED_BN


def build_model(
    cfg: ModelConfig,
    *,
    input_shape: tuple[int, ...],
    num_outputs: int,
    scale: float,
    stem: dict[str, Any] | None = None,
) -> keras.Model:
    """Build the model named by ``cfg.kind``.

    Args:
        cfg: the ``model`` section of the config.
        input_shape: shape of one example as stored (derived from the data, never from the config).
        num_outputs: width of the last layer (classes, 1 for binary, targets for regression).
        scale: stored inputs are divided by this inside the model, so ``model.keras`` takes raw inputs.
        stem: further input transforms the data asks for (``Splits.stem``).
    """
    return MODELS.get(cfg.kind)(cfg, input_shape=input_shape, num_outputs=num_outputs, scale=scale, stem=stem)


def with_outputs(
    model: keras.Model,
    task: str = "classification",
    target_mean: np.ndarray | None = None,
    target_std: np.ndarray | None = None,
) -> keras.Model:
    """What ``model.keras`` holds for users and for evaluate: class probabilities (softmax; for binary, the
    two probabilities [1 - p, p]) or regression values in the targets' original units."""
    out = model.outputs[0]
    if task == "regression":
        if target_mean is not None and target_std is not None:
            out = keras.layers.Rescaling(
                np.asarray(target_std, np.float32),
                offset=np.asarray(target_mean, np.float32),
                name="original_units",
                dtype="float32",
            )(out)
        return keras.Model(model.inputs[0], out, name=model.name)
    if task == "binary":
        p = keras.layers.Activation("sigmoid", dtype="float32")(out)
        probs = keras.layers.Concatenate(name="probabilities", dtype="float32")(
            [keras.layers.Rescaling(-1.0, offset=1.0, dtype="float32")(p), p]
        )
        return keras.Model(model.inputs[0], probs, name=model.name)
    probs = keras.layers.Softmax(name="probabilities", dtype="float32")(out)
    return keras.Model(model.inputs[0], probs, name=model.name)


def portable(model: keras.Model) -> keras.Model:
    """The same network and weights for ``model.keras``: every layer in float32 (a mixed-precision run's
    model loads, runs and exports on any machine), built from stock Keras layers only, so that plain Keras
    loads it without dltrain. ``model`` itself when it already is."""
    config = model.get_config()
    if not _make_portable(config):
        return model
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _make_portable(node: Any) -> bool:
    changed = False
    if isinstance(node, dict):
        policy = node.get("config", {}).get("name", "") if node.get("class_name") == "DTypePolicy" else ""
        if str(policy).startswith("mixed_"):
            node["config"]["name"] = "float32"
            changed = True
        if node.get("registered_name") == FUSED_BN:  # same config and weights as the stock layer
            node.update(module="keras.layers", class_name="BatchNormalization", registered_name=None)
            changed = True
        for value in node.values():
            changed = _make_portable(value) or changed
    elif isinstance(node, list):
        for value in node:
            changed = _make_portable(value) or changed
    return changed


def with_probabilities(model: keras.Model) -> keras.Model:
    """The same layers with a softmax on top (classification)."""
    return with_outputs(model, "classification")


__all__ = ["MODELS", "build_model", "portable", "with_outputs", "with_probabilities"]
