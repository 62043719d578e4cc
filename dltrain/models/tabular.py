"""The ``embed`` input stem of the ``csv`` kind: numeric columns standardised, categorical codes embedded.

A row arrives as one float vector: the numeric columns first, then one integer category code per
categorical column (0 = a category the training rows did not have). The stem splits the vector, passes the
numeric part through the training split's standardisation, looks each code up in an embedding of its own and
concatenates the results. Only built-in Keras layers are used (Reshape, Cropping1D, Embedding, Normalization,
Concatenate), so ``model.keras`` reloads in evaluate without any custom object being registered.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from dltrain.models.common import normalization


def _columns(x: keras.KerasTensor, start: int, stop: int, width: int, name: str) -> keras.KerasTensor:
    """Columns ``start:stop`` of a (batch, width, 1) tensor, as (batch, stop - start)."""
    part = keras.layers.Cropping1D((start, width - stop), name=f"{name}_slice")(x)
    return keras.layers.Reshape((stop - start,), name=name)(part)


def build(x: keras.KerasTensor, stem: dict[str, Any]) -> keras.KerasTensor:
    """The features the body starts from, given the raw Input ``x`` (batch, numeric + categorical)."""
    spec = stem["embed"]
    n_numeric = int(spec["numeric"])
    columns = spec["columns"]
    width = n_numeric + len(columns)
    cells = keras.layers.Reshape((width, 1), name="cells")(x)
    parts = []
    if n_numeric:
        numeric = _columns(cells, 0, n_numeric, width, "numeric")
        if "normalize" in stem:
            numeric = normalization(stem["normalize"])(numeric)
        parts.append(numeric)
    for j, column in enumerate(columns):
        code = _columns(cells, n_numeric + j, n_numeric + j + 1, width, f"code_{j}")
        vectors = keras.layers.Embedding(
            int(column["input_dim"]), int(spec["output_dim"]), name=f"embed_{j}"
        )(code)
        parts.append(keras.layers.Flatten(name=f"embedded_{j}")(vectors))
    return parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)


# ------------------------------------------------------------------------------------------ raw columns


def raw_columns(model: keras.Model, state: dict[str, Any]) -> keras.Model:
    """``model`` (which takes the encoded row) behind one named Input per raw CSV column, as
    ``keras.utils.FeatureSpace`` does: numeric columns float32 of shape (1,), categorical ones strings of shape (1,).

    The encoding the training rows taught (``data/state.json``: ``columns``, ``categories``,
    ``categorical_encoding``) becomes built-in Keras layers, so ``model.keras`` takes raw rows and loads with
    ``safe_mode=True``: a ``StringLookup`` per categorical column (its vocabulary the training rows' sorted
    categories, one out-of-vocabulary index 0), then one-hot columns (the OOV column cropped off: an unseen category
    is all zeros) or the category code as a float (``Dense`` with fixed weights 0..n: 0 for an unseen one), exactly
    the rows ``dltrain.data.tabular`` encodes.
    """
    columns = state["columns"]
    numeric, categorical = list(columns["numeric"]), list(columns["categorical"])
    categories = state.get("categories") or {}
    one_hot = state.get("categorical_encoding", "one_hot") == "one_hot"
    inputs: dict[str, keras.KerasTensor] = {}
    parts = []
    for name in numeric:
        inputs[name] = keras.Input(shape=(1,), dtype="float32", name=name)
        parts.append(inputs[name])
    for j, name in enumerate(categorical):
        vocabulary = list(categories[name])
        inputs[name] = keras.Input(shape=(1,), dtype="string", name=name)
        lookup = keras.layers.StringLookup(
            vocabulary=vocabulary, num_oov_indices=1, output_mode="one_hot", name=f"lookup_{j}"
        )(inputs[name])
        width = len(vocabulary) + 1
        if one_hot:
            cells = keras.layers.Reshape((width, 1), name=f"one_hot_{j}_cells")(lookup)
            cropped = keras.layers.Cropping1D((1, 0), name=f"one_hot_{j}_known")(cells)
            parts.append(keras.layers.Reshape((width - 1,), name=f"one_hot_{j}")(cropped))
        else:
            to_code = keras.layers.Dense(1, use_bias=False, trainable=False, name=f"code_of_{j}")
            code = to_code(lookup)
            to_code.set_weights([np.arange(width, dtype=np.float32)[:, None]])
            parts.append(code)
    row = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="encoded_row")(parts)
    return keras.Model(inputs, model(row), name=model.name)
