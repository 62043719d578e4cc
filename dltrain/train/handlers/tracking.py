"""Tracking (``tracking:`` in the config): the flattened config as params, each epoch's metrics.csv row as
metrics, and at the end model.keras and the plots as artefacts, sent to MLflow (``dltrain.experiments.tracking``).
A tracking failure warns and never stops training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dltrain.config import Config, to_dict
from dltrain.experiments.tracking import Tracker
from dltrain.train.events import FitResult, Handler, TrainingLoop


class Tracking(Handler):
    def __init__(self, cfg: Config, run_dir: Path, resume: bool) -> None:
        assert cfg.tracking is not None
        self.tracker = Tracker(cfg.tracking, run_dir, cfg.name)
        self.params = to_dict(cfg)
        self.params.pop("sweep", None)
        self.resume = resume
        self.ended = False

    def on_train_begin(self, loop: TrainingLoop) -> None:
        self.tracker.start(self.params, self.resume)

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        self.tracker.metrics(logs, step=epoch)

    def on_train_end(self, loop: TrainingLoop, result: FitResult) -> None:
        self.ended = True

    def on_exported(self, loop: TrainingLoop, run_dir: Path) -> None:
        self.tracker.artifacts([run_dir / "model.keras", run_dir / "plots", run_dir / "config.yaml"])
        self.tracker.finish("FINISHED")

    def close(self) -> None:
        if not self.ended:
            self.tracker.finish("KILLED")
