"""The training loop's events and the handler base class (docs/architecture.md, "The loop and its events").

The loop (``dltrain.train.loop.TrainingLoop``) runs phases of epochs of chunks, and tells every handler, in
order, what happened:

    on_train_begin(loop)                    once per process, after a resume's restore
      on_phase_begin(loop, phase)           a phase: its epochs, trainable layers and optimizer groups
        on_epoch_begin(loop, epoch)
          on_chunk_end(loop, epoch, done, logs)   after each tf.function call of ``steps`` steps: with
                                            train.steps_per_execution > 1 a "batch" event is one chunk
        on_epoch_end(loop, epoch, logs)     logs: the metrics.csv row (loss, accuracy|mae, val_*, ...)
      on_phase_end(loop, phase)
    on_train_end(loop, result)              only when training ends normally (not on an exception)
    on_exported(loop, run_dir)              fit only, after model.keras and the plots are written
    close()                                 always, last: release a progress bar, a file

A handler may end the run cleanly after the current epoch with ``loop.request_stop(reason)`` (early stopping,
a sweep's pruner, a user's callback); Ctrl-C and SIGTERM stop mid-epoch at a chunk boundary, with a checkpoint.
State a handler must keep across a resume lives in ``tf.Variable``s it returns from ``checkpoint_state``: they
are saved in the run's checkpoint with the model, so resume stays bit-exact. ``max_steps`` lets a handler cut
a chunk short (a step-checkpoint boundary, a test fault's exact step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Phase:
    """Epochs ``first_epoch``..``last_epoch`` (1-based, counted over the whole run) trained one way.

    ``groups``: which variables train and with which optimizers from this phase on (freezing a backbone,
    discriminative learning rates); None keeps the step's groups. A change re-traces the train step. The
    phase of an epoch is a function of the epoch, so a resume re-enters the right phase from the checkpoint.
    """

    name: str
    first_epoch: int
    last_epoch: int
    groups: Callable[[Any], Sequence[Any]] | None = None
    """step -> the OptimizerGroups (``dltrain.train.step``) to train with in this phase."""

    @property
    def epochs(self) -> int:
        return self.last_epoch - self.first_epoch + 1


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int | None
    best_value: float | None
    monitor: str
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    stop_reason: str | None = None


class TrainingLoop(Protocol):
    """What a handler may read and call on the loop (``dltrain.train.loop.TrainingLoop`` implements it)."""

    run_dir: Path
    step: Any
    """The ``dltrain.train.step.TrainStep``: ``.model``, ``.optimizer``, ``.splits``."""
    state: Any
    """The ``dltrain.train.checkpoints.TrainingState`` (its ``save_best``)."""
    epochs: int
    steps_per_epoch: int
    metric: str
    """accuracy, or mae for a regression."""
    history: list[dict[str, Any]]
    """The metrics.csv rows so far (earlier processes' too, after a resume)."""
    totals: Any
    """The current epoch's running sums (``dltrain.train.step.StepTotals``)."""

    @property
    def epoch(self) -> int: ...

    @property
    def global_step(self) -> int: ...

    def request_stop(self, reason: str) -> None: ...

    def save_checkpoint(self, done: int = 0, totals: Any = None) -> None: ...


class Handler:
    """Base class of the loop's event handlers; every method is optional. See the module docstring."""

    def checkpoint_state(self) -> dict[str, Any]:
        """tf.Variables saved with the run's checkpoint under these names (created in the strategy's scope)."""
        return {}

    def max_steps(self, loop: TrainingLoop, done: int) -> int | None:
        """The most steps the next chunk may run, ``done`` steps into the epoch; None: no limit."""
        return None

    def on_train_begin(self, loop: TrainingLoop) -> None: ...

    def on_phase_begin(self, loop: TrainingLoop, phase: Phase) -> None: ...

    def on_epoch_begin(self, loop: TrainingLoop, epoch: int) -> None: ...

    def on_chunk_end(self, loop: TrainingLoop, epoch: int, done: int, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_phase_end(self, loop: TrainingLoop, phase: Phase) -> None: ...

    def on_train_end(self, loop: TrainingLoop, result: FitResult) -> None: ...

    def on_exported(self, loop: TrainingLoop, run_dir: Path) -> None:
        """After the fit wrote model.keras and the plots (not called by lr-find); tracking uploads them here."""

    def close(self) -> None:
        """Release what the handler holds (a progress bar, a file); called however the loop ended."""
