"""Classification metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from dltrain.report.metrics import confusion_matrix, cross_entropy, per_class_report, summary, top_losses


def test_confusion_matrix_hand_example() -> None:
    y_true = [0, 0, 1, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 2, 2, 0, 2]
    cm = confusion_matrix(y_true, y_pred, 3)
    expected = np.array(
        [
            [1, 1, 0],  # true 0: one right, one called 1
            [0, 2, 1],  # true 1: two right, one called 2
            [1, 0, 3],  # true 2: three right, one called 0
        ]
    )
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64


def test_confusion_matrix_matches_sklearn_with_absent_class() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)  # class 4 never occurs
    y_pred = rng.integers(0, 5, 200)
    ours = confusion_matrix(y_true, y_pred, 5)
    np.testing.assert_array_equal(ours, skm.confusion_matrix(y_true, y_pred, labels=range(5)))
    assert ours[4].sum() == 0


def test_confusion_matrix_accepts_whole_floats_and_empty() -> None:
    np.testing.assert_array_equal(confusion_matrix(np.array([0.0, 1.0]), [1, 1], 2), [[0, 1], [0, 1]])
    np.testing.assert_array_equal(confusion_matrix([], [], 2), np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("y_true", "y_pred", "num_classes", "match"),
    [
        ([0, 1], [0], 2, "same length"),
        ([0, 3], [0, 1], 3, "outside"),
        ([0, -1], [0, 1], 3, "outside"),
        ([0.5, 1], [0, 1], 3, "integer"),
        ([math.nan, 1], [0, 1], 3, "integer"),
        ([[0, 1]], [[0, 1]], 3, "one-dimensional"),
        ([0], [0], 0, "num_classes"),
    ],
)
def test_confusion_matrix_rejects(y_true: object, y_pred: object, num_classes: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        confusion_matrix(y_true, y_pred, num_classes)  # type: ignore[arg-type]


def test_per_class_report_and_summary_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 6, 500)
    # Mostly right, some noise; class 5 is never predicted and class 0 has no support (precision/recall 0).
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, 5, 500))
    y_pred[y_pred == 5] = 4
    y_true[y_true == 0] = 1
    cm = confusion_matrix(y_true, y_pred, 6)
    names = [f"c{i}" for i in range(6)]
    report = per_class_report(cm, names)

    labels = list(range(6))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    assert [row["class"] for row in report] == names
    np.testing.assert_allclose([row["precision"] for row in report], p)
    np.testing.assert_allclose([row["recall"] for row in report], r)
    np.testing.assert_allclose([row["f1"] for row in report], f)
    assert [row["support"] for row in report] == s.tolist()
    assert all(isinstance(row["support"], int) for row in report)
    assert report[0]["recall"] == 0.0 and report[5]["precision"] == 0.0  # undefined -> 0.0, not NaN

    stats = summary(cm)
    assert stats["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for ours, average, fn in [
        ("macro_precision", "macro", skm.precision_score),
        ("macro_recall", "macro", skm.recall_score),
        ("macro_f1", "macro", skm.f1_score),
        ("weighted_f1", "weighted", skm.f1_score),
    ]:
        expected = fn(y_true, y_pred, labels=labels, average=average, zero_division=0)
        assert stats[ours] == pytest.approx(expected), ours
    assert not any(math.isnan(v) for v in stats.values())


def test_summary_perfect_and_empty() -> None:
    perfect = summary(np.diag([3, 4, 5]))
    assert perfect == {
        "accuracy": 1.0,
        "macro_precision": 1.0,
        "macro_recall": 1.0,
        "macro_f1": 1.0,
        "weighted_f1": 1.0,
    }
    assert set(summary(np.zeros((3, 3), dtype=int)).values()) == {0.0}


def test_report_rejects_wrong_names_or_shape() -> None:
    with pytest.raises(ValueError, match="2 names for 3"):
        per_class_report(np.eye(3, dtype=int), ["a", "b"])
    with pytest.raises(ValueError, match="square"):
        summary(np.ones((2, 3)))
    with pytest.raises(ValueError, match="negative"):
        summary(np.array([[1, -1], [0, 1]]))


def test_cross_entropy_matches_sklearn_log_loss() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(40, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, 40)
    ours = cross_entropy(probs, y)
    assert ours.shape == (40,)
    assert ours.mean() == pytest.approx(skm.log_loss(y, probs, labels=range(4)))
    np.testing.assert_allclose(ours, -np.log(probs[np.arange(40), y]))


def test_cross_entropy_clips_zero_and_handles_nan() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [math.nan, math.nan]])
    losses = cross_entropy(probs, [0, 0, 1])
    assert losses[0] == pytest.approx(0.0, abs=1e-12)
    assert losses[1] == pytest.approx(-math.log(1e-7))
    assert math.isfinite(losses[1])
    assert math.isnan(losses[2])  # a NaN prediction stays visible, it is not clipped to a number


def test_cross_entropy_rejects() -> None:
    with pytest.raises(ValueError, match="shape"):
        cross_entropy(np.ones(3), [0, 1, 2])
    with pytest.raises(ValueError, match="rows"):
        cross_entropy(np.ones((3, 2)) / 2, [0, 1])
    with pytest.raises(ValueError, match="outside"):
        cross_entropy(np.ones((2, 2)) / 2, [0, 2])


def test_top_losses_descending_stable_and_nan_first() -> None:
    losses = np.array([0.5, 2.0, 0.1, 2.0, math.nan, 1.0, math.inf])
    order = top_losses(losses, 7)
    assert order.tolist() == [4, 6, 1, 3, 5, 0, 2]  # NaN, inf, then ties 1 before 3
    assert top_losses(losses, 3).tolist() == [4, 6, 1]
    assert top_losses(losses, 100).size == 7
    assert top_losses(losses, 0).size == 0
    assert order.dtype == np.int64
    with pytest.raises(ValueError):
        top_losses(losses, -1)
