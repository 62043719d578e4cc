"""Classification metrics on numpy arrays: confusion matrix, per-class report, cross-entropy, top losses.

Pure numpy (no TensorFlow, no scikit-learn) so evaluation reports are cheap to compute and to test; the
definitions match scikit-learn's with ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _labels(name: str, values: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional. Received shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        # Float labels are accepted only when they are whole numbers (e.g. read back from a CSV).
        if not (
            np.issubdtype(arr.dtype, np.floating)
            and np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
        ):
            raise ValueError(f"{name} must hold integer class indices. Received dtype {arr.dtype}.")
    labels = arr.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(f"{name} holds class index {bad}, outside [0, {num_classes}).")
    return labels


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    """Count (true, predicted) pairs.

    Args:
        y_true: True class indices, shape (N,).
        y_pred: Predicted class indices, shape (N,).
        num_classes: Number of classes C; every index must be in [0, C).

    Returns:
        An int64 array (C, C): rows are true classes, columns predicted classes.

    Raises:
        ValueError: on mismatched lengths, non-integer labels or an index outside [0, C).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1. Received: {num_classes!r}.")
    true = _labels("y_true", y_true, num_classes)
    pred = _labels("y_pred", y_pred, num_classes)
    if true.shape != pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length. Received {true.size} and {pred.size}."
        )
    # One bincount over the flattened (true, pred) cell index beats a Python loop by orders of magnitude.
    counts = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _check_cm(cm: ArrayLike) -> NDArray[np.int64]:
    arr = np.asarray(cm)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"a confusion matrix must be square (C, C). Received shape {arr.shape}.")
    if arr.size and arr.min() < 0:
        raise ValueError("a confusion matrix holds counts; it has a negative entry.")
    return arr.astype(np.int64)


def _safe_divide(num: NDArray[Any], den: NDArray[Any]) -> NDArray[np.float64]:
    """Element-wise ``num / den`` with 0.0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _per_class(cm: NDArray[np.int64]) -> tuple[NDArray[np.float64], ...]:
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2.0 * precision * recall, precision + recall)
    return precision, recall, f1, support.astype(np.float64)


def per_class_report(cm: ArrayLike, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class.

    Args:
        cm: Confusion matrix (C, C), rows true, columns predicted.
        class_names: C names, in class-index order.

    Returns:
        One dict per class: ``{"class", "precision", "recall", "f1", "support"}``; a ratio with a zero
        denominator is 0.0, never NaN.

    Raises:
        ValueError: when the matrix is not square or ``class_names`` has the wrong length.
    """
    matrix = _check_cm(cm)
    if len(class_names) != matrix.shape[0]:
        raise ValueError(f"class_names has {len(class_names)} names for {matrix.shape[0]} classes.")
    precision, recall, f1, support = _per_class(matrix)
    return [
        {
            "class": str(name),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]


def summary(cm: ArrayLike) -> dict[str, float]:
    """Accuracy plus macro precision/recall/F1 (all classes weigh the same) and support-weighted F1.

    Every class in the matrix counts towards the macro averages, including classes with no support.

    Returns:
        ``{"accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1"}``; each is 0.0
        for an empty matrix.
    """
    matrix = _check_cm(cm)
    total = matrix.sum()
    precision, recall, f1, support = _per_class(matrix)
    empty = matrix.shape[0] == 0
    return {
        "accuracy": float(np.trace(matrix) / total) if total else 0.0,
        "macro_precision": 0.0 if empty else float(precision.mean()),
        "macro_recall": 0.0 if empty else float(recall.mean()),
        "macro_f1": 0.0 if empty else float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else 0.0,
    }


def cross_entropy(probs: ArrayLike, y_true: ArrayLike, eps: float = 1e-7) -> NDArray[np.float64]:
    """Per-example cross-entropy ``-log p(true class)``.

    Probabilities are clipped to ``[eps, 1]`` so a confident mistake costs ``-log(eps)`` instead of inf; a
    NaN probability gives a NaN loss, so a broken prediction stays visible (and tops :func:`top_losses`).

    Args:
        probs: Class probabilities, shape (N, C).
        y_true: True class indices, shape (N,).
        eps: Smallest probability taken into account, in (0, 1).

    Returns:
        A float64 array (N,).

    Raises:
        ValueError: on mismatched shapes or a class index outside [0, C).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (N, C). Received shape {p.shape}.")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1). Received: {eps!r}.")
    labels = _labels("y_true", y_true, p.shape[1])
    if labels.size != p.shape[0]:
        raise ValueError(f"probs has {p.shape[0]} rows but y_true has {labels.size} labels.")
    picked = p[np.arange(labels.size), labels]
    return -np.log(np.clip(picked, eps, 1.0))


def top_losses(per_example_loss: ArrayLike, k: int) -> NDArray[np.int64]:
    """Indices of the ``k`` largest losses, largest first.

    Ties keep their original order (stable sort); NaN counts as the largest loss, since a non-finite loss is
    the first thing to look at. ``k`` larger than N returns all N.

    Raises:
        ValueError: for a negative ``k`` or a loss array that is not one-dimensional.
    """
    losses = np.asarray(per_example_loss, dtype=np.float64)
    if losses.ndim != 1:
        raise ValueError(f"per_example_loss must be one-dimensional. Received shape {losses.shape}.")
    if k < 0:
        raise ValueError(f"k must be >= 0. Received: {k}.")
    key = np.where(np.isnan(losses), np.inf, losses)
    # Sorting the negated key ascending with a stable sort gives descending losses with ties in input order.
    return np.argsort(-key, kind="stable")[:k].astype(np.int64)


def regression_summary(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """MAE, RMSE and R² over every target value (arrays of the same shape, original units).

    R² is 1 - SSE / SST per target, averaged over targets (0 for a constant target).
    """
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape. Received {true.shape} and {pred.shape}."
        )
    true2 = true.reshape(len(true), -1)
    err = pred.reshape(len(pred), -1) - true2
    sst = np.square(true2 - true2.mean(axis=0)).sum(axis=0)
    r2 = 1.0 - _safe_divide(np.square(err).sum(axis=0), sst)
    r2 = np.where(sst > 0, r2, 0.0)
    return {
        "mae": float(np.abs(err).mean()) if err.size else float("nan"),
        "rmse": float(np.sqrt(np.square(err).mean())) if err.size else float("nan"),
        "r2": float(r2.mean()) if r2.size else float("nan"),
    }


def per_target_report(y_true: ArrayLike, y_pred: ArrayLike, names: Sequence[str]) -> list[dict[str, Any]]:
    """MAE / RMSE / R² for each target column (a forecast horizon has one per step ahead)."""
    true = np.asarray(y_true, dtype=np.float64).reshape(len(np.asarray(y_true)), -1)
    pred = np.asarray(y_pred, dtype=np.float64).reshape(true.shape)
    if len(names) != true.shape[1]:
        raise ValueError(f"names has {len(names)} entries for {true.shape[1]} targets.")
    return [{"target": name, **regression_summary(true[:, j], pred[:, j])} for j, name in enumerate(names)]
