"""Never lose training (docs/architecture.md, "Faults it survives", rows 1-12): real kills, signals, torn and damaged files, full disks.

Every test runs the installed ``dltrain`` in a subprocess, breaks it for real (the ``DLTRAIN_FAULT`` hook
picks the exact step), resumes it, and compares with one uninterrupted run of the same seeded config.
The model has BatchNorm and Dropout on purpose: their state is what a naive checkpoint forgets.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import dltrain_cmd, run_dir_from, run_dltrain

# Real faults (SIGKILL, signals, torn files, full disk) on real training runs: 10-50 s each. CI runs them
# (make test-all); make test leaves them out.
pytestmark = pytest.mark.slow

EPOCHS = 3


def _config(path: Path, runtime: dict | None = None, model: dict | None = None, **train: object) -> Path:
    cfg = {
        "name": "resume",
        "seed": 11,
        "data": {"kind": "digits", "batch_size": 64, "validation_split": 0.15},
        "model": model or {"kind": "dense", "units": [32], "dropout": 0.2, "batch_norm": True},
        "optimizer": {"kind": "adam", "learning_rate": 3e-3},
        "schedule": {"kind": "one_cycle"},
        "train": {"epochs": EPOCHS, **train},
        **({"runtime": runtime} if runtime else {}),
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _only_run(runs: Path) -> Path:
    (run,) = list(runs.iterdir())
    return run


def _weights(run: Path) -> list[np.ndarray]:
    import keras

    return keras.models.load_model(run / "model.keras").get_weights()


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _assert_same_training(run: Path, reference: Path) -> None:
    got, want = _weights(run), _weights(reference)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(got, want, strict=True))
    assert diff == 0.0, f"max abs weight difference {diff}"
    rows, ref_rows = _rows(run), _rows(reference)
    assert [r["epoch"] for r in rows] == [str(e) for e in range(1, EPOCHS + 1)]
    for row, ref in zip(rows, ref_rows, strict=True):
        for key in ("step", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            assert row[key] == ref[key], (key, row, ref)
    record, ref_record = (json.loads((r / "run.json").read_text()) for r in (run, reference))
    assert record["status"] == "finished"
    assert record["best"]["epoch"] == ref_record["best"]["epoch"]
    assert record["best"]["value"] == ref_record["best"]["value"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("reference")
    proc = run_dltrain("fit", str(_config(tmp / "c.yaml")), "--runs-dir", str(tmp / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir_from(proc.stdout)


@pytest.fixture(scope="module")
def reference_every_4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("reference4")
    cfg = _config(tmp / "c.yaml", checkpoint_every_steps=4)
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir_from(proc.stdout)


@pytest.fixture(scope="module")
def reference_bf16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("reference_bf16")
    proc = run_dltrain("fit", str(_config(tmp / "c.yaml", BF16, CNN)), "--runs-dir", str(tmp / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir_from(proc.stdout)


BF16 = {"mixed_precision": "bfloat16"}
# Conv blocks train with the fused batch norm (dltrain.models.fused_bn): its statistics resume exactly too.
CNN = {"kind": "cnn", "filters": [8, 16], "batch_norm": True, "dropout": 0.2, "dense": [16]}


def _killed(
    tmp_path: Path, fault: str, runtime: dict | None = None, model: dict | None = None, **train: object
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    cfg = _config(tmp_path / "c.yaml", runtime, model, **train)
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"DLTRAIN_FAULT": fault})
    return _only_run(tmp_path / "runs"), proc


def _resume(run: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_dltrain("fit", *extra, "--resume", str(run))


def test_sigkill_mid_epoch_resumes_epoch_exact_to_identical_weights(tmp_path: Path, reference: Path) -> None:
    run, proc = _killed(tmp_path, "kill@epoch=2,step=5")
    assert proc.returncode == -signal.SIGKILL
    assert len(_rows(run)) == 1  # epoch 1 finished, epoch 2 lost with the process
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # it never got to say
    resumed = _resume(run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "next epoch (epoch-exact)" in resumed.stderr
    _assert_same_training(run, reference)
    record = json.loads((run / "run.json").read_text())
    assert record["restarts"][0]["from"]["epoch"] == 1


def test_sigkill_under_bfloat16_with_fused_batch_norm_resumes_to_identical_weights(
    tmp_path: Path, reference_bf16: Path
) -> None:
    run, proc = _killed(tmp_path, "kill@epoch=2,step=5", BF16, CNN)
    assert proc.returncode == -signal.SIGKILL
    resumed = _resume(run, str(_config(tmp_path / "auto.yaml", {"mixed_precision": "auto"}, CNN)))
    # `auto` given to --resume keeps the run's bfloat16
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "run.json").read_text())["runtime"]["precision"] == "mixed_bfloat16"
    _assert_same_training(run, reference_bf16)


def test_sigkill_after_a_step_checkpoint_resumes_at_that_step(
    tmp_path: Path, reference_every_4: Path
) -> None:
    run, proc = _killed(tmp_path, "kill@epoch=2,step=10", checkpoint_every_steps=4)
    assert proc.returncode == -signal.SIGKILL
    resumed = _resume(run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "next batch" in resumed.stderr
    record = json.loads((run / "run.json").read_text())
    start = record["restarts"][0]["from"]
    assert (
        start["epoch"] == 1 and start["step_in_epoch"] == 8 - 0
    )  # steps 1..20 in epoch 1; ckpt at global 28
    _assert_same_training(run, reference_every_4)


@pytest.mark.parametrize(("fault", "code", "name"), [("sigterm", 143, "SIGTERM"), ("sigint", 130, "Ctrl-C")])
def test_signal_stops_at_a_step_saves_and_resumes_identically(
    tmp_path: Path, reference: Path, fault: str, code: int, name: str
) -> None:
    run, proc = _killed(tmp_path, f"{fault}@epoch=2,step=5")
    assert proc.returncode == code, proc.stderr[-3000:]
    assert f"stopped by {name}" in proc.stderr and f"dltrain fit --resume {run}" in proc.stderr
    assert "Traceback" not in proc.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert len(_rows(run)) == 1
    resumed = _resume(run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "run.json").read_text())["restarts"][0]["from"]["step_in_epoch"] == 5
    _assert_same_training(run, reference)


def test_a_second_ctrl_c_during_the_save_does_not_tear_it(tmp_path: Path, reference: Path) -> None:
    # Ctrl-C at step 5 of epoch 2 asks for a stop; the checkpoint of that step is the second write of the
    # process, and a second Ctrl-C arrives just as it starts.
    run, proc = _killed(tmp_path, "sigint@epoch=2,step=5;sigint@checkpoint-write=2")
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "still saving the checkpoint" in proc.stderr
    resumed = _resume(run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "unusable" not in resumed.stderr and "removing" not in resumed.stderr
    assert json.loads((run / "run.json").read_text())["restarts"][0]["from"]["step_in_epoch"] == 5
    _assert_same_training(run, reference)


def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path: Path, reference: Path) -> None:
    # The second checkpoint write (end of epoch 2) is torn under its final name, then the process dies.
    run, proc = _killed(tmp_path, "kill@checkpoint-write=2")
    assert proc.returncode == -signal.SIGKILL
    state = (run / "checkpoints" / "checkpoint").read_text()
    torn = max(int(p.name.split("-")[1].split(".")[0]) for p in (run / "checkpoints").glob("ckpt-*.index"))
    assert f"ckpt-{torn}" not in state  # the state file still names the previous checkpoint only
    resumed = _resume(run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"removing ckpt-{torn}" in resumed.stderr  # the torn leftover is cleaned, not loaded
    assert json.loads((run / "run.json").read_text())["restarts"][0]["from"]["epoch"] == 1
    _assert_same_training(run, reference)


def _kill_after_epoch_2(tmp_path: Path) -> Path:
    run, proc = _killed(tmp_path, "kill@epoch=3,step=2")
    assert proc.returncode == -signal.SIGKILL
    assert len(list((run / "checkpoints").glob("ckpt-*.index"))) == 2
    return run


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(
    tmp_path: Path, reference: Path, damage: str
) -> None:
    run = _kill_after_epoch_2(tmp_path)
    newest = max(
        (run / "checkpoints").glob("ckpt-*.data-*"), key=lambda p: int(p.name.split("-")[1].split(".")[0])
    )
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        newest.write_bytes(b"")
    else:
        mid = len(data) // 2
        newest.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
    resumed = _resume(run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "unusable" in resumed.stderr and "falling back" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    _assert_same_training(run, reference)


def test_no_usable_checkpoint_exits_5_naming_them(tmp_path: Path) -> None:
    run = _kill_after_epoch_2(tmp_path)
    for data in (run / "checkpoints").glob("ckpt-*.data-*"):
        data.write_bytes(b"\x00" * 10)
    resumed = _resume(run)
    assert resumed.returncode == 5, resumed.stderr[-3000:]
    assert "no usable checkpoint" in resumed.stderr and "ckpt-" in resumed.stderr
    assert "Traceback" not in resumed.stderr


def test_corrupt_or_deleted_state_files(tmp_path: Path, reference: Path) -> None:
    run = _kill_after_epoch_2(tmp_path)
    (run / "checkpoints" / "checkpoint").write_text("model_checkpoint_path: <<garbage")
    resumed = _resume(run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_training(run, reference)
    (run / "run.json").write_text("{truncated")
    broken = _resume(run)
    assert broken.returncode == 5 and "run.json" in broken.stderr and "Traceback" not in broken.stderr


def test_full_disk_stops_cleanly_and_keeps_what_was_written(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "c.yaml")
    limit = 8_000  # bytes per file: config, run.json and metrics fit; a checkpoint of this model does not

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [*dltrain_cmd(), "fit", str(cfg), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=600, preexec_fn=small_files,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 5, (proc.returncode, proc.stderr[-3000:])  # not a segfault, not a kill
    assert "no space left" in proc.stderr
    run = _only_run(tmp_path / "runs")
    assert [r["epoch"] for r in _rows(run)] == ["1"]  # metrics.csv intact, not truncated
    assert json.loads((run / "run.json").read_text())["status"] == "failed"


def test_nan_stops_with_exit_4_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run, proc = _killed(tmp_path, "nan@epoch=2,step=6", checkpoint_every_steps=4)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "non-finite" in proc.stderr and "epoch 2" in proc.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and record["reason"].startswith("non-finite loss")
    assert not (run / "model.keras").exists()
    steps = sorted(
        int(p.name.split("-")[1].split(".")[0]) for p in (run / "checkpoints").glob("ckpt-*.index")
    )
    assert steps and max(steps) <= 20 + 4  # nothing saved after the poisoned step
    best = list((run / "checkpoints" / "best").glob("best-*.index"))
    assert [p.name for p in best] == ["best-1.index"]  # the NaN epoch never became best
    resumed = _resume(run)  # the last good checkpoint loads and training can go on
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_resume_refuses_a_changed_config_but_allows_more_epochs(tmp_path: Path, reference: Path) -> None:
    run = _kill_after_epoch_2(tmp_path)
    changed = _config(tmp_path / "changed.yaml")
    proc = run_dltrain("fit", str(changed), "--set", "model.units=[64]", "--set", "data.batch_size=32",
                       "--resume", str(run))  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "model.units" in proc.stderr and "data.batch_size" in proc.stderr
    proc = run_dltrain("fit", str(changed), "--set", "train.epochs=4", "--resume", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run / "run.json").read_text())
    assert record["restarts"][-1]["changed"] == {"train.epochs": {"was": 3, "now": 4}}
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3", "4"]


def test_resume_of_a_finished_run_says_so(reference: Path) -> None:
    proc = _resume(reference)
    assert proc.returncode == 5 and "already finished" in proc.stderr


def test_a_second_process_on_a_running_run_is_locked_out(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "c.yaml")
    cfg_data = yaml.safe_load(cfg.read_text())
    cfg_data["train"]["epochs"] = 200
    cfg.write_text(yaml.safe_dump(cfg_data))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen([*dltrain_cmd(), "fit", str(cfg), "--runs-dir", str(tmp_path / "runs")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((tmp_path / "runs").glob("*/metrics.csv")):
            time.sleep(0.5)
        run = _only_run(tmp_path / "runs")
        second = _resume(run)
        assert (
            second.returncode == 5
            and f"run locked by {socket.gethostname()} pid {first.pid}" in second.stderr
        )
    finally:
        first.kill()
        first.wait()
    # the lock left by the killed process is stale: a resume takes it over
    stale = json.loads((run / ".lock").read_text())
    assert stale["pid"] == first.pid
    cfg_data["train"]["epochs"] = 200
    proc = run_dltrain("fit", str(cfg), "--set", "train.epochs=1", "--resume", str(run))
    assert "run locked" not in proc.stderr
