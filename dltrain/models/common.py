"""Pieces shared by the model builders: the registry, the input stem and the output head."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from dltrain.config.schema import ModelConfig
from dltrain.registry import Registry

MODELS: Registry[Callable[..., keras.Model]] = Registry("model")

# Input transforms a dataset asks for (``Splits.stem``), built by the module named here, in this order:
# each is ``build(x, spec) -> x``. Text replaces the Input itself (strings in, token ids out).
STEM_MODULES = {
    "augment": "dltrain.models.augment",
    "embed": "dltrain.models.tabular",
}


def input_stem(
    input_shape: tuple[int, ...], scale: float, stem: dict[str, Any] | None = None
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """An Input for raw stored values and the tensor the body starts from.

    The transforms a user would otherwise have to repeat at prediction time live here, inside the model,
    so ``model.keras`` takes raw inputs: rescaling (x / scale), standardisation with the training split's
    statistics (``stem["normalize"]``), image augmentation (active in training only), categorical
    embeddings, text vectorisation.
    """
    stem = stem or {}
    if "text" in stem:
        text = importlib.import_module("dltrain.models.text")
        inputs = keras.Input(shape=(), dtype="string", name="inputs")
        return inputs, text.build(inputs, stem["text"])
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    if "embed" in stem:  # integer category codes sit in the input's last columns: split them off first
        return inputs, importlib.import_module(STEM_MODULES["embed"]).build(x, stem)
    if scale != 1.0:
        x = keras.layers.Rescaling(1.0 / scale, name="rescale")(x)
    if "normalize" in stem:
        x = normalization(stem["normalize"])(x)
    if "augment" in stem:
        x = importlib.import_module(STEM_MODULES["augment"]).build(x, stem["augment"])
    return inputs, x


def normalization(spec: dict[str, Any], name: str = "standardize") -> keras.layers.Layer:
    """(x - mean) / std over the last axis, with statistics fixed at build time (never re-adapted)."""
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    return keras.layers.Normalization(mean=mean, variance=np.square(std), name=name)


def activation_layer(name: str) -> keras.layers.Layer:
    if name == "leaky_relu":
        return keras.layers.LeakyReLU()
    return keras.layers.Activation(name)


def dropout_layer(rate: float) -> keras.layers.Layer:
    """A Dropout layer that computes in float32 under every precision policy.

    In bfloat16, TensorFlow draws the keep mask from bfloat16 uniforms (128 levels) and rounds the 1 / (1 - rate)
    scale to bfloat16: at rate 0.3 it keeps 69.55% of the units and scales them by 1.4297. Training then sees
    activations 0.56% smaller on average than inference does, at every dropout layer. In float32 the mask and
    the scale are exact; the two casts around it cost one elementwise pass. Saved as a stock Dropout.
    """
    return keras.layers.Dropout(rate, dtype="float32")


def head(
    x: keras.KerasTensor,
    units: Sequence[int],
    num_outputs: int,
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> keras.KerasTensor:
    """Hidden dense layers, then ``num_outputs`` outputs (logits, or regression values) in float32.

    float32 keeps the loss stable under mixed precision.
    """
    for width in units:
        x = keras.layers.Dense(width, use_bias=not batch_norm)(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = activation_layer(activation)(x)
        if dropout:
            x = dropout_layer(dropout)(x)
    return keras.layers.Dense(num_outputs, name="logits", dtype="float32")(x)


def model_name(cfg: ModelConfig) -> str:
    return f"dltrain_{cfg.kind}"
