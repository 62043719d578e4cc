"""Datasets as NumPy splits (train / validation / test), loaded and checked before any model is built.

Loading is NumPy only, so a missing or malformed file is reported (exit 3) before TensorFlow is imported;
``dltrain.data.pipeline`` turns the splits into tf.data input. Only the download fallback touches Keras.

Imports run one way: ``splits`` (the container, carving, checks) <- ``loading`` (the registry and
``load_splits``) <- the loaders (``builtin``, ``images``, ``text``, ``tabular``, ``timeseries``), which use
``formats`` (IDX, .npz) and ``folders`` (class folders); ``state`` writes the splits into a run's data/.
"""

from __future__ import annotations

from dltrain.data import builtin  # noqa: F401  (registers mnist, fashion_mnist, digits, idx, npz)
from dltrain.data.loading import DATASETS, load_splits
from dltrain.data.splits import Splits

__all__ = ["DATASETS", "Splits", "load_splits"]
