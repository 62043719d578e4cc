"""Dataset loaders, one per ``data.kind``: mnist, fashion_mnist, digits, idx, npz.

Each returns a partial ``Splits`` (NumPy arrays as stored, plus class names and where they came from) that
``dltrain.data.loading.load_splits`` completes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.config.schema import DigitsData, FashionMnistData, IdxData, MnistData, NpzData
from dltrain.data.formats import IDX_NAMES, read_idx, read_idx_folder, read_npz
from dltrain.data.loading import DATASETS
from dltrain.data.splits import TEST_SEED, Splits, carve
from dltrain.errors import DataError

log = logging.getLogger(__name__)

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DIGIT_CLASSES = [str(i) for i in range(10)]
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFLINE_HINT = "or try an offline config such as configs/digits_cnn.yaml"


def _from_arrays(arrays: dict[str, np.ndarray], source: str, classes: list[str]) -> Splits:
    return Splits(
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays.get("x_test"),
        y_test=arrays.get("y_test"),
        x_val=arrays.get("x_val"),
        y_val=arrays.get("y_val"),
        class_names=classes,
        source=source,
    )


def keras_cache_dir() -> Path:
    """Where keras.datasets caches downloads (``$KERAS_HOME`` or ``~/.keras``)."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "datasets"


def _from_path(path: Path, classes: list[str]) -> Splits:
    if path.is_dir():
        arrays = read_idx_folder(path)
        if arrays is None:
            wanted = ", ".join(IDX_NAMES.values())
            raise DataError(
                f"`data.path`: {path} does not hold the four IDX files ({wanted}, optionally .gz)."
            )
        return _from_arrays(arrays, str(path), classes)
    if path.suffix == ".npz":
        return _from_arrays(read_npz(path), str(path), classes)
    raise DataError(f"`data.path`: {path} not found or not an .npz file or IDX folder. Check the path.")


DOWNLOAD_HOST = "storage.googleapis.com"  # where keras.datasets fetches from


def _host_reachable(host: str) -> bool:
    """A name lookup, so an offline machine fails in milliseconds instead of importing Keras first."""
    import socket

    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _download(name: str, loader: Callable[[], Any], classes: list[str]) -> Splits:
    """Fall back to keras.datasets, which downloads once into the Keras cache."""
    if not _host_reachable(DOWNLOAD_HOST):
        raise DataError(
            f"{name} is not on this machine and this machine is offline (cannot resolve {DOWNLOAD_HOST}). "
            f"Put the file in {keras_cache_dir()}, set `data.path`, {OFFLINE_HINT}."
        )
    log.info("downloading %s through keras.datasets (cached in %s)", name, keras_cache_dir())
    try:
        (x_train, y_train), (x_test, y_test) = loader()
    except Exception as exc:  # urllib, socket and HTTP errors: the user needs the same advice for each
        raise DataError(
            f"{name} is not on this machine and could not be downloaded ({type(exc).__name__}: "
            f"{str(exc)[:160]}). Put the file in {keras_cache_dir()}, set `data.path`, {OFFLINE_HINT}."
        ) from None
    return Splits(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=classes,
        source=f"keras.datasets.{name}",
    )


@DATASETS.register("mnist")
def load_mnist(cfg: MnistData, seed: int) -> Splits:
    if cfg.path is not None:
        return _from_path(Path(cfg.path), DIGIT_CLASSES)
    cached = keras_cache_dir() / "mnist.npz"
    if cached.is_file():
        return _from_arrays(read_npz(cached, key="mnist cache"), str(cached), DIGIT_CLASSES)

    def fetch() -> Any:
        import keras

        return keras.datasets.mnist.load_data()

    return _download("mnist", fetch, DIGIT_CLASSES)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(cfg: FashionMnistData, seed: int) -> Splits:
    if cfg.path is not None:
        return _from_path(Path(cfg.path), FASHION_CLASSES)
    for folder in (DEBIAN_FASHION_DIR, keras_cache_dir() / "fashion-mnist"):
        arrays = read_idx_folder(folder) if folder.is_dir() else None
        if arrays is not None:
            return _from_arrays(arrays, str(folder), FASHION_CLASSES)

    def fetch() -> Any:
        import keras

        return keras.datasets.fashion_mnist.load_data()

    return _download("fashion_mnist", fetch, FASHION_CLASSES)


@DATASETS.register("digits")
def load_digits(cfg: DigitsData, seed: int) -> Splits:
    """scikit-learn's digits; the test split is drawn with ``TEST_SEED``, never the experiment's ``seed``."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = bunch.images.astype(np.uint8)  # values 0..16
    y = bunch.target.astype(np.int64)
    x_train, y_train, x_test, y_test = carve(x, y, cfg.test_split, TEST_SEED, "data.test_split")
    return Splits(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=DIGIT_CLASSES,
        scale=16.0,
        source="sklearn.datasets.load_digits",
        notes=[f"test: {len(y_test) if y_test is not None else 0} examples held out with a fixed seed"],
    )


@DATASETS.register("idx")
def load_idx(cfg: IdxData, seed: int) -> Splits:
    arrays: dict[str, np.ndarray] = {}
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        path = getattr(cfg, key)
        if path is None:
            continue
        if not Path(path).is_file():
            raise DataError(f"`data.{key}`: {path} not found. Check the path.")
        arrays[key] = read_idx(Path(path))
    if ("test_images" in arrays) != ("test_labels" in arrays):
        raise DataError("`data.test_images` and `data.test_labels` go together: set both or neither.")
    return Splits(
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays.get("test_images"),
        y_test=arrays.get("test_labels"),
        source=str(cfg.train_images),
    )


@DATASETS.register("npz")
def load_npz(cfg: NpzData, seed: int) -> Splits:
    raw = _from_arrays(read_npz(Path(cfg.path)), str(cfg.path), [])
    if (raw.x_test is None) != (raw.y_test is None) or (raw.x_val is None) != (raw.y_val is None):
        raise DataError(f"`data.path`: {cfg.path} must hold x and y together for each split.")
    return raw
