"""Tracking on MLflow: a real digits fit logged to a local SQLite store and read back with MLflow's client;
evaluate adds the test metrics; a tracking server that is down warns and never stops training."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tests.conftest import REPO, run_dir_from, run_dltrain

mlflow = pytest.importorskip("mlflow")

CONFIG = str(REPO / "configs" / "digits_dense.yaml")
FAST = ["--set", "train.epochs=2", "--set", "data.batch_size=64"]


@pytest.mark.slow
def test_a_fit_and_its_evaluation_are_logged_to_a_local_store(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    runs = tmp_path / "runs"
    out = run_dltrain("fit", CONFIG, *FAST, "--set", "tracking.kind=mlflow", "--runs-dir", str(runs))
    assert out.returncode == 0, out.stderr
    run_dir = run_dir_from(out.stdout)
    state = json.loads((run_dir / "tracking.json").read_text())
    assert state["uri"] == f"sqlite:///{runs.resolve() / 'mlflow.db'}"
    evaluated = run_dltrain("evaluate", str(run_dir))
    assert evaluated.returncode == 0, evaluated.stderr

    client = MlflowClient(tracking_uri=state["uri"])
    experiment = client.get_experiment_by_name("digits_dense")
    assert (
        experiment is not None
        and experiment.experiment_id == client.get_run(state["run_id"]).info.experiment_id
    )
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.units"] == "[64]" and run.data.params["optimizer.kind"] == "sgd"
    assert run.data.params["train.epochs"] == "2"
    rows = [line.split(",") for line in (run_dir / "metrics.csv").read_text().splitlines()]
    header, body = rows[0], rows[1:]
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, round(m.value, 5)) for m in sorted(history, key=lambda m: m.step)] == [
        (int(r[0]), round(float(r[header.index("val_loss")]), 5)) for r in body
    ]
    test = json.loads((run_dir / "eval" / "test" / "metrics.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(test["accuracy"])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.keras", "plots", "config.yaml", "test"} <= names
    # Artefacts live beside the store, not in the current folder.
    assert (runs / "mlartifacts").is_dir() and not (REPO / "mlruns").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_tracking_server_that_is_down_warns_and_training_goes_on(tmp_path: Path) -> None:
    port = _closed_port()
    out = run_dltrain(
        "fit",
        CONFIG,
        *FAST,
        "--set",
        f"tracking.uri=http://127.0.0.1:{port}",
        "--runs-dir",
        str(tmp_path),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    run_dir = run_dir_from(out.stdout)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert f"127.0.0.1:{port}" in out.stderr and "tracking is off" in out.stderr
    assert not (run_dir / "tracking.json").exists()


def test_missing_mlflow_names_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    (blocker / "mlflow").mkdir(parents=True)
    (blocker / "mlflow" / "__init__.py").write_text("raise ImportError('No module named mlflow')\n")
    env = {"PYTHONPATH": f"{blocker}{os.pathsep}{REPO}"}
    out = run_dltrain(
        "fit", CONFIG, "--set", "tracking.kind=mlflow", "--runs-dir", str(tmp_path / "r"), env=env
    )
    assert out.returncode == 2 and "pip install 'dltrain[mlflow]'" in out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    runs = tmp_path / "runs"
    args = ["fit", CONFIG, "--set", "train.epochs=3", "--set", "data.batch_size=64", "--runs-dir", str(runs)]
    killed = run_dltrain(*args, "--set", "tracking.kind=mlflow", env={"DLTRAIN_FAULT": "kill@epoch=3,step=2"})
    assert killed.returncode == -9, killed.stderr
    run_dir = next(runs.glob("digits_dense-*"))
    state = json.loads((run_dir / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=state["uri"])
    assert client.get_run(state["run_id"]).info.status == "RUNNING"
    # The same MLflow run continues (RUN/tracking.json), not a second one.
    resumed = run_dltrain(
        *args[:1], "--resume", str(run_dir), CONFIG, *args[2:6], "--set", "tracking.kind=mlflow"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "tracking.json").read_text())["run_id"] == state["run_id"]
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(state["run_id"], "val_loss")}
    assert steps == {1, 2, 3}
    assert len(client.search_runs([run.info.experiment_id])) == 1
