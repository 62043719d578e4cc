"""Model builders, one per ``model.kind``. Each returns a Keras model whose output is logits."""

from __future__ import annotations

from typing import Any

import keras

from dltrain.models import cnn, dense, rnn  # noqa: F401  (registers the builders)
from dltrain.models.common import MODELS


def build_model(cfg: Any, *, input_shape: tuple[int, ...], num_classes: int, scale: float) -> keras.Model:
    """Build the model named by ``cfg.kind``.

    Args:
        cfg: the ``model`` section of the config.
        input_shape: shape of one example as stored (derived from the data, never from the config).
        num_classes: number of output classes.
        scale: stored inputs are divided by this inside the model, so ``model.keras`` takes raw inputs.
    """
    return MODELS.get(cfg.kind)(cfg, input_shape=input_shape, num_classes=num_classes, scale=scale)


def with_probabilities(model: keras.Model) -> keras.Model:
    """The same layers with a softmax on top: what ``model.keras`` holds for users and for evaluate."""
    probs = keras.layers.Softmax(name="probabilities", dtype="float32")(model.outputs[0])
    return keras.Model(model.inputs[0], probs, name=model.name)


__all__ = ["MODELS", "build_model", "with_probabilities"]
