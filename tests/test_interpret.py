"""fast.ai's interpretation in ``evaluate``: the selections on known probabilities (in process), and the files
evaluate writes for a real image run (the legacy Fashion-MNIST run, copied), checked against its confusion matrix."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from dltrain.report import interpret
from tests.conftest import REPO, needs_fixture_keras, run_dltrain

PROBS = np.array(
    [
        [0.9, 0.05, 0.05],  # 0: right, sure
        [0.4, 0.35, 0.25],  # 1: right (class 0), unsure
        [0.1, 0.8, 0.1],  # 2: wrong (true 2), sure
        [0.34, 0.33, 0.33],  # 3: wrong (true 1), least sure
        [0.2, 0.7, 0.1],  # 4: right (class 1)
    ]
)
Y = np.array([0, 0, 2, 1, 1])


def test_selections_follow_fastai() -> None:
    assert interpret.most_confident(PROBS, Y, 2, correct=True).tolist() == [0, 4]
    assert interpret.most_confident(PROBS, Y, 5, correct=False).tolist() == [2, 3]
    assert interpret.most_uncertain(PROBS, 2).tolist() == [3, 1]
    cm = np.array([[5, 1, 0], [3, 7, 0], [0, 3, 2]])
    assert interpret.most_confused(cm, ["a", "b", "c"]) == [
        {"actual": "b", "predicted": "a", "count": 3},
        {"actual": "c", "predicted": "b", "count": 3},
        {"actual": "a", "predicted": "b", "count": 1},
    ]
    assert interpret.most_confused(cm, ["a", "b", "c"], min_count=2)[-1]["count"] == 3


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@needs_fixture_keras
def test_evaluate_writes_the_interpretation_for_images(tmp_path: Path) -> None:
    run = tmp_path / "images"
    shutil.copytree(REPO / "tests" / "fixtures" / "legacy" / "runs" / "images", run)
    proc = run_dltrain("evaluate", str(run), "--split", "validation", "--top-k", "6")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = run / "eval" / "validation"
    right = _rows(out / "most_confident_correct.csv")
    wrong = _rows(out / "most_confident_wrong.csv")
    unsure = _rows(out / "most_uncertain.csv")
    assert right and all(r["true"] == r["predicted"] for r in right)
    assert all(r["true"] != r["predicted"] for r in wrong)
    assert [float(r["probability"]) for r in right] == sorted(
        (float(r["probability"]) for r in right), reverse=True
    )
    assert [float(r["probability"]) for r in unsure] == sorted(float(r["probability"]) for r in unsure)
    assert len(unsure) == 6 and float(unsure[0]["probability"]) <= float(right[-1]["probability"])
    with open(out / "confusion_matrix.csv", newline="") as fh:
        cm = list(csv.DictReader(fh))
    off = {(r["true"], p): int(r[p]) for r in cm for p in r if p != "true" and p != r["true"] and int(r[p])}
    confused = {(r["actual"], r["predicted"]): int(r["count"]) for r in _rows(out / "most_confused.csv")}
    assert confused == off
    for view in ("most_confident_correct", "most_uncertain"):
        assert (out / f"{view}.png").stat().st_size > 1000
    assert (out / "most_confident_wrong.png").exists() == bool(wrong)
