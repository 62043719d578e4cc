"""Dataset loaders, one per ``data.kind``: mnist, fashion_mnist, digits, idx, npz.

Each returns a ``RawData`` (NumPy arrays as stored, plus class names and where they came from).
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.errors import DataError
from dltrain.registry import Registry

log = logging.getLogger(__name__)

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DIGIT_CLASSES = [str(i) for i in range(10)]
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# The digits' test split is drawn with a fixed seed, not the experiment's, so configs with different seeds are
# still scored on the same held-out images.
DIGITS_TEST_SEED = 20240101
OFFLINE_HINT = "or try an offline config such as configs/digits_cnn.yaml"


@dataclass
class RawData:
    """What a loader returns. Loaders that carve their own validation split (chronological series, tables
    whose statistics must come from the training rows only) return ``x_val``; otherwise ``load_splits`` carves
    it with the seed. The fields after ``notes`` are for the newer kinds; see ``dltrain.data.splits.Splits``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    scale: float = 0.0
    source: str = ""
    notes: list[str] = field(default_factory=list)
    task: str | None = None
    input_kind: str = "array"
    input_shape: tuple[int, ...] | None = None
    stem: dict[str, Any] = field(default_factory=dict)
    target_names: list[str] = field(default_factory=list)
    target_mean: np.ndarray | None = None
    target_std: np.ndarray | None = None
    baselines: dict[str, np.ndarray] = field(default_factory=dict)
    baseline_name: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, list[str]] = field(default_factory=dict)


DATASETS: Registry[Callable[[Any], RawData]] = Registry("dataset")
# Kinds whose loader lives in a module of its own, imported only when a config uses it.
LOADER_MODULES = {
    "image_folder": "dltrain.data.images",
    "csv": "dltrain.data.tabular",
    "timeseries_csv": "dltrain.data.timeseries",
    "text_folder": "dltrain.data.text",
}

# ------------------------------------------------------------------------------------------ file IO

_IDX_DTYPES: dict[int, Any] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not.

    Raises:
        DataError: missing file, bad magic number, or a size that does not match the header.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:  # type: ignore[operator]
            data = fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex()}).")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header.")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: IDX header says {dims} ({expected} bytes of data) but the file holds {len(data) - header}; "
            "the file is truncated or corrupt."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzipped when the name ends in .gz); used by tests and tools."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    arr = np.asarray(array)
    if arr.dtype not in (np.uint8, np.int8):
        arr = arr.astype(">i4" if np.issubdtype(arr.dtype, np.integer) else ">f4")
    payload = bytes([0, 0, codes[arr.dtype], arr.ndim])
    payload += b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    if compress is None:
        compress = str(path).endswith(".gz")
    Path(path).write_bytes(gzip.compress(payload) if compress else payload)


_IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_folder(folder: Path) -> dict[str, np.ndarray] | None:
    """The four MNIST-layout IDX files of ``folder``; None when any is missing."""
    paths = {key: _find_idx(folder, stem) for key, stem in _IDX_NAMES.items()}
    if any(p is None for p in paths.values()):
        return None
    return {key: read_idx(p) for key, p in paths.items() if p is not None}


def read_npz(path: Path, key: str = "data.path") -> dict[str, np.ndarray]:
    """Arrays of an .npz file; requires x_train and y_train."""
    if not path.exists():
        raise DataError(f"`{key}`: {path} not found. Check the path.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:  # zipfile, pickle and format errors all mean the same to a user
        raise DataError(
            f"`{key}`: {path} is not a readable .npz file ({type(exc).__name__}: {exc})."
        ) from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise DataError(
            f"`{key}`: {path} lacks {', '.join(missing)}; it holds {', '.join(sorted(arrays)) or 'nothing'}. "
            "Expected x_train, y_train and optionally x_val, y_val, x_test, y_test."
        )
    return arrays


def _raw_from_arrays(arrays: dict[str, np.ndarray], source: str, classes: list[str]) -> RawData:
    return RawData(
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


def _from_path(path: Path, classes: list[str]) -> RawData:
    if path.is_dir():
        arrays = read_idx_folder(path)
        if arrays is None:
            wanted = ", ".join(_IDX_NAMES.values())
            raise DataError(
                f"`data.path`: {path} does not hold the four IDX files ({wanted}, optionally .gz)."
            )
        return _raw_from_arrays(arrays, str(path), classes)
    if path.suffix == ".npz":
        return _raw_from_arrays(read_npz(path), str(path), classes)
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


def _download(name: str, loader: Callable[[], Any], classes: list[str]) -> RawData:
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
    return RawData(x_train, y_train, x_test, y_test, class_names=classes, source=f"keras.datasets.{name}")


@DATASETS.register("mnist")
def load_mnist(cfg: Any) -> RawData:
    if cfg.path is not None:
        return _from_path(Path(cfg.path), DIGIT_CLASSES)
    cached = keras_cache_dir() / "mnist.npz"
    if cached.is_file():
        return _raw_from_arrays(read_npz(cached, key="mnist cache"), str(cached), DIGIT_CLASSES)

    def fetch() -> Any:
        import keras

        return keras.datasets.mnist.load_data()

    return _download("mnist", fetch, DIGIT_CLASSES)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(cfg: Any) -> RawData:
    if cfg.path is not None:
        return _from_path(Path(cfg.path), FASHION_CLASSES)
    for folder in (DEBIAN_FASHION_DIR, keras_cache_dir() / "fashion-mnist"):
        arrays = read_idx_folder(folder) if folder.is_dir() else None
        if arrays is not None:
            return _raw_from_arrays(arrays, str(folder), FASHION_CLASSES)

    def fetch() -> Any:
        import keras

        return keras.datasets.fashion_mnist.load_data()

    return _download("fashion_mnist", fetch, FASHION_CLASSES)


@DATASETS.register("digits")
def load_digits(cfg: Any) -> RawData:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = bunch.images.astype(np.uint8)  # values 0..16
    y = bunch.target.astype(np.int64)
    from dltrain.data.splits import carve

    x_train, y_train, x_test, y_test = carve(x, y, cfg.test_split, DIGITS_TEST_SEED, "data.test_split")
    return RawData(
        x_train,
        y_train,
        x_test,
        y_test,
        class_names=DIGIT_CLASSES,
        scale=16.0,
        source="sklearn.datasets.load_digits",
        notes=[f"test: {len(y_test) if y_test is not None else 0} examples held out with a fixed seed"],
    )


@DATASETS.register("idx")
def load_idx(cfg: Any) -> RawData:
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
    return RawData(
        arrays["train_images"],
        arrays["train_labels"],
        arrays.get("test_images"),
        arrays.get("test_labels"),
        source=str(cfg.train_images),
    )


@DATASETS.register("npz")
def load_npz(cfg: Any) -> RawData:
    raw = _raw_from_arrays(read_npz(Path(cfg.path)), str(cfg.path), [])
    if (raw.x_test is None) != (raw.y_test is None) or (raw.x_val is None) != (raw.y_val is None):
        raise DataError(f"`data.path`: {cfg.path} must hold x and y together for each split.")
    return raw
