"""The ``Splits`` container, split carving and the checks every dataset passes through.

The bottom of the data layer: it imports nothing else from ``dltrain.data``. Loaders (``builtin``, ``images``,
``text``, ``tabular``, ``timeseries``) build on it, ``loading.load_splits`` completes what they return.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dltrain.errors import DataError

SPLITS = ("train", "validation", "test")
TASKS = ("classification", "binary", "regression")
INPUT_KINDS = ("array", "image_files", "text")

# Held-out test splits carved by the loaders (digits, the single-folder layout of image and text folders) are
# drawn with a fixed seed, not the experiment's, so configs with different seeds are scored on the same
# examples. csv's data.test_split has always drawn from a stream of its own: its seed stays what old runs
# used, so their test rows stay the same.
TEST_SEED = 20240101
CSV_TEST_SEED = 20240102


@dataclass(frozen=True)
class Splits:
    """Inputs and targets of each split, and what the model and the run need to know about them.

    ``x`` keeps its stored form: uint8 images stay uint8 in memory; ``input_kind`` "image_files" holds file
    paths (decoded per batch by the input pipeline), "text" holds strings. Targets: class indices (int64,
    shape (n,)) for classification and binary, float32 of shape (n, outputs) in original units for regression.

    A loader returns a partial ``Splits``: the arrays as stored (``x_val`` None unless it carved or found a
    validation split itself), ``task`` "auto" unless the data decides it, ``scale`` 0 unless the data fixes
    it. ``dltrain.data.loading.load_splits`` completes it (task, checked targets, class names, validation
    carve, scale, regression statistics); everything past ``load_splits`` sees complete splits only.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    scale: float = 0.0
    """Inputs are divided by this in the model's first layer (255 for 8-bit images); a loader's 0 means "from
    the training inputs' dtype" (``scale_for``)."""
    source: str = ""
    notes: list[str] = field(default_factory=list)
    task: str = "auto"
    """classification, binary or regression (``TASKS``); a loader's "auto" leaves it to ``load_splits``."""
    input_kind: str = "array"
    shape: tuple[int, ...] | None = None
    """One example's shape when ``x`` does not show it (image files: (height, width, channels))."""
    stem: dict[str, Any] = field(default_factory=dict)
    """Input transforms built into the model: normalize {mean, std}, augment {...}, embed {...}, text {...}."""
    target_names: list[str] = field(default_factory=list)
    target_mean: np.ndarray | None = None
    target_std: np.ndarray | None = None
    """Regression targets are standardised with these (training split only) while training."""
    baselines: dict[str, np.ndarray] = field(default_factory=dict)
    """Per split, a naive forecast in original units (the last value), for evaluate to compare against."""
    baseline_name: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    """JSON-able facts fit records in the run (statistics, vocabularies, image settings)."""
    manifest: dict[str, list[str]] = field(default_factory=dict)
    """Per split, which files (or rows) it holds."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.shape is not None:
            return tuple(self.shape)
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """Width of the model's last layer: classes, one sigmoid logit, or regression targets."""
        if self.task == "regression":
            return int(self.y_train.shape[1])
        if self.task == "binary":
            return 1
        return self.num_classes

    @property
    def metric(self) -> str:
        """The metric reported beside the loss: accuracy, or mean absolute error for regression."""
        return "mae" if self.task == "regression" else "accuracy"

    def adopt(self, split: str, x: np.ndarray) -> None:
        """Hold ``x`` (the same values in memory TensorFlow shares) as ``split``'s inputs instead."""
        attr = {"train": "x_train", "validation": "x_val", "test": "x_test"}[split]
        current = getattr(self, attr)
        if current is None or current.shape != x.shape or current.dtype != x.dtype:
            raise ValueError(f"adopt: {split} inputs differ in shape or dtype")
        object.__setattr__(self, attr, x)  # frozen: the values stay the same, only their memory moves

    def get(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The (x, y) arrays of ``split``; a split the dataset does not have raises ``DataError``."""
        pairs = {
            "train": (self.x_train, self.y_train),
            "validation": (self.x_val, self.y_val),
            "test": (self.x_test, self.y_test),
        }
        if split not in pairs:
            raise DataError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
        x, y = pairs[split]
        if x is None or y is None:
            hint = (
                "set data.validation_split above 0"
                if split == "validation"
                else "give the dataset a test split (data.test_split, or a test/ folder or file)"
            )
            raise DataError(f"this dataset has no {split} split; {hint}.")
        return x, y

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.y_train),
            "validation": 0 if self.y_val is None else len(self.y_val),
            "test": 0 if self.y_test is None else len(self.y_test),
        }

    def fingerprint(self, split: str, mtimes: bool = True) -> str:
        """A short hash of a split's contents, so evaluate can prove it scores the same examples.

        Image files count by path, size and (with ``mtimes``) modification time: reading 50k images to hash
        them would cost more than an epoch. Without ``mtimes`` a copy or a fresh checkout of the same files
        still matches (``file_fingerprints`` in run.json). Arrays and texts count by content.
        """
        x, y = self.get(split)
        digest = hashlib.sha256()
        if self.input_kind == "image_files":
            for path in x:
                try:
                    st = os.stat(str(path))
                    stamp = f"\0{st.st_mtime_ns}" if mtimes else ""
                    digest.update(f"{path}\0{st.st_size}{stamp}\n".encode())
                except OSError:
                    digest.update(f"{path}\0missing\n".encode())
        elif x.dtype.kind in ("U", "S", "O"):
            for item in x:
                digest.update(str(item).encode("utf-8", "surrogatepass") + b"\0")
        else:  # the bytes in place: ``tobytes()`` held a transient copy of the pixels (bench/README.md)
            digest.update(np.ascontiguousarray(x).reshape(-1).view(np.uint8).data)
        if self.task == "regression":
            digest.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
        else:
            digest.update(np.ascontiguousarray(y).astype(np.int64).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "task": self.task,
            "input_kind": self.input_kind,
            "input_shape": list(self.input_shape),
            "dtype": {"image_files": "file paths", "text": "text"}.get(
                self.input_kind, str(self.x_train.dtype)
            ),
            "scale": self.scale,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "sizes": self.sizes(),
        }
        if self.task == "regression":
            out["target_names"] = self.target_names
        return out


def carve_indices(
    y: np.ndarray, fraction: float, seed: int, what: str, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Indices to keep and to hold out: ``fraction`` of the examples, stratified by class, drawn with ``seed``.

    ``stratify`` False (regression targets) draws the held-out part uniformly.
    """
    n = len(y)
    rng = np.random.default_rng([seed, 7919])  # a stream of its own, independent of the shuffling
    n_held = int(round(n * fraction))
    if stratify:
        # Shuffle each class, deal the classes out in turn, hold out the first n_held of that order: every
        # class is represented in proportion even when n_held is smaller than the class count.
        per_class = []
        for cls in np.unique(y):
            idx = np.flatnonzero(y == cls)
            rng.shuffle(idx)
            per_class.append(idx)
        rank = np.concatenate([np.arange(len(idx)) / len(idx) for idx in per_class])
        order = np.concatenate(per_class)[np.argsort(rank, kind="stable")]
    else:
        order = rng.permutation(n)
    held_idx = np.sort(order[:n_held])
    if len(held_idx) == 0 or len(held_idx) == n:
        raise DataError(
            f"{what}={fraction} of {n} examples leaves an empty split; choose a fraction between "
            f"{1 / max(n, 1):.3g} and {1 - 1 / max(n, 1):.3g}."
        )
    keep = np.ones(n, dtype=bool)
    keep[held_idx] = False
    return np.flatnonzero(keep), held_idx


# TensorFlow's CPU tensors need buffers aligned to 64 bytes (Eigen's EIGEN_MAX_ALIGN_BYTES); numpy's large
# arrays start 16 bytes into a page. Aligned splits are shared with TensorFlow without a copy
# (dltrain.data.pipeline.arrays), so the training pixels are held once.
ALIGNMENT = 64


def is_aligned(x: np.ndarray) -> bool:
    return bool(x.flags.c_contiguous) and x.ctypes.data % ALIGNMENT == 0


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def aligned_take(x: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """``x[idx]`` (or a copy of ``x``) in a new C-contiguous array whose data starts on a 64-byte boundary."""
    rows = len(x) if idx is None else len(idx)
    if x.dtype.hasobject:
        return x.copy() if idx is None else x[idx]
    out = aligned_empty((rows, *x.shape[1:]), x.dtype)
    if idx is None:
        np.copyto(out, x)
    else:
        np.take(x, idx, axis=0, out=out)
    return out


def carve(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Split off ``fraction`` of (x, y), stratified by class and drawn with ``seed``.

    Returns:
        (x_keep, y_keep, x_held, y_held); the held part is None when ``fraction`` is 0.
    """
    if fraction <= 0:
        return x, y, None, None
    keep, held = carve_indices(y, fraction, seed, what)
    return aligned_take(x, keep), y[keep], aligned_take(x, held), y[held]


def check_pair(
    x: np.ndarray,
    y: np.ndarray,
    split: str,
    source: str,
    num_classes: int | None = None,
    task: str = "classification",
) -> np.ndarray:
    """Check one split's arrays and return its targets: int64 class indices, or float32 (n, k) for regression.

    Problems are ``DataError`` naming ``source``.
    """
    if len(x) == 0:
        raise DataError(f"{source}: the {split} split is empty.")
    if len(x) != len(y):
        raise DataError(
            f"{source}: the {split} split has {len(x)} inputs but {len(y)} labels; they must match."
        )
    numeric = x.dtype.kind not in ("U", "S", "O")
    if numeric and x.ndim < 2:
        raise DataError(f"{source}: {split} inputs have shape {x.shape}; expected (examples, features...).")
    if numeric and np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0][0])
        raise DataError(f"{source}: {split} input #{bad} contains NaN or inf; clean the data first.")
    y = np.asarray(y)
    if task == "regression":
        if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
            raise DataError(f"{source}: {split} targets have dtype {y.dtype}; regression needs numbers.")
        y = y.astype(np.float32).reshape(len(y), -1)
        if not np.all(np.isfinite(y)):
            bad = int(np.argwhere(~np.isfinite(y))[0][0])
            raise DataError(f"{source}: {split} target #{bad} is NaN or inf; clean the data first.")
        return y
    if y.ndim != 1:
        y = y.reshape(len(y), -1)
        if y.shape[1] != 1:
            raise DataError(
                f"{source}: {split} labels have shape {y.shape}; expected one class index per example."
            )
        y = y[:, 0]
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            bad = int(np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))[0])
            raise DataError(
                f"{source}: {split} label #{bad} is {float(y[bad])}; labels must be class indices 0, 1, ... "
                "(for real-valued targets set data.task: regression)."
            )
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: {split} labels have dtype {y.dtype}; expected integer class indices.")
    y = y.astype(np.int64)
    if y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
        bad = int(np.flatnonzero((y < 0) | (y >= (num_classes or np.iinfo(np.int64).max)))[0])
        raise DataError(
            f"{source}: {split} label #{bad} is {y[bad]}; expected a class index in 0..{(num_classes or 1) - 1}."
        )
    return y


def resolve_task(configured: str, loader_task: str, y: np.ndarray, source: str) -> str:
    """The task: the config's choice, else the loader's (unless "auto"), else inferred from the training targets.

    Integer-valued targets are classes (two of them: binary); other numbers are a regression.
    """
    y = np.asarray(y)
    numeric = np.issubdtype(y.dtype, np.number)
    finite = y[np.isfinite(y)] if numeric else y
    # NaN labels are reported as bad labels by check_pair, not taken as a sign of a regression.
    integral = numeric and bool(np.all(finite == np.round(finite)))
    if configured == "regression":
        if not numeric:
            raise DataError(f"{source}: data.task is regression but the targets are not numbers.")
        return "regression"
    if configured != "auto":
        task = configured
    elif loader_task != "auto":
        task = loader_task
    else:
        task = "classification" if integral else "regression"
    if task == "classification" and configured == "auto" and integral and y.ndim == 1:
        if len(np.unique(y)) == 2 and set(np.unique(y).tolist()) <= {0, 1}:
            task = "binary"
    return task


def scale_for(x: np.ndarray) -> float:
    """The divisor that maps stored inputs to [0, 1]-ish floats: 255 for uint8, 1 for floats."""
    if x.dtype == np.uint8:
        return 255.0
    if np.issubdtype(x.dtype, np.integer):
        return float(max(int(x.max()), 1))
    return 1.0
