"""The loop's events, handlers and users' callbacks; checkpoint and resume in-process on a tiny model.

These run in the everyday suite (`make test`): a broken checkpoint or resume fails here in seconds, not only in
CI's slow subprocess tests (tests/test_resume.py).
"""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from dltrain.config import load_config
from dltrain.errors import ConfigError, Interrupted
from dltrain.train import fit as training
from dltrain.train.events import Handler, TrainingLoop
from tests.conftest import run_dltrain

EVENTS: list[tuple[str, Any]] = []


class Recorder(Handler):
    """A user's handler: records the events it sees, and stops the run after ``stop_after`` epochs."""

    def __init__(self, stop_after: int = 0) -> None:
        self.stop_after = stop_after

    def on_train_begin(self, loop: TrainingLoop) -> None:
        EVENTS.append(("train_begin", loop.epoch))

    def on_phase_begin(self, loop: TrainingLoop, phase: Any) -> None:
        EVENTS.append(("phase_begin", phase.name))

    def on_epoch_begin(self, loop: TrainingLoop, epoch: int) -> None:
        EVENTS.append(("epoch_begin", epoch))

    def on_chunk_end(self, loop: TrainingLoop, epoch: int, done: int, logs: dict[str, float]) -> None:
        EVENTS.append(("chunk_end", done))

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        EVENTS.append(("epoch_end", (epoch, sorted(logs))))
        if self.stop_after and epoch >= self.stop_after:
            loop.request_stop(f"Recorder stops after epoch {epoch}")

    def on_train_end(self, loop: TrainingLoop, result: Any) -> None:
        EVENTS.append(("train_end", result.epochs_run))


class SigintAt(Handler):
    """Ctrl-C at an exact step of an epoch (what a user's key press does), delivered for real."""

    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def max_steps(self, loop: TrainingLoop, done: int) -> int | None:
        return 1

    def on_chunk_end(self, loop: TrainingLoop, epoch: int, done: int, logs: dict[str, float]) -> None:
        if (epoch, done) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


class StopAtEpoch(keras.callbacks.Callback):
    """A user's Keras callback: stops the way Keras's own callbacks do."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        STOPPED.append(dict(logs or {}))
        if epoch + 1 >= self.epoch:
            self.model.stop_training = True


STOPPED: list[dict[str, float]] = []


def _config(
    tmp_path: Path, *, epochs: int = 2, callbacks: list[dict[str, Any]] | None = None, **data: Any
) -> Path:
    cfg = {
        "name": "tiny",
        "seed": 3,
        "data": {"kind": "digits", "batch_size": 128, "validation_split": 0.2, **data},
        "model": {"kind": "dense", "units": [16]},
        "optimizer": {"kind": "adam", "learning_rate": 3e-3},
        "train": {"epochs": epochs, "steps_per_execution": 4, "callbacks": callbacks or []},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _fit(path: Path, runs: Path, *overrides: str) -> training.FitOutcome:
    return training.fit(load_config(path, list(overrides)), runs)


def _weights(run: Path) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras.models.load_model(run / "model.keras", compile=False).get_weights()]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_events_arrive_in_order_and_a_handler_stops_the_run_cleanly(tmp_path: Path) -> None:
    EVENTS.clear()
    path = _config(tmp_path, epochs=4, callbacks=[{"class": "tests.test_loop:Recorder", "stop_after": 2}])
    outcome = _fit(path, tmp_path / "runs")
    names = [e[0] for e in EVENTS]
    assert names[:3] == ["train_begin", "phase_begin", "epoch_begin"]
    assert names[-1] == "train_end" and names.count("epoch_end") == 2
    # 1437 training examples - 20% validation = 1150 -> 9 batches of 128, in chunks of at most 4 steps
    assert [e[1] for e in EVENTS if e[0] == "chunk_end"][:3] == [4, 8, 9]
    epoch_logs = next(e[1][1] for e in EVENTS if e[0] == "epoch_end")
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(epoch_logs)
    assert outcome.result.epochs_run == 2 and outcome.result.stopped_early
    record = json.loads((outcome.run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["stop_reason"] == "Recorder stops after epoch 2"
    assert len(_rows(outcome.run_dir)) == 2 and (outcome.run_dir / "model.keras").is_file()


def test_keras_callbacks_get_the_usual_logs_and_can_stop(tmp_path: Path) -> None:
    STOPPED.clear()
    log_file = tmp_path / "keras_log.csv"
    path = _config(
        tmp_path,
        epochs=5,
        callbacks=[
            {"class": "keras.callbacks:CSVLogger", "filename": str(log_file)},
            {"class": "tests.test_loop:StopAtEpoch", "epoch": 3},
        ],
    )
    outcome = _fit(path, tmp_path / "runs")
    assert outcome.result.epochs_run == 3
    assert outcome.result.stop_reason == "StopAtEpoch set model.stop_training"
    with open(log_file, encoding="utf-8") as fh:
        keras_rows = list(csv.DictReader(fh))
    ours = _rows(outcome.run_dir)
    assert [r["epoch"] for r in keras_rows] == ["0", "1", "2"]  # Keras counts epochs from 0
    for theirs, mine in zip(keras_rows, ours, strict=True):
        assert float(theirs["val_loss"]) == pytest.approx(float(mine["val_loss"]), rel=1e-6)
        assert float(theirs["accuracy"]) == pytest.approx(float(mine["accuracy"]), rel=1e-6)
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(STOPPED[0])


def test_keras_early_stopping_works_through_model_stop_training(tmp_path: Path) -> None:
    # patience 0 on a monitor that cannot improve after the first epoch (min_delta huge): stops after epoch 2
    path = _config(
        tmp_path,
        epochs=6,
        callbacks=[
            {
                "class": "keras.callbacks:EarlyStopping",
                "monitor": "val_loss",
                "patience": 0,
                "min_delta": 10.0,
            }
        ],
    )
    outcome = _fit(path, tmp_path / "runs")
    assert outcome.result.epochs_run == 2


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"class": "keras.callbacks:ReduceLROnPlateau"}, "does not work in dltrain's training loop"),
        ({"class": "keras.callbacks:ModelCheckpoint", "filepath": "x.keras"}, "does not work"),
        ({"class": "no_such_package.mod:Thing"}, "cannot import no_such_package.mod"),
        ({"class": "collections:OrderedDict"}, "neither a keras.callbacks.Callback nor"),
        ({"class": "keras.callbacks:CSVLogger", "no_such_arg": 1}, "CSVLogger(no_such_arg) failed"),
    ],
)
def test_a_bad_callback_is_exit_2_and_leaves_no_run_directory(
    tmp_path: Path, spec: dict[str, Any], expected: str
) -> None:
    path = _config(tmp_path, callbacks=[spec])
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        _fit(path, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_callback_syntax_is_checked_with_the_config_without_tensorflow(tmp_path: Path) -> None:
    path = _config(tmp_path, callbacks=[{"class": "CSVLogger"}])
    proc = run_dltrain("config", "show", str(path))
    assert proc.returncode == 2
    assert "train.callbacks[0]" in proc.stderr and "package.module:ClassName" in proc.stderr


def test_resume_after_ctrl_c_mid_epoch_is_bit_identical_in_process(tmp_path: Path) -> None:
    """Checkpoint and resume on a tiny model: Ctrl-C at step 5 of epoch 2 saves, resume finishes identically."""
    straight = _fit(_config(tmp_path, epochs=3), tmp_path / "straight")
    path = _config(
        tmp_path, epochs=3, callbacks=[{"class": "tests.test_loop:SigintAt", "epoch": 2, "step": 5}]
    )
    with pytest.raises(Interrupted) as stopped:
        _fit(path, tmp_path / "cut")
    assert stopped.value.exit_code == 130
    run = next((tmp_path / "cut").iterdir())
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert len(_rows(run)) == 1  # epoch 1 only; epoch 2 stopped at step 5
    # Resume without the Ctrl-C callback (callbacks may change on --resume).
    resumed = training.resume(run, load_config(_config(tmp_path, epochs=3)))
    assert resumed.result.epochs_run == 3
    assert json.loads((run / "run.json").read_text())["restarts"][-1]["from"]["step_in_epoch"] == 5
    for a, b in zip(_weights(run), _weights(straight.run_dir), strict=True):
        np.testing.assert_array_equal(a, b)
    for mine, theirs in zip(_rows(run), _rows(straight.run_dir), strict=True):
        assert mine["loss"] == theirs["loss"] and mine["val_loss"] == theirs["val_loss"]


def test_training_longer_from_a_finished_run_matches_a_longer_run(tmp_path: Path) -> None:
    longer = _fit(_config(tmp_path, epochs=2), tmp_path / "longer")
    short = _fit(_config(tmp_path, epochs=1), tmp_path / "short")
    # The schedule is constant, so one epoch then one more is the same training as two at once.
    training.resume(short.run_dir, load_config(_config(tmp_path, epochs=2)))
    for a, b in zip(_weights(short.run_dir), _weights(longer.run_dir), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("config", "overrides", "expected"),
    [
        ("configs/sunspots_gru.yaml", ["train.monitor=val_accuracy"], "a regression reports loss and mae"),
        ("configs/colors_mlp.yaml", ["model={kind: cnn}"], "needs images"),
        ("configs/digits_dense.yaml", ["data.validation_split=0"], "there is no validation split"),
        (
            "configs/digits_dense.yaml",
            ["train.early_stopping={monitor: val_mae}"],
            "reports loss and accuracy",
        ),
    ],
)
def test_a_mistake_only_the_data_reveals_leaves_no_run_directory(
    tmp_path: Path, config: str, overrides: list[str], expected: str
) -> None:
    runs = tmp_path / "runs"
    proc = run_dltrain("fit", config, *[a for o in overrides for a in ("--set", o)], "--runs-dir", str(runs))
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert not runs.exists() or not any(runs.iterdir())
