"""Datasets as NumPy splits (train / validation / test), loaded and checked before any model is built.

Loading is NumPy only, so a missing or malformed file is reported (exit 3) before TensorFlow is imported;
``dltrain.data.pipeline`` turns the splits into tf.data input. Only the download fallback touches Keras.
"""

from __future__ import annotations

from dltrain.data.builtin import DATASETS
from dltrain.data.splits import Splits, load_splits

__all__ = ["DATASETS", "Splits", "load_splits"]
