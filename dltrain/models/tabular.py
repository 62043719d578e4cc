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
