"""What a person watches: a progress bar over each epoch's steps (on a terminal), one line per epoch."""

from __future__ import annotations

import logging
from typing import Any

from dltrain.console import EpochProgress, epoch_line
from dltrain.train.events import Handler, TrainingLoop

log = logging.getLogger("dltrain.train.loop")


class Progress(Handler):
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.bar: EpochProgress | None = None

    def on_epoch_begin(self, loop: TrainingLoop, epoch: int) -> None:
        self.bar = EpochProgress(epoch, loop.epochs, loop.steps_per_epoch, self.batch_size)

    def on_chunk_end(self, loop: TrainingLoop, epoch: int, done: int, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(done, logs["loss"])

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        self.close()
        log.info(epoch_line(logs, loop.epochs))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
