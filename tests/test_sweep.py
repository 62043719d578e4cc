"""`dltrain sweep` on Optuna with real digits trials, each a child `dltrain fit`; the study is checked through
Optuna's own API. Bad input exits 2 (or 5) before any trial and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, dltrain_cmd, run_dltrain

optuna = pytest.importorskip("optuna")

BASE = {
    "name": "sw",
    "data": {"kind": "digits", "batch_size": 64},
    "model": {"kind": "dense", "units": [16]},
    "optimizer": {"kind": "sgd", "learning_rate": 0.05, "momentum": 0.9},
    "train": {"epochs": 1},
}


def _config(tmp_path: Path, sweep: dict | None = None, **changes: dict) -> Path:
    raw = {**BASE, **changes}
    if sweep is not None:
        raw["sweep"] = sweep
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _study(sweep_dir: Path) -> optuna.Study:
    info = json.loads((sweep_dir / "sweep.json").read_text())
    return optuna.load_study(study_name=info["study_name"], storage=info["storage"])


def _sweep_dir(stdout: str) -> Path:
    for line in stdout.splitlines():
        if line.startswith("sweep: "):
            return Path(line[len("sweep: ") :])
    raise AssertionError(stdout)


# ---- bad input: exit 2 / 5 before any trial, nothing left behind ----------------------------------------


@pytest.mark.parametrize(
    ("sweep", "flags", "code", "needles"),
    [
        ({"trials": 2}, [], 2, ["search space is empty"]),
        ({"params": {"model.unitz": {"choice": [[8]]}}}, [], 2, ["model.unitz", "not a key"]),
        ({"params": {"model.dropout": {"uniform": [0.0, 1.5]}}}, [], 2, ["model.dropout", "high end", "1.5"]),
        ({"params": {"optimizer.learning_rate": {"uniform": [0.1, 0.01]}}}, [], 2, ["low < high"]),
        (
            {"sampler": "grid", "params": {"optimizer.learning_rate": {"loguniform": [1e-3, 0.1]}}},
            [],
            2,
            ["grid"],
        ),
        (None, ["--param", "optimizer.learning_rate=gaussian(0,1)"], 2, ["--param", "loguniform(LOW,HIGH)"]),
        (None, ["--param", "train.epochs=int(0,2)"], 2, ["train.epochs", "low end"]),
        (
            None,
            ["--param", "optimizer.learning_rate=loguniform(1e-4,1e-1)", "--storage", "nosuch"],
            2,
            ["nosuch"],
        ),
        (
            None,
            [
                "--param",
                "optimizer.learning_rate=loguniform(1e-4,1e-1)",
                "--storage",
                "sqlite:////no/such/dir/s.db",
            ],
            5,
            ["sqlite:////no/such/dir/s.db", "cannot be reached"],
        ),
    ],
)
def test_bad_input_exits_before_any_trial(
    tmp_path: Path, sweep: dict | None, flags: list[str], code: int, needles: list[str]
) -> None:
    runs = tmp_path / "runs"
    out = run_dltrain("sweep", str(_config(tmp_path, sweep)), *flags, "--runs-dir", str(runs))
    assert out.returncode == code, out.stdout + out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_resume_of_a_folder_that_is_not_a_sweep(tmp_path: Path) -> None:
    out = run_dltrain("sweep", "--resume", str(tmp_path))
    assert out.returncode == 5 and "not a sweep directory" in out.stderr


def test_missing_optuna_names_the_extra(tmp_path: Path) -> None:
    # An interpreter where `import optuna` fails, as in an install without the extra.
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "optuna.py").write_text("raise ImportError('No module named optuna')\n")
    env = {"PYTHONPATH": f"{blocker}{os.pathsep}{REPO}"}
    cfg = _config(tmp_path, {"params": {"optimizer.learning_rate": {"loguniform": [1e-3, 0.1]}}})
    out = run_dltrain("sweep", str(cfg), "--runs-dir", str(tmp_path / "runs"), env=env)
    assert out.returncode == 2 and "pip install 'dltrain[sweep]'" in out.stderr


# ---- real sweeps ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_grid_sweep_with_a_killed_trial_and_a_pruned_one(tmp_path: Path) -> None:
    """Grid of 4 (Optuna's order for seed 42: (0.2, 3), (1e-5, 3), (0.2, 1), (1e-5, 1)). Three-epoch trials are
    SIGKILLed in epoch 3 by the fault hook: failed, and the sweep goes on; the bad 1-epoch trial is pruned
    against the good one; the good 1-epoch trial is best."""
    cfg = _config(
        tmp_path,
        {
            "trials": 10,
            "sampler": "grid",
            "startup_trials": 1,
            "params": {
                "optimizer.learning_rate": {"choice": [0.2, 1e-5]},
                "train.epochs": {"int": [1, 3], "step": 2},
            },
        },
    )
    out = run_dltrain(
        "sweep", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"DLTRAIN_FAULT": "kill@epoch=3,step=1"}
    )
    assert out.returncode == 0, out.stdout + out.stderr
    sweep_dir = _sweep_dir(out.stdout)
    study = _study(sweep_dir)
    states = {(t.params["optimizer.learning_rate"], t.params["train.epochs"]): t for t in study.trials}
    assert len(study.trials) == 4 and len(states) == 4  # the grid, once, though trials: 10
    for lr in (0.2, 1e-5):
        killed = states[(lr, 3)]
        assert killed.state == optuna.trial.TrialState.FAIL
        assert "SIGKILL" in killed.user_attrs["fail_reason"]
        assert (
            json.loads((Path(killed.user_attrs["run_dir"]) / "run.json").read_text())["status"] == "running"
        )
    assert states[(0.2, 1)].state == optuna.trial.TrialState.COMPLETE
    pruned = states[(1e-5, 1)]
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert 1 in pruned.intermediate_values
    assert study.best_trial.params == {"optimizer.learning_rate": 0.2, "train.epochs": 1}
    assert study.best_value == pytest.approx(
        json.loads((Path(states[(0.2, 1)].user_attrs["run_dir"]) / "run.json").read_text())["best"]["value"]
    )
    # The sweep directory's outputs.
    rows = (sweep_dir / "trials.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("number,state,val_loss")
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["optimizer"]["learning_rate"] == 0.2 and best["train"]["epochs"] == 1 and "sweep" not in best
    assert (sweep_dir / "plots" / "optimization_history.png").stat().st_size > 1000
    check = run_dltrain("config", "show", str(sweep_dir / "best.yaml"))
    assert check.returncode == 0, check.stderr
    listing = run_dltrain("runs", "ls", str(sweep_dir / "trials"), "--json")
    assert {row["status"] for row in json.loads(listing.stdout)} == {"finished", "dead"}


def _wait_for(predicate, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def _popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if k != "DLTRAIN_FAULT"}
    full.update({"TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    return subprocess.Popen(
        [*dltrain_cmd(), *args], cwd=REPO, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_retries_its_running_trial(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"trials": 2, "sampler": "random", "pruner": "none"}, train={"epochs": 3})
    sweep_dir = tmp_path / "sweep"
    flags = ["--param", "optimizer.learning_rate=loguniform(0.01,0.2)", "--sweep-dir", str(sweep_dir)]
    proc = _popen("sweep", str(cfg), *flags)
    # Kill the sweep (not the trial) while trial 0 trains: its child gets SIGTERM and stops; the study keeps
    # trial 0 RUNNING.
    _wait_for(lambda: (sweep_dir / "trials" / "0000" / "metrics.csv").exists())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    _wait_for(lambda: not (sweep_dir / "trials" / "0000" / ".lock").exists(), timeout=120)
    study = _study(sweep_dir)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]
    out = run_dltrain("sweep", "--resume", str(sweep_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "trial 0 was left running by a sweep that died" in out.stdout
    study = _study(sweep_dir)
    trials = study.trials
    assert trials[0].state == optuna.trial.TrialState.FAIL and "died" in trials[0].user_attrs["fail_reason"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retry) == 1 and retry[0].params == trials[0].params
    assert retry[0].state == optuna.trial.TrialState.COMPLETE
    assert [t.state for t in trials[1:]] == [optuna.trial.TrialState.COMPLETE] * 2
    assert json.loads((sweep_dir / "trials" / "0000" / "run.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_two_sweep_processes_share_one_study(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"trials": 3, "sampler": "random", "pruner": "none"})
    sweep_dir = tmp_path / "shared"
    first = _popen(
        "sweep", str(cfg), "--param", "model.units=choice([8],[16],[32])", "--sweep-dir", str(sweep_dir)
    )
    _wait_for(lambda: (sweep_dir / "sweep.json").exists())
    second = _popen("sweep", "--resume", str(sweep_dir))
    outs = [p.communicate(timeout=600) for p in (first, second)]
    for proc, (stdout, stderr) in zip((first, second), outs, strict=True):
        assert proc.returncode == 0, stdout + stderr
        assert "locked" not in stderr and "Traceback" not in stderr
    study = _study(sweep_dir)
    assert len(study.trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    owners = {t.user_attrs["owner"]["pid"] for t in study.trials}
    assert owners == {first.pid, second.pid}  # both ran trials


@pytest.mark.slow
def test_ctrl_c_stops_after_saving_and_resume_finishes(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"trials": 2, "sampler": "random", "pruner": "none"}, train={"epochs": 3})
    sweep_dir = tmp_path / "sweep"
    proc = _popen(
        "sweep",
        str(cfg),
        "--param",
        "optimizer.learning_rate=uniform(0.02,0.1)",
        "--sweep-dir",
        str(sweep_dir),
    )
    _wait_for(lambda: (sweep_dir / "trials" / "0000" / "metrics.csv").exists())
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout + stderr
    assert "--resume" in stdout and "Traceback" not in stderr
    study = _study(sweep_dir)
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.FAIL and "Ctrl-C" in first.user_attrs["fail_reason"]
    assert json.loads((sweep_dir / "trials" / "0000" / "run.json").read_text())["status"] == "interrupted"
    assert "0,FAIL" in (sweep_dir / "trials.csv").read_text()
    queued = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert len(queued) == 1 and queued[0].user_attrs["retry_of"] == 0
    out = run_dltrain("sweep", "--resume", str(sweep_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    study = _study(sweep_dir)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and done[0].params == first.params


def test_sweep_config_errors_never_import_tensorflow(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"params": {"model.dropout": {"uniform": [0.0, 1.5]}}})
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom dltrain.cli import app\n"
        f"r = CliRunner().invoke(app, ['sweep', {str(cfg)!r}, '--runs-dir', {str(tmp_path / 'runs')!r}])\n"
        "assert r.exit_code == 2, r.output\nassert 'tensorflow' not in sys.modules\nprint('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
