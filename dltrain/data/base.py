"""The ``Splits`` container, split carving and the checks every dataset passes through."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dltrain.errors import DataError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    """Arrays for each split. ``x`` keeps its stored dtype (uint8 images stay uint8 in memory)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]
    scale: float = 1.0
    """Inputs are divided by this in the input pipeline (255 for 8-bit images)."""
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

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
                else "give the dataset a test split"
            )
            raise DataError(f"this dataset has no {split} split; {hint}.")
        return x, y

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.y_train),
            "validation": 0 if self.y_val is None else len(self.y_val),
            "test": 0 if self.y_test is None else len(self.y_test),
        }

    def fingerprint(self, split: str) -> str:
        """A short hash of a split's contents, so evaluate can prove it scores the same examples."""
        x, y = self.get(split)
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(x).tobytes())
        digest.update(np.ascontiguousarray(y).astype(np.int64).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "input_shape": list(self.input_shape),
            "dtype": str(self.x_train.dtype),
            "scale": self.scale,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "sizes": self.sizes(),
        }


def carve(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Split off ``fraction`` of (x, y), stratified by class and drawn with ``seed``.

    Returns:
        (x_keep, y_keep, x_held, y_held); the held part is None when ``fraction`` is 0.
    """
    if fraction <= 0:
        return x, y, None, None
    rng = np.random.default_rng([seed, 7919])  # a stream of its own, independent of the shuffling
    n_held = int(round(len(y) * fraction))
    # Stratified: shuffle each class, deal the classes out in turn, hold out the first n_held of that
    # order. Every class is represented in proportion even when n_held is smaller than the class count.
    per_class = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        per_class.append(idx)
    rank = np.concatenate([np.arange(len(idx)) / len(idx) for idx in per_class])
    order = np.concatenate(per_class)[np.argsort(rank, kind="stable")]
    held_idx = np.sort(order[:n_held])
    if len(held_idx) == 0 or len(held_idx) == len(y):
        raise DataError(
            f"{what}={fraction} of {len(y)} examples leaves an empty split; choose a fraction between "
            f"{1 / max(len(y), 1):.3g} and {1 - 1 / max(len(y), 1):.3g}."
        )
    keep = np.ones(len(y), dtype=bool)
    keep[held_idx] = False
    return x[keep], y[keep], x[held_idx], y[held_idx]


def check_pair(
    x: np.ndarray, y: np.ndarray, split: str, source: str, num_classes: int | None = None
) -> np.ndarray:
    """Check one split's arrays and return integer labels; problems are ``DataError`` naming ``source``."""
    if len(x) == 0:
        raise DataError(f"{source}: the {split} split is empty.")
    if len(x) != len(y):
        raise DataError(
            f"{source}: the {split} split has {len(x)} inputs but {len(y)} labels; they must match."
        )
    if x.ndim < 2:
        raise DataError(f"{source}: {split} inputs have shape {x.shape}; expected (examples, features...).")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0][0])
        raise DataError(f"{source}: {split} input #{bad} contains NaN or inf; clean the data first.")
    y = np.asarray(y)
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
                f"{source}: {split} label #{bad} is {float(y[bad])}; labels must be class indices 0, 1, ..."
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


def scale_for(x: np.ndarray) -> float:
    """The divisor that maps stored inputs to [0, 1]-ish floats: 255 for uint8, 1 for floats."""
    if x.dtype == np.uint8:
        return 255.0
    if np.issubdtype(x.dtype, np.integer):
        return float(max(int(x.max()), 1))
    return 1.0


def load_splits(cfg: Any, seed: int) -> Splits:
    """Load the dataset named by ``cfg.kind`` and carve validation (and test, where needed) with ``seed``.

    Raises:
        DataError: the files are missing or malformed (exit 3), always before any model is built.
    """
    from dltrain.data.sources import DATASETS

    raw = DATASETS.get(cfg.kind)(cfg)
    names = raw.class_names
    y_train = check_pair(raw.x_train, raw.y_train, "train", raw.source, len(names) if names else None)
    if not names:
        names = [str(i) for i in range(int(y_train.max()) + 1)]
    x_train = raw.x_train
    x_val, y_val = raw.x_val, raw.y_val
    notes = list(raw.notes)
    if x_val is None or y_val is None:
        x_train, y_train, x_val, y_val = carve(
            x_train, y_train, cfg.validation_split, seed, "data.validation_split"
        )
        if y_val is not None:
            notes.append(f"validation: {len(y_val)} examples carved from train with seed {seed}")
    else:
        y_val = check_pair(x_val, y_val, "validation", raw.source, len(names))
    x_test, y_test = raw.x_test, raw.y_test
    if x_test is not None and y_test is not None:
        y_test = check_pair(x_test, y_test, "test", raw.source, len(names))
    for split, xs in (("validation", x_val), ("test", x_test)):
        if xs is not None and xs.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{raw.source}: {split} inputs have shape {xs.shape[1:]} but train inputs {x_train.shape[1:]}."
            )
    return Splits(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        class_names=names,
        scale=raw.scale if raw.scale else scale_for(x_train),
        source=raw.source,
        notes=notes,
    )
