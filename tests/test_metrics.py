"""Evaluation metrics against small examples worked by hand, and their edge cases.

The standard metrics are scikit-learn's, so comparing them with scikit-learn would test nothing: these cases
check the arguments we pass (every class counted, ``zero_division=0``), the label checks scikit-learn lacks
(it drops an out-of-range label silently) and our own conventions (constant target, non-finite values).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from dltrain.report.metrics import (
    confusion_matrix,
    cross_entropy,
    per_class_report,
    per_target_report,
    regression_summary,
    summary,
    top_losses,
)

# Four classes: class 2 is never predicted (precision 0/0) and class 3 has no support (recall 0/0).
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 3, 0, 0]
NAMES = ["a", "b", "c", "d"]


def test_import_does_not_load_sklearn() -> None:
    # sklearn.metrics costs over a CPU-second; `dltrain --help` and config errors must not pay for it.
    code = "import sys, dltrain.report.metrics; bad = [m for m in sys.modules if m.startswith('sklearn')]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_confusion_matrix_hand_example() -> None:
    cm = confusion_matrix(Y_TRUE, Y_PRED, 4)
    expected = np.array(
        [
            [3, 1, 0, 0],  # true a: three right, one called b
            [0, 1, 0, 1],  # true b: one right, one called d
            [2, 0, 0, 0],  # true c: both called a
            [0, 0, 0, 0],  # true d: no examples, yet it keeps its row
        ]
    )
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64


def test_confusion_matrix_counts_every_pair_with_absent_classes() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)  # class 4 is never true, class 0 never predicted
    y_pred = rng.integers(1, 5, 200)
    expected = np.zeros((5, 5), dtype=np.int64)
    np.add.at(expected, (y_true, y_pred), 1)
    cm = confusion_matrix(y_true, y_pred, 5)
    np.testing.assert_array_equal(cm, expected)
    assert cm.shape == (5, 5) and cm[4].sum() == 0 and cm[:, 0].sum() == 0 and cm.sum() == 200


def test_confusion_matrix_accepts_whole_floats_and_empty() -> None:
    np.testing.assert_array_equal(confusion_matrix(np.array([0.0, 1.0]), [1, 1], 2), [[0, 1], [0, 1]])
    np.testing.assert_array_equal(confusion_matrix([], [], 2), np.zeros((2, 2)))
    np.testing.assert_array_equal(confusion_matrix([1, 1], [1, 1], 3), [[0, 0, 0], [0, 2, 0], [0, 0, 0]])


@pytest.mark.filterwarnings("error")
def test_a_single_class_counts_without_warnings() -> None:
    np.testing.assert_array_equal(confusion_matrix([0, 0, 0], [0, 0, 0], 1), [[3]])
    assert summary([0, 0, 0], [0, 0, 0], 1) == dict.fromkeys(summary([], [], 1), 1.0)
    assert per_class_report([0, 0], [0, 0], ["only"]) == [
        {"class": "only", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    ]


@pytest.mark.parametrize(
    ("y_true", "y_pred", "num_classes", "match"),
    [
        ([0, 1], [0], 2, "same length"),
        ([0, 3], [0, 1], 3, "y_true holds class index 3, outside"),
        ([0, 1], [0, 3], 3, "y_pred holds class index 3, outside"),  # scikit-learn would drop the pair
        ([0, -1], [0, 1], 3, "outside"),
        ([0.5, 1], [0, 1], 3, "integer"),
        ([math.nan, 1], [0, 1], 3, "integer"),
        ([math.inf, 1], [0, 1], 3, "integer"),
        ([0, 1], [0, math.nan], 3, "y_pred must hold integer"),
        ([[0, 1]], [[0, 1]], 3, "one-dimensional"),
        ([0], [0], 0, "num_classes"),
        ([0], [0], True, "num_classes"),
    ],
)
def test_label_checks(y_true: object, y_pred: object, num_classes: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        confusion_matrix(y_true, y_pred, num_classes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        summary(y_true, y_pred, num_classes)  # type: ignore[arg-type]
    if num_classes is not True and num_classes >= 1:
        with pytest.raises(ValueError, match=match):
            per_class_report(y_true, y_pred, [f"c{i}" for i in range(num_classes)])  # type: ignore[arg-type]


def test_per_class_report_hand_example() -> None:
    report = per_class_report(Y_TRUE, Y_PRED, NAMES)
    assert [row["class"] for row in report] == NAMES
    # a: 3 of the 5 predicted a are right, 3 of the 4 true a found; F1 = 2*3 / (2*3 + 2 + 1).
    assert report[0]["precision"] == pytest.approx(3 / 5)
    assert report[0]["recall"] == pytest.approx(3 / 4)
    assert report[0]["f1"] == pytest.approx(2 / 3)
    # b: 1 of 2 predicted, 1 of 2 true.
    assert (report[1]["precision"], report[1]["recall"], report[1]["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    # c: never predicted (precision 0/0 -> 0), none found; d: no support (recall 0/0 -> 0), its one prediction wrong.
    for row in report[2:]:
        assert (row["precision"], row["recall"], row["f1"]) == (0.0, 0.0, 0.0)
    assert [row["support"] for row in report] == [4, 2, 2, 0]
    assert all(type(row["support"]) is int for row in report)
    assert all(type(row[k]) is float for row in report for k in ("precision", "recall", "f1"))


def test_summary_hand_example() -> None:
    stats = summary(Y_TRUE, Y_PRED, 4)
    assert list(stats) == ["accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1"]
    assert stats["accuracy"] == pytest.approx(4 / 8)
    # Macro averages divide by all four classes, the unsupported d included (not by three).
    assert stats["macro_precision"] == pytest.approx((3 / 5 + 1 / 2) / 4)
    assert stats["macro_recall"] == pytest.approx((3 / 4 + 1 / 2) / 4)
    assert stats["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 4)
    # Weighted by support 4, 2, 2, 0 over 8 examples.
    assert stats["weighted_f1"] == pytest.approx((4 * 2 / 3 + 2 * 1 / 2) / 8)
    assert all(type(v) is float for v in stats.values())


def test_summary_perfect_absent_and_empty() -> None:
    perfect = summary([0, 1, 1, 2, 2, 2], [0, 1, 1, 2, 2, 2], 3)
    assert perfect == {
        "accuracy": 1.0,
        "macro_precision": 1.0,
        "macro_recall": 1.0,
        "macro_f1": 1.0,
        "weighted_f1": 1.0,
    }
    # Perfect on the one class present, but two of three classes never occur: macro 1/3, weighted and accuracy 1.
    one_class = summary([1, 1], [1, 1], 3)
    assert one_class["accuracy"] == 1.0 and one_class["weighted_f1"] == 1.0
    assert one_class["macro_f1"] == pytest.approx(1 / 3)
    assert summary([], [], 3) == dict.fromkeys(perfect, 0.0)
    assert [
        (r["precision"], r["recall"], r["f1"], r["support"]) for r in per_class_report([], [], NAMES)
    ] == [(0.0, 0.0, 0.0, 0)] * 4


def test_all_wrong_gives_zeros_not_nan() -> None:
    stats = summary([0, 0, 1, 1], [1, 1, 0, 0], 3)
    assert stats == dict.fromkeys(stats, 0.0)
    report = per_class_report([0, 0, 1, 1], [1, 1, 0, 0], ["x", "y", "z"])
    assert [(r["precision"], r["recall"], r["f1"]) for r in report] == [(0.0, 0.0, 0.0)] * 3


def test_cross_entropy_hand_example() -> None:
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    losses = cross_entropy(probs, [0, 1, 0])
    assert losses.dtype == np.float64 and losses.shape == (3,)
    np.testing.assert_allclose(losses, [math.log(2), -math.log(0.8), -math.log(0.2)])


def test_cross_entropy_mean_is_sklearn_log_loss() -> None:
    # cross_entropy is ours (log_loss has no per-example form), so this comparison is a real check.
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(40, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, 40)
    assert cross_entropy(probs, y).mean() == pytest.approx(log_loss(y, probs, labels=range(4)))


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
    with pytest.raises(ValueError, match="eps"):
        cross_entropy(np.ones((2, 2)) / 2, [0, 1], eps=0.0)


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


# --- regression -------------------------------------------------------------------------------------------

# Target a: errors 0, 1, -1, 2 -> MAE 1, MSE 1.5; SST = 2.25 + 0.25 + 0.25 + 2.25 = 5, SSE = 6, R² = -0.2.
# Target b: constant 0, errors 1, 0, 0, -1 -> MAE 0.5, MSE 0.5, R² 0 by our convention.
REG_TRUE = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
REG_PRED = np.array([[1.0, 1.0], [3.0, 0.0], [2.0, 0.0], [6.0, -1.0]])


def test_regression_summary_hand_example() -> None:
    single = regression_summary(REG_TRUE[:, 0], REG_PRED[:, 0])
    assert single == pytest.approx({"mae": 1.0, "rmse": math.sqrt(1.5), "r2": -0.2})
    both = regression_summary(REG_TRUE, REG_PRED)
    # MAE and RMSE over all eight values; R² averaged over the two targets.
    assert both == pytest.approx({"mae": 6 / 8, "rmse": math.sqrt(8 / 8), "r2": (-0.2 + 0.0) / 2})
    assert all(type(v) is float for v in both.values())


def test_per_target_report_hand_example() -> None:
    report = per_target_report(REG_TRUE, REG_PRED, ["a", "b"])
    assert [row["target"] for row in report] == ["a", "b"]
    assert list(report[0]) == ["target", "mae", "rmse", "r2"]
    assert report[0] == pytest.approx({"target": "a", "mae": 1.0, "rmse": math.sqrt(1.5), "r2": -0.2})
    assert report[1] == pytest.approx({"target": "b", "mae": 0.5, "rmse": math.sqrt(0.5), "r2": 0.0})
    with pytest.raises(ValueError, match="names has 1 entries for 2 targets"):
        per_target_report(REG_TRUE, REG_PRED, ["a"])


def test_regression_perfect_constant_and_single_example() -> None:
    perfect = regression_summary([1.0, 2.0, 4.0], [1.0, 2.0, 4.0])
    assert perfect == {"mae": 0.0, "rmse": 0.0, "r2": 1.0}
    # A constant target has no variance to explain: R² is 0 even when predicted exactly (scikit-learn says 1).
    assert regression_summary([3.0, 3.0], [3.0, 3.0])["r2"] == 0.0
    mixed = regression_summary([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]], [[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    assert mixed["r2"] == 0.5  # (1 + 0) / 2: the exact constant target still counts 0
    assert regression_summary([3.0], [5.0]) == {"mae": 2.0, "rmse": 2.0, "r2": 0.0}


def test_regression_non_finite() -> None:
    # A broken prediction stays visible as NaN metrics rather than failing the whole evaluation.
    for bad in (math.nan, math.inf, -math.inf):
        stats = regression_summary([1.0, 2.0, 3.0], [1.0, bad, 3.0])
        assert all(math.isnan(v) for v in stats.values()), (bad, stats)
    # A non-finite true value is a data error.
    with pytest.raises(ValueError, match=r"y_true holds 1 non-finite value\(s\)"):
        regression_summary([1.0, math.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        per_target_report([[1.0], [math.inf]], [[1.0], [2.0]], ["a"])


def test_regression_rejects_shape_mismatch_and_empty_is_nan() -> None:
    with pytest.raises(ValueError, match="same shape"):
        regression_summary([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="same shape"):
        regression_summary([[1.0], [2.0]], [1.0, 2.0])
    assert all(math.isnan(v) for v in regression_summary([], []).values())
