"""The text stem: raw strings in, token embeddings out, built into the model so ``model.keras`` reads text.

The vocabulary is learned once, on the training split only (``adapt_vocabulary``, called by the trainer), and
then fixed in the model (``build``): validation and test words the training texts never used map to the
out-of-vocabulary token, as they would for a new text at prediction time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

# TextVectorization's defaults, named so the loader's check for texts without words can match them.
STANDARDIZE = "lower_and_strip_punctuation"
SPLIT = "whitespace"


def _vectorizer(spec: dict[str, Any], vocabulary: Sequence[str] | None = None) -> keras.layers.Layer:
    return keras.layers.TextVectorization(
        max_tokens=int(spec["max_tokens"]),
        standardize=STANDARDIZE,
        split=SPLIT,
        output_mode="int",
        output_sequence_length=int(spec["sequence_length"]),
        vocabulary=None if vocabulary is None else list(vocabulary),
        name="vectorize",
    )


def adapt_vocabulary(texts: np.ndarray, spec: dict[str, Any]) -> list[str]:
    """The vocabulary of ``texts`` (the training split): the ``max_tokens`` most frequent words.

    Index 0 is the padding token "" and index 1 the out-of-vocabulary token "[UNK]", as Keras lists them.
    Ties in frequency are broken by the words themselves, so the same texts always give the same vocabulary
    (a resumed run rebuilds exactly the model it checkpointed).
    """
    import tensorflow as tf

    layer = _vectorizer(spec)
    with tf.device("/cpu:0"):  # string ops live on the CPU, whatever strategy trains the model
        strings = tf.constant([str(t).encode("utf-8") for t in texts], dtype=tf.string)
        layer.adapt(tf.data.Dataset.from_tensor_slices(strings).batch(1024))
    return [str(token) for token in layer.get_vocabulary()]


def build(inputs: keras.KerasTensor, spec: dict[str, Any]) -> keras.KerasTensor:
    """Strings (batch,) -> token ids (batch, sequence_length) -> embeddings (batch, sequence_length, dim).

    Padding (id 0) is masked, so an RNN stops at the end of each text and a pooled mean counts real tokens
    only. TextVectorization pads at the end, which is the padding cuDNN's LSTM/GRU kernels accept.
    """
    vocabulary = spec["vocabulary"]
    ids = _vectorizer(spec, vocabulary)(inputs)
    return keras.layers.Embedding(
        input_dim=len(vocabulary),
        output_dim=int(spec["embedding_dim"]),
        mask_zero=True,
        name="embed_tokens",
    )(ids)
