"""Regression and binary classification end to end, on real tables scikit-learn ships (diabetes, breast
cancer), through the installed CLI: fit, evaluate and lr-find follow the task."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import run_dir_from, run_dltrain


def _npz_config(tmp: Path, name: str, arrays: dict[str, np.ndarray], **data: object) -> Path:
    np.savez(tmp / f"{name}.npz", **arrays)
    cfg = {
        "name": name,
        "seed": 3,
        "data": {
            "kind": "npz",
            "path": str(tmp / f"{name}.npz"),
            "batch_size": 32,
            "validation_split": 0.2,
            **data,
        },
        "model": {"kind": "dense", "units": [32]},
        "optimizer": {"kind": "adam", "learning_rate": 1e-2},
        "train": {"epochs": 12},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _held_out(x: np.ndarray, y: np.ndarray, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_diabetes

    tmp = tmp_path_factory.mktemp("diabetes")
    bunch = load_diabetes()
    # The targets are whole numbers (a disease-progression score): only data.task says regression.
    cfg = _npz_config(
        tmp, "diabetes", _held_out(bunch.data.astype(np.float32), bunch.target, 90), task="regression"
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir_from(proc.stdout)


def test_regression_trains_with_mse_and_reports_mae_in_original_units(diabetes_run: Path) -> None:
    with open(diabetes_run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"loss", "mae", "val_loss", "val_mae"} <= set(rows[0]) and "accuracy" not in rows[0]
    # MAE is in the targets' units (scores 25..346, spread ~77), the loss is MSE on standardised targets.
    assert 20 < float(rows[-1]["val_mae"]) < 77
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    state = json.loads((diabetes_run / "data" / "state.json").read_text())
    assert state["task"] == "regression" and state["targets"]["computed_on"] == "train"
    record = json.loads((diabetes_run / "run.json").read_text())
    assert record["model"]["task"] == "regression" and record["model"]["outputs"] == 1


def test_evaluate_a_regression(diabetes_run: Path) -> None:
    proc = run_dltrain("evaluate", str(diabetes_run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MAE" in proc.stdout and "RMSE" in proc.stdout
    summary = json.loads((diabetes_run / "eval" / "test" / "metrics.json").read_text())
    assert summary["task"] == "regression" and summary["examples"] == 90
    # A linear-ish model of these ten features explains about half the variance; a broken unit
    # conversion (standardised predictions scored against raw targets) would give R² far below 0.
    assert 0.2 < summary["r2"] < 0.8, summary
    assert 30 < summary["mae"] < 70 and summary["rmse"] >= summary["mae"]
    with open(diabetes_run / "eval" / "test" / "predictions.csv") as fh:
        preds = list(csv.DictReader(fh))
    assert len(preds) == 90
    mae = np.mean([abs(float(r["true"]) - float(r["predicted"])) for r in preds])
    assert mae == pytest.approx(summary["mae"], rel=1e-3)
    assert (diabetes_run / "eval" / "test" / "predictions.png").stat().st_size > 0


def test_lr_find_on_a_regression(diabetes_run: Path, tmp_path: Path) -> None:
    cfg = diabetes_run / "config.yaml"
    proc = run_dltrain("lr-find", str(cfg), "--runs-dir", str(tmp_path), "--set", "lr_find.num_steps=30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    with open(run / "lr_find" / "steps.csv") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh)]
    # The first, tiny learning rates leave the standardised MSE near its starting value (about 1 or more).
    assert len(losses) >= 10 and 0.3 < losses[0] < 20


def test_binary_task_uses_one_sigmoid_output(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    arrays = _held_out(bunch.data.astype(np.float32), bunch.target, 114)
    mean, std = arrays["x_train"].mean(axis=0), arrays["x_train"].std(axis=0)
    for key in ("x_train", "x_test"):
        arrays[key] = (arrays[key] - mean) / std
    cfg = _npz_config(tmp_path, "cancer", arrays)
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--set", "train.epochs=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    record = json.loads((run / "run.json").read_text())
    assert record["model"]["task"] == "binary" and record["model"]["outputs"] == 1
    proc = run_dltrain("evaluate", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert summary["task"] == "binary" and summary["accuracy"] > 0.9, summary
    with open(run / "eval" / "test" / "confusion_matrix.csv") as fh:
        cm = list(csv.DictReader(fh))
    assert [row["true"] for row in cm] == ["0", "1"]
    assert sum(int(row["0"]) + int(row["1"]) for row in cm) == 114
