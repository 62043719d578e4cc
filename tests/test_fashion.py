"""Real Fashion-MNIST (Debian's dataset-fashion-mnist) through the installed CLI. Slow: CI runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dltrain.data.builtin import DEBIAN_FASHION_DIR
from tests.conftest import run_dir_from, run_dltrain

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not DEBIAN_FASHION_DIR.is_dir(),
        reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
    ),
]


def test_fashion_mnist_cnn_two_epochs_then_evaluate_on_the_held_out_test_split(tmp_path: Path) -> None:
    proc = run_dltrain(
        "fit",
        "configs/fashion_mnist_cnn.yaml",
        "--set",
        "train.epochs=2",
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    record = json.loads((run / "run.json").read_text())
    assert record["data"]["source"] == str(DEBIAN_FASHION_DIR)
    assert record["data"]["sizes"] == {"train": 54000, "validation": 6000, "test": 10000}
    proc = run_dltrain("evaluate", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["examples"] == 10000
    # Two one-cycle epochs of this CNN reach about 0.90 here; chance is 0.10.
    assert metrics["accuracy"] > 0.87, metrics
    per_class = (run / "eval" / "test" / "per_class.csv").read_text()
    assert "Ankle boot" in per_class and "T-shirt/top" in per_class
