"""Stop writing a run whose lock another process took over (this one stalled past its lease)."""

from __future__ import annotations

from typing import Any

from dltrain.errors import RunDirError
from dltrain.rundir import RunLock
from dltrain.train.events import Handler, TrainingLoop


class LockGuard(Handler):
    """First of all handlers: a lost lock stops the run before it writes another row or checkpoint."""

    def __init__(self, lock: RunLock) -> None:
        self.lock = lock

    def _check(self, loop: TrainingLoop) -> None:
        if self.lock.lost:
            raise RunDirError(
                f"{loop.run_dir}: another process took over this run's lock (this one stalled past its lease); "
                "stopping without writing more. Check which process should own the run."
            )

    def on_chunk_end(self, loop: TrainingLoop, epoch: int, done: int, logs: dict[str, float]) -> None:
        self._check(loop)

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        self._check(loop)
