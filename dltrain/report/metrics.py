"""Evaluation metrics on numpy arrays: confusion matrix, per-class report, cross-entropy, top losses, regression.

The standard metrics come from :mod:`sklearn.metrics` (``zero_division=0``, every class in ``range(C)`` counted);
this module adds what it lacks: label checks that reject rather than drop an out-of-range class, per-example
cross-entropy, the top-losses order and the per-target regression report. ``sklearn.metrics`` costs over a
CPU-second to import, so it is imported inside the functions that use it, never when this module loads.
"""

from __future__ import annotations

import math
import warnings
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


def _label_pair(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Checked class indices. scikit-learn silently drops a label outside ``labels``; here it is an error."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1. Received: {num_classes!r}.")
    true = _labels("y_true", y_true, num_classes)
    pred = _labels("y_pred", y_pred, num_classes)
    if true.shape != pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length. Received {true.size} and {pred.size}."
        )
    return true, pred


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    """Count (true, predicted) pairs (:func:`sklearn.metrics.confusion_matrix` over ``range(C)``).

    Args:
        y_true: True class indices, shape (N,).
        y_pred: Predicted class indices, shape (N,).
        num_classes: Number of classes C; every index must be in [0, C).

    Returns:
        An int64 array (C, C): rows are true classes, columns predicted classes; all zeros when N is 0.

    Raises:
        ValueError: on mismatched lengths, non-integer labels or an index outside [0, C).
    """
    true, pred = _label_pair(y_true, y_pred, num_classes)
    if not true.size:  # scikit-learn refuses empty input
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    with warnings.catch_warnings():
        # Its advice to pass ``labels`` for a (1, 1) matrix does not apply: they are passed, C is 1.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        cm = sk_confusion_matrix(true, pred, labels=np.arange(num_classes))
    return np.asarray(cm, dtype=np.int64)


def per_class_report(
    y_true: ArrayLike, y_pred: ArrayLike, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class (:func:`sklearn.metrics.precision_recall_fscore_support`).

    Args:
        y_true: True class indices, shape (N,).
        y_pred: Predicted class indices, shape (N,).
        class_names: C names, in class-index order; every index must be in [0, C).

    Returns:
        One dict per class: ``{"class", "precision", "recall", "f1", "support"}``; a ratio with a zero
        denominator (a class never predicted, or with no support) is 0.0, never NaN.

    Raises:
        ValueError: on mismatched lengths, non-integer labels or an index outside [0, C).
    """
    num_classes = len(class_names)
    true, pred = _label_pair(y_true, y_pred, num_classes)
    if true.size:
        from sklearn.metrics import precision_recall_fscore_support

        precision, recall, f1, support = precision_recall_fscore_support(
            true, pred, labels=np.arange(num_classes), average=None, zero_division=0
        )
    else:  # scikit-learn refuses empty input; every ratio is 0/0
        precision = recall = f1 = support = np.zeros(num_classes)
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


def summary(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> dict[str, float]:
    """Accuracy plus macro precision/recall/F1 (all classes weigh the same) and support-weighted F1.

    Every class in ``range(num_classes)`` counts towards the macro averages, including classes with no support
    (scikit-learn's ``labels=range(C)``, ``zero_division=0``).

    Returns:
        ``{"accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1"}``; each is 0.0
        when there are no examples.

    Raises:
        ValueError: on mismatched lengths, non-integer labels or an index outside [0, C).
    """
    true, pred = _label_pair(y_true, y_pred, num_classes)
    keys = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1")
    if not true.size:  # scikit-learn refuses empty input
        return dict.fromkeys(keys, 0.0)
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = np.arange(num_classes)
    macro_p, macro_r, macro_f1, _ = precision_recall_fscore_support(
        true, pred, labels=labels, average="macro", zero_division=0
    )
    weighted_f1 = f1_score(true, pred, labels=labels, average="weighted", zero_division=0)
    values = (accuracy_score(true, pred), macro_p, macro_r, macro_f1, weighted_f1)
    return {key: float(value) for key, value in zip(keys, values, strict=True)}


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


def _targets(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Both arrays as float64 (N, T); same shape required, and the true values must be finite."""
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape. Received {true.shape} and {pred.shape}."
        )
    if true.ndim == 0:
        raise ValueError("y_true must have one row per example. Received a scalar.")
    bad = int(np.count_nonzero(~np.isfinite(true)))
    if bad:
        raise ValueError(
            f"y_true holds {bad} non-finite value(s) (NaN or inf); targets must be finite numbers."
        )
    shape = (true.shape[0], int(np.prod(true.shape[1:])))  # (N, 1) for one target, also when N is 0
    return true.reshape(shape), pred.reshape(shape)


def regression_summary(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """MAE, RMSE and R² over every target value (arrays of the same shape, original units).

    MAE and RMSE are over all values (scikit-learn's ``mean_absolute_error`` and the square root of
    ``mean_squared_error``); R² is ``r2_score`` per target, averaged over targets, with 0 for a constant target
    (scikit-learn would give 1.0 when the constant is predicted exactly). A non-finite prediction makes all three
    NaN, so a broken model stays visible; there are NaN for no examples too.

    Raises:
        ValueError: on mismatched shapes or a non-finite true value.
    """
    true, pred = _targets(y_true, y_pred)
    if not true.size or not np.all(np.isfinite(pred)):
        return {"mae": math.nan, "rmse": math.nan, "r2": math.nan}
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    constant = np.all(true == true[0], axis=0)  # also every target when there is a single example
    if constant.all():
        r2 = 0.0
    else:
        per_target = r2_score(true, pred, multioutput="raw_values")
        r2 = float(np.where(constant, 0.0, per_target).mean())
    return {
        "mae": float(mean_absolute_error(true, pred)),
        "rmse": math.sqrt(float(mean_squared_error(true, pred))),
        "r2": r2,
    }


def per_target_report(y_true: ArrayLike, y_pred: ArrayLike, names: Sequence[str]) -> list[dict[str, Any]]:
    """MAE / RMSE / R² for each target column (a forecast horizon has one per step ahead).

    Raises:
        ValueError: on mismatched shapes, a non-finite true value or a wrong number of names.
    """
    true, pred = _targets(y_true, y_pred)
    if len(names) != true.shape[1]:
        raise ValueError(f"names has {len(names)} entries for {true.shape[1]} targets.")
    return [{"target": name, **regression_summary(true[:, j], pred[:, j])} for j, name in enumerate(names)]
