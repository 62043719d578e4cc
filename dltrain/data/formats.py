"""Array file formats: IDX (the MNIST format, gzipped or not) and NumPy's .npz, read with one-line errors."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.data.splits import aligned_empty
from dltrain.errors import DataError

_IDX_DTYPES: dict[int, Any] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, straight into one 64-byte aligned array.

    The data is read into its final array (``dltrain.data.splits.aligned_empty``), so TensorFlow can use it in
    place: no bytes object, no byte-order copy, no aligned copy later (bench/README.md, one copy of the pixels).

    Raises:
        DataError: missing file, bad magic number, or a size that does not match the header.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:  # type: ignore[operator]
            return _read_idx_stream(fh, path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None


def _read_into(fh: Any, view: memoryview) -> int:
    filled = 0
    while filled < len(view):
        n = fh.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def _read_idx_stream(fh: Any, path: Path) -> np.ndarray:
    magic = fh.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {magic.hex()}).")
    ndim = magic[3]
    raw_dims = fh.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header.")
    dims = [int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    stored = np.dtype(_IDX_DTYPES[magic[2]])
    expected = int(np.prod(dims)) * stored.itemsize
    out = aligned_empty(tuple(dims), stored.newbyteorder("="))
    got = _read_into(fh, out.reshape(-1).view(np.uint8).data)
    extra = 0
    while chunk := fh.read(1 << 20):
        extra += len(chunk)
    if got != expected or extra:
        raise DataError(
            f"{path}: IDX header says {dims} ({expected} bytes of data) but the file holds {got + extra}; "
            "the file is truncated or corrupt."
        )
    if not stored.isnative:
        out.byteswap(inplace=True)  # big-endian file, little-endian machine: swapped in place
    return out


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


IDX_NAMES = {
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
    paths = {key: _find_idx(folder, stem) for key, stem in IDX_NAMES.items()}
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
