"""A sweep trial's pruner (``dltrain sweep``): report each epoch's metric to the Optuna trial and stop the fit
from outside, through ``loop.request_stop``, when the study's pruner says so.

Active only when ``DLTRAIN_SWEEP_TRIAL`` is set (by the sweep, for its child ``dltrain fit``). The fit then ends
``finished`` with ``stop_reason: pruned ...`` in run.json (its best epoch so far exported, like early stopping),
and the sweep records the trial as pruned. A storage error never stops the training: it warns and stops
reporting.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from dltrain.experiments.study import make_pruner, open_storage, require_optuna, trial_from_env
from dltrain.train.events import Handler, TrainingLoop

log = logging.getLogger(__name__)


class SweepPruning(Handler):
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.trial: Any = None
        self.broken = False

    def _open(self) -> Any:
        if self.trial is None and not self.broken:
            optuna = require_optuna()
            study = optuna.load_study(
                study_name=self.spec["study"],
                storage=open_storage(self.spec["storage"]),
                pruner=make_pruner(
                    self.spec.get("pruner", "median"),
                    int(self.spec.get("startup_trials", 5)),
                    int(self.spec.get("warmup_epochs", 0)),
                ),
            )
            self.trial = optuna.trial.Trial(study, int(self.spec["trial_id"]))
        return self.trial

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        metric = self.spec["metric"]
        value = logs.get(metric)
        if value is None or self.broken:
            return
        try:
            value = float(value)
            trial = self._open()
            if not math.isfinite(value):
                return
            trial.report(value, epoch)
            if trial.should_prune():
                loop.request_stop(
                    f"pruned by the sweep's pruner at epoch {epoch} (trial {self.spec.get('number')}: "
                    f"{metric} {value:.4g} worse than the median of earlier trials)"
                )
        except Exception as exc:  # the study is the sweep's business; training goes on
            self.broken = True
            log.warning("sweep pruning disabled for this run: %s", exc)


def from_env() -> SweepPruning | None:
    spec = trial_from_env()
    return SweepPruning(spec) if spec else None
