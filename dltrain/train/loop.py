"""The one training loop, for every tf.distribute strategy: phases of epochs of chunks, firing events.

The loop owns only what every run needs: the order of phases, epochs and chunks, the position and the epoch's
partial sums (checkpointed, so a resume continues at the exact batch), validation, and the Ctrl-C / SIGTERM
stop at a chunk boundary. Everything else a fit does — progress, metrics.csv, TensorBoard, checkpoints, the
best model, early stopping, the non-finite guard, test faults, users' callbacks — is a handler
(``dltrain.train.events``, ``dltrain.train.handlers``). See docs/architecture.md, "The loop and its events".
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dltrain.config import Config
from dltrain.errors import Interrupted
from dltrain.train.checkpoints import TrainingState
from dltrain.train.events import FitResult, Handler, Phase
from dltrain.train.signals import StopRequest
from dltrain.train.step import StepTotals, TrainStep

log = logging.getLogger(__name__)


def metric_columns(metric: str = "accuracy") -> list[str]:
    """metrics.csv columns; ``metric`` is accuracy, or mae (original units) for a regression."""
    return [
        "epoch", "step", "loss", metric, "val_loss", f"val_{metric}", "learning_rate", "seconds", "cpu_seconds",
    ]  # fmt: skip


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


class TrainingLoop:
    """Runs ``phases`` on a ``TrainStep`` into ``run_dir``, telling ``handlers`` (in order) what happens.

    Stops cleanly between chunks when asked (Ctrl-C, SIGTERM): the state at that step is checkpointed, so
    ``--resume`` continues at the next batch. A SIGKILL resumes from the last checkpoint: the end of an
    epoch, or every ``train.checkpoint_every_steps`` steps.
    """

    def __init__(
        self,
        cfg: Config,
        step: TrainStep,
        run_dir: Path,
        phases: Sequence[Phase],
        handlers: Sequence[Handler],
        lr_values: Any,
    ) -> None:
        self.cfg = cfg
        self.step = step
        self.run_dir = run_dir
        self.phases = list(phases)
        self.handlers = list(handlers)
        self.lr_values = lr_values
        self.metric = step.splits.metric
        self.monitor = cfg.train.monitor
        self.epochs = self.phases[-1].last_epoch
        self.steps_per_epoch = step.train_data.steps
        self.history: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.totals = StepTotals()
        """The current epoch's running sums (a mid-epoch checkpoint saves them)."""
        extra: dict[str, Any] = {}
        for handler in self.handlers:
            extra.update(handler.checkpoint_state())
        self.state = TrainingState(
            run_dir,
            step.model,
            step.optimizer,
            step.strategy,
            keep=cfg.train.keep_checkpoints,
            extra=extra,
        )

    # ---------------------------------------------------------------------------------- for handlers

    @property
    def global_step(self) -> int:
        return self.step.global_step

    @property
    def epoch(self) -> int:
        """Epochs finished (and checkpointed, at an epoch end)."""
        return int(self.state.epoch.numpy())

    def request_stop(self, reason: str) -> None:
        """End the run cleanly after the current epoch (its checkpoint and metrics row are written)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def learning_rate_at(self, step: int) -> float:
        return float(self.lr_values[min(max(step - 1, 0), len(self.lr_values) - 1)])

    def save_checkpoint(self, done: int = 0, totals: StepTotals | None = None) -> None:
        """Checkpoint now: at an epoch end (``done`` 0), or ``done`` steps into an epoch with its sums."""
        if done:
            assert totals is not None
            self.state.step_in_epoch.assign(done)
            self.state.partial.assign([totals.loss_sum, totals.metric_sum, totals.count])
        self.state.save(self.global_step, self.run_dir)

    # ------------------------------------------------------------------------------------ restoring

    def restore(self, source: Path | None = None) -> dict[str, Any] | None:
        """Continue from the newest usable checkpoint; None when the run has none yet.

        ``source``: the chief's checkpoint folder, for a non-chief worker that writes to its own scratch.
        """
        restored = self.state.restore_latest(source)
        if restored is None:
            return None
        values = self.state.values()
        return {"checkpoint": Path(restored).name, **values, "global_step": self.global_step}

    # ------------------------------------------------------------------------------------------ run

    def _fire(self, event: str, *args: Any) -> None:
        for handler in self.handlers:
            getattr(handler, event)(self, *args)

    def _chunk_size(self, done: int) -> int:
        """Steps in the next call: never past the epoch's end nor what a handler allows."""
        n = min(self.cfg.train.steps_per_execution, self.steps_per_epoch - done)
        for handler in self.handlers:
            limit = handler.max_steps(self, done)
            if limit is not None:
                n = min(n, limit)
        return max(n, 1)

    def _phase_of(self, epoch: int) -> Phase:
        return next(p for p in self.phases if p.first_epoch <= epoch <= p.last_epoch)

    def run(self, stop: StopRequest | None = None) -> FitResult:
        state = self.state
        start_epoch = int(state.epoch.numpy())
        skip = int(state.step_in_epoch.numpy())
        try:
            return self._run(stop, start_epoch, skip)
        finally:
            for handler in self.handlers:
                handler.close()

    def _run(self, stop: StopRequest | None, start_epoch: int, skip: int) -> FitResult:
        step, state = self.step, self.state
        self._fire("on_train_begin")
        phase: Phase | None = None
        for epoch in range(start_epoch + 1, self.epochs + 1):
            if phase is None or epoch > phase.last_epoch:
                if phase is not None:
                    self._fire("on_phase_end", phase)
                phase = self._phase_of(epoch)
                if phase.groups is not None:
                    step.set_groups(phase.groups(step))
                self._fire("on_phase_begin", phase)
            t0, c0 = time.monotonic(), _cpu()
            self._fire("on_epoch_begin", epoch)
            iterator = step.train_iterator(epoch - 1, skip_batches=skip)
            totals = StepTotals(*(float(v) for v in state.partial.numpy())) if skip else StepTotals()
            done, skip = skip, 0
            self.totals = totals
            while done < self.steps_per_epoch:
                n = self._chunk_size(done)
                loss_sum, metric_sum, count = step.run_steps(iterator, n)
                done += n
                totals.add(loss_sum, metric_sum, count)
                chunk = {
                    "loss": totals.loss,
                    self.metric: totals.metric,
                    "steps": n,
                    "chunk_loss_sum": loss_sum,
                }
                self._fire("on_chunk_end", epoch, done, chunk)
                if done < self.steps_per_epoch and stop is not None and stop.requested:
                    self.save_checkpoint(done, totals)
                    raise self._interrupted(stop, epoch, done)
            val = step.evaluate(step.val_data) if step.val_data is not None else None
            row = self._epoch_row(epoch, totals, val, time.monotonic() - t0, _cpu() - c0)
            self.history.append(row)
            state.epoch.assign(epoch)
            state.reset_partial()
            self._fire("on_epoch_end", epoch, row)
            if stop is not None and stop.requested and epoch < self.epochs:
                raise self._interrupted(stop, epoch + 1, 0)
            if self.stop_reason is not None:
                break
        if phase is not None:
            self._fire("on_phase_end", phase)
        best_epoch, best_value = self.best()
        result = FitResult(
            len(self.history),
            best_epoch,
            best_value,
            self.monitor,
            self.stop_reason is not None,
            self.history,
            self.stop_reason,
        )
        self._fire("on_train_end", result)
        return result

    def best(self) -> tuple[int | None, float | None]:
        """The best epoch and its monitored value, from the handler that keeps them (None: none yet)."""
        for handler in self.handlers:
            found = getattr(handler, "best", None)
            if callable(found):
                return found()  # type: ignore[no-any-return]
        return None, None

    def _epoch_row(
        self, epoch: int, train: StepTotals, val: StepTotals | None, wall: float, cpu: float
    ) -> dict[str, Any]:
        step = self.global_step
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "loss": train.loss,
            self.metric: train.metric,
            "learning_rate": self.learning_rate_at(step),
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
        }
        if val is not None:
            row["val_loss"] = val.loss
            row[f"val_{self.metric}"] = val.metric
        return row

    def _interrupted(self, stop: StopRequest, epoch: int, step: int) -> Interrupted:
        where = f"epoch {epoch}, step {step}" if step else f"the start of epoch {epoch}"
        return Interrupted(
            f"stopped by {stop.name}; checkpoint saved at {where}. Resume with: dltrain fit --resume {self.run_dir}",
            stop.exit_code,
        )
