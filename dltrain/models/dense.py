"""``dense``: a multilayer perceptron (no hidden layer is the Keras tutorial's softmax regression)."""

from __future__ import annotations

import keras

from dltrain.config.schema import DenseModel
from dltrain.models.common import MODELS, head, input_stem, model_name


@MODELS.register("dense")
def build_dense(
    cfg: DenseModel, *, input_shape: tuple[int, ...], num_outputs: int, scale: float, stem: dict | None = None
) -> keras.Model:
    inputs, x = input_stem(input_shape, scale, stem)
    if stem and "text" in stem:  # token embeddings: their mean over the text (padding masked out)
        x = keras.layers.GlobalAveragePooling1D(name="mean_of_tokens")(x)
    elif len(x.shape) > 2:
        x = keras.layers.Flatten()(x)
    logits = head(
        x, cfg.units, num_outputs, activation=cfg.activation, dropout=cfg.dropout, batch_norm=cfg.batch_norm
    )
    return keras.Model(inputs, logits, name=model_name(cfg))
