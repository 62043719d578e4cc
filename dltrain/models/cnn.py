"""``cnn``: conv blocks from a list of filter counts, optional batch norm and residual skips, a dense head."""

from __future__ import annotations

import keras

from dltrain.config.schema import CnnModel
from dltrain.errors import ConfigError
from dltrain.models.common import MODELS, activation_layer, dropout_layer, head, input_stem, model_name
from dltrain.models.fused_bn import FusedBatchNormalization
from dltrain.models.transfer import load_backbone_weights


def _conv_block(x: keras.KerasTensor, filters: int, cfg: CnnModel) -> keras.KerasTensor:
    shortcut = x
    for _ in range(cfg.convs_per_block):
        x = keras.layers.Conv2D(filters, cfg.kernel_size, padding="same", use_bias=not cfg.batch_norm)(x)
        if cfg.batch_norm:
            x = FusedBatchNormalization(momentum=0.9)(x)  # a stock BatchNormalization in model.keras
        x = activation_layer(cfg.activation)(x)
    if cfg.residual:
        if shortcut.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(filters, 1, padding="same")(shortcut)
        x = keras.layers.Add()([x, shortcut])
    return x


def check_input_shape(input_shape: tuple[int, ...]) -> None:
    """A CNN needs images (checked when the model is built, before the run directory exists)."""
    if len(input_shape) not in (2, 3):
        raise ConfigError(
            f"`model.kind` cnn needs images (height, width[, channels]); the data has shape {input_shape}. "
            "Use model.kind dense or rnn for this data."
        )


@MODELS.register("cnn")
def build_cnn(
    cfg: CnnModel, *, input_shape: tuple[int, ...], num_outputs: int, scale: float, stem: dict | None = None
) -> keras.Model:
    check_input_shape(input_shape)
    inputs, x = input_stem(input_shape, scale, stem)
    if len(input_shape) == 2:
        x = keras.layers.Reshape((*input_shape, 1))(x)
    for filters in cfg.filters:
        x = _conv_block(x, filters, cfg)
        # Pool only while there is something left to halve (8x8 digits run out after three blocks).
        if cfg.pool != "none" and min(x.shape[1], x.shape[2]) >= 2:
            pool = keras.layers.MaxPooling2D if cfg.pool == "max" else keras.layers.AveragePooling2D
            x = pool(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x) if cfg.global_pool else keras.layers.Flatten()(x)
    if cfg.dropout:
        x = dropout_layer(cfg.dropout)(x)
    logits = head(x, cfg.dense, num_outputs, activation=cfg.activation, dropout=cfg.dropout)
    model = keras.Model(inputs, logits, name=model_name(cfg))
    load_backbone_weights(model, cfg.weights)
    return model
