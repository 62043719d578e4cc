"""A test-only fault hook: ``DLTRAIN_FAULT`` makes a run fail for real at an exact point. Inert unless set.

Forms (several separated by ``;``):
    kill@step=12            SIGKILL the process after global step 12
    kill@epoch=2,step=5     SIGKILL after step 5 of epoch 2 (1-based epoch, step within the epoch)
    sigterm@step=7          send SIGTERM to itself (a preemption) after step 7
    sigint@step=7           send SIGINT (Ctrl-C) after step 7
    nan@step=7              poison the weights with NaN after step 7, so the next loss is non-finite
    kill@checkpoint-write   SIGKILL in the middle of writing the first checkpoint (a torn write)
    kill@checkpoint-write=2 the same during the second checkpoint write
    sigint@checkpoint-write=2  Ctrl-C as the second checkpoint write starts (the write must still finish)
    sigterm@lr-find=5       SIGTERM after step 5 of a learning-rate sweep (lr-find, or fit's learning_rate: auto)
    perturb@export          dltrain export: negate the last layer's weights before the artefact is written, so
                            the artefact's check against model.keras fails for real (alone; read by the exporter)
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import numpy as np

from dltrain.train.events import Handler, TrainingLoop

ENV = "DLTRAIN_FAULT"


@dataclass(frozen=True)
class Fault:
    action: str
    epoch: int | None = None
    step: int | None = None
    at_checkpoint_write: int = 0
    """With ``kill@checkpoint-write[=N]``: the N-th checkpoint write of the process (1 by default)."""
    at_lr_find_step: int = 0
    """With ``ACTION@lr-find=N``: after step N of a learning-rate sweep."""


def parse(text: str | None) -> list[Fault]:
    """Parse ``DLTRAIN_FAULT``; a malformed value raises ``ValueError`` (a test bug, never a user's)."""
    faults: list[Fault] = []
    for item in (text or "").split(";"):
        item = item.strip()
        if not item:
            continue
        action, _, where = item.partition("@")
        if action not in ("kill", "sigterm", "sigint", "nan"):
            raise ValueError(f"{ENV}: unknown action {action!r} in {item!r}")
        if where.startswith("lr-find="):
            faults.append(Fault(action, at_lr_find_step=int(where.partition("=")[2])))
            continue
        if where.startswith("checkpoint-write"):
            _, _, nth = where.partition("=")
            faults.append(Fault(action, at_checkpoint_write=int(nth or 1)))
            continue
        fields = dict(part.split("=", 1) for part in where.split(",") if "=" in part)
        if not fields or set(fields) - {"epoch", "step"}:
            raise ValueError(f"{ENV}: expected epoch=N,step=N or checkpoint-write in {item!r}")
        faults.append(
            Fault(
                action,
                int(fields["epoch"]) if "epoch" in fields else None,
                int(fields["step"]) if "step" in fields else None,
            )
        )
    return faults


def active() -> list[Fault]:
    return parse(os.environ.get(ENV))


def due(
    faults: list[Fault], *, epoch: int, step_in_epoch: int, global_step: int, steps_run: int = 1
) -> Fault | None:
    """The fault to fire after a call that ran ``steps_run`` steps and ended at this step, if any.

    A fault fires once, after the call whose steps include its step (exactly at it when calls run one step).
    """
    for fault in faults:
        if fault.at_checkpoint_write or fault.at_lr_find_step or fault.step is None:
            continue
        if fault.epoch is not None:
            if fault.epoch == epoch and step_in_epoch - steps_run < fault.step <= step_in_epoch:
                return fault
        elif global_step - steps_run < fault.step <= global_step:
            return fault
    return None


def fire_in_lr_find(faults: list[Fault], step: int) -> None:
    """Fire an ``@lr-find=N`` fault after step ``step`` of a learning-rate sweep."""
    for fault in faults:
        if fault.at_lr_find_step == step:
            fire_signal(fault)


def fire_signal(fault: Fault) -> None:
    """Deliver the fault's signal to this process (``nan`` is handled by the trainer)."""
    sig = {"kill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigint": signal.SIGINT}[fault.action]
    os.kill(os.getpid(), sig)


class FaultHandler(Handler):
    """Fires ``DLTRAIN_FAULT``'s step faults from the training loop (checkpoint-write faults fire in
    ``dltrain.train.checkpoints``). Runs before the checkpoint handler, so a kill at a step lands before that
    step's checkpoint."""

    def __init__(self, faults: list[Fault], workers: int) -> None:
        self.faults = faults
        self.workers = workers

    def max_steps(self, loop: TrainingLoop, done: int) -> int | None:
        # A test fault fires at an exact step: one step a call. Not across workers: every worker must run the
        # same calls (collectives are matched call by call), so there it fires after the chunk holding its step.
        return 1 if self.workers == 1 else None

    def on_chunk_end(self, loop: TrainingLoop, epoch: int, done: int, logs: dict[str, float]) -> None:
        fault = due(
            self.faults,
            epoch=epoch,
            step_in_epoch=done,
            global_step=loop.global_step,
            steps_run=int(logs["steps"]),
        )
        if fault is None:
            return
        if fault.action == "nan":
            for var in loop.step.model.trainable_variables:
                var.assign(np.full(var.shape, np.nan, dtype=var.dtype))
        else:
            fire_signal(fault)
