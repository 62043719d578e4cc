"""fast.ai's ``ClassificationInterpretation`` beyond the top losses: which examples the model is surest of (right
and wrong), which it is least sure of, and which class pairs it confuses most. Light: NumPy.

``evaluate`` writes each as a CSV in ``eval/<split>/`` (and, for images, a grid of them as a PNG).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

VIEWS = ("most_confident_correct", "most_confident_wrong", "most_uncertain")


def most_confident(probs: ArrayLike, y: ArrayLike, k: int, correct: bool) -> NDArray[np.int64]:
    """Indices of the ``k`` examples predicted right (``correct``) or wrong with the highest top probability,
    highest first (ties in their original order)."""
    p = np.asarray(probs, dtype=np.float64)
    pred = p.argmax(axis=1)
    chosen = np.flatnonzero((pred == np.asarray(y)) == correct)
    order = np.argsort(-p[chosen].max(axis=1), kind="stable")
    return chosen[order[:k]].astype(np.int64)


def most_uncertain(probs: ArrayLike, k: int) -> NDArray[np.int64]:
    """Indices of the ``k`` examples with the lowest top probability (the model's least sure), lowest first."""
    p = np.asarray(probs, dtype=np.float64)
    return np.argsort(p.max(axis=1), kind="stable")[:k].astype(np.int64)


def most_confused(cm: ArrayLike, class_names: Sequence[str], min_count: int = 1) -> list[dict[str, Any]]:
    """Off-diagonal cells of the confusion matrix (rows true, columns predicted) with at least ``min_count``
    examples, most first: fast.ai's ``most_confused`` as (actual, predicted, count)."""
    m = np.asarray(cm, dtype=np.int64)
    pairs = [
        (int(m[t, p]), t, p)
        for t in range(m.shape[0])
        for p in range(m.shape[1])
        if t != p and m[t, p] >= min_count
    ]
    pairs.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"actual": class_names[t], "predicted": class_names[p], "count": n} for n, t, p in pairs]


def select(probs: ArrayLike, y: ArrayLike, k: int) -> dict[str, NDArray[np.int64]]:
    """Every view's indices (``VIEWS``)."""
    return {
        "most_confident_correct": most_confident(probs, y, k, correct=True),
        "most_confident_wrong": most_confident(probs, y, k, correct=False),
        "most_uncertain": most_uncertain(probs, k),
    }
