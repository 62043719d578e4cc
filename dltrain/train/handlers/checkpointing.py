"""Checkpoints: at every epoch end, and every ``train.checkpoint_every_steps`` steps inside an epoch."""

from __future__ import annotations

from typing import Any

from dltrain.train.events import Handler, TrainingLoop


class Checkpointing(Handler):
    """Runs after the handlers that change checkpointed state (best score, early-stopping counters)."""

    def __init__(self, every_steps: int | None) -> None:
        self.every = every_steps

    def max_steps(self, loop: TrainingLoop, done: int) -> int | None:
        if not self.every:
            return None
        return self.every - loop.global_step % self.every

    def on_chunk_end(self, loop: TrainingLoop, epoch: int, done: int, logs: dict[str, float]) -> None:
        if self.every and done < loop.steps_per_epoch and loop.global_step % self.every == 0:
            loop.save_checkpoint(done, loop.totals)

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        loop.save_checkpoint()
