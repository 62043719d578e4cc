"""Real Fashion-MNIST split by class for transfer learning: a pretraining set of some classes (an .npz) and a
small image folder of other, held-out classes (PNG files), as tests/test_transfer.py and bench/ use them."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
HELDOUT_CLASSES = (5, 6, 7, 8, 9)


def _idx(name: str) -> np.ndarray:
    raw = gzip.open(FASHION / name).read()
    if "labels" in name:
        return np.frombuffer(raw, np.uint8, offset=8)
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)


def load(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    return _idx(f"{prefix}-images-idx3-ubyte.gz"), _idx(f"{prefix}-labels-idx1-ubyte.gz")


def write_pretrain_npz(path: Path, per_class: int = 600) -> Path:
    """The pretraining classes: ``per_class`` training images each (labels 0..4)."""
    x, y = load("train")
    keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in PRETRAIN_CLASSES])
    np.savez(path, x_train=x[keep], y_train=y[keep].astype(np.int64))
    return path


def write_heldout_folder(root: Path, per_class: int = 50, val_per_class: int = 100) -> Path:
    """root/train/<class>/*.png (``per_class`` each, from Fashion-MNIST's training set) and root/valid/<class>/
    (``val_per_class`` each, from its test set) for the held-out classes."""
    import keras

    for split, source, n in (("train", "train", per_class), ("valid", "test", val_per_class)):
        x, y = load(source)
        for c in HELDOUT_CLASSES:
            folder = root / split / CLASS_NAMES[c]
            folder.mkdir(parents=True, exist_ok=True)
            for i, index in enumerate(np.flatnonzero(y == c)[:n]):
                keras.utils.save_img(folder / f"{i:04d}.png", x[index][:, :, None], scale=False)
    return root
