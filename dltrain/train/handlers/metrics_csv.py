"""metrics.csv: one row per epoch, appended before the epoch's checkpoint (a kill between the two leaves a row
that the resume drops and redoes, never a missing one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dltrain.rundir import METRICS_FILE, MetricsLog, read_metrics
from dltrain.train.events import Handler, TrainingLoop


class MetricsCsv(Handler):
    def __init__(self, run_dir: Path, columns: list[str]) -> None:
        self.log = MetricsLog(run_dir / METRICS_FILE, columns)

    def on_train_begin(self, loop: TrainingLoop) -> None:
        # Rows past the restored epoch were finished by a killed process but never checkpointed: redone.
        self.log.keep_epochs_up_to(loop.epoch)
        loop.history[:0] = read_metrics(self.log.path)

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        self.log.append(logs)
