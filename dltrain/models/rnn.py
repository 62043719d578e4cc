"""``rnn``: stacked SimpleRNN / LSTM / GRU layers, optionally bidirectional; images are read row by row."""

from __future__ import annotations

import keras

from dltrain.config.schema import RnnModel
from dltrain.models.common import MODELS, dropout_layer, head, input_stem, model_name

_CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple": keras.layers.SimpleRNN}


@MODELS.register("rnn")
def build_rnn(
    cfg: RnnModel, *, input_shape: tuple[int, ...], num_outputs: int, scale: float, stem: dict | None = None
) -> keras.Model:
    inputs, x = input_stem(input_shape, scale, stem)
    if len(x.shape) == 2:  # a plain sequence of numbers: one feature per step
        x = keras.layers.Reshape((x.shape[1], 1))(x)
    elif len(x.shape) > 3:  # an image with channels: each row is a step of width * channels features
        x = keras.layers.Reshape((input_shape[0], -1))(x)
    layer_cls = _CELLS[cfg.cell]
    for i, units in enumerate(cfg.units):
        layer = layer_cls(units, return_sequences=i < len(cfg.units) - 1)
        x = keras.layers.Bidirectional(layer)(x) if cfg.bidirectional else layer(x)
        if cfg.dropout:
            x = dropout_layer(cfg.dropout)(x)
    logits = head(x, cfg.dense, num_outputs, dropout=cfg.dropout)
    return keras.Model(inputs, logits, name=model_name(cfg))
