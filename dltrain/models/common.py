"""Pieces shared by the model builders: the registry, the input stem and the classification head."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

from dltrain.registry import Registry

MODELS: Registry[Callable[..., keras.Model]] = Registry("model")


def input_stem(input_shape: tuple[int, ...], scale: float) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """An Input for raw stored values and the rescaled tensor the body starts from."""
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = keras.layers.Rescaling(1.0 / scale, name="rescale")(inputs) if scale != 1.0 else inputs
    return inputs, x


def activation_layer(name: str) -> keras.layers.Layer:
    if name == "leaky_relu":
        return keras.layers.LeakyReLU()
    return keras.layers.Activation(name)


def head(
    x: keras.KerasTensor,
    units: Sequence[int],
    num_classes: int,
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> keras.KerasTensor:
    """Hidden dense layers, then ``num_classes`` logits in float32 (stable under mixed precision)."""
    for width in units:
        x = keras.layers.Dense(width, use_bias=not batch_norm)(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = activation_layer(activation)(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    return keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)


def model_name(cfg: Any) -> str:
    return f"dltrain_{cfg.kind}"
