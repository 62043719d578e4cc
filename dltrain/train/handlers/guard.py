"""Stop on a non-finite loss before anything is saved: the last good checkpoint stays the latest."""

from __future__ import annotations

import math
from typing import Any

from dltrain.errors import NonFiniteLossError
from dltrain.train.events import Handler, TrainingLoop


class NonFiniteGuard(Handler):
    """Exit 4 at the first chunk (or validation) whose loss is NaN or inf; it runs before every other handler."""

    def on_chunk_end(self, loop: TrainingLoop, epoch: int, done: int, logs: dict[str, float]) -> None:
        loss_sum = logs["chunk_loss_sum"]
        if not math.isfinite(loss_sum):
            raise NonFiniteLossError(
                f"the training loss became non-finite ({loss_sum}) in epoch {epoch} at step {loop.global_step}. "
                "The last good checkpoint is kept. Lower optimizer.learning_rate (try `dltrain lr-find`), "
                "or set optimizer.clipnorm."
            )

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        val = logs.get("val_loss")
        if val is not None and not math.isfinite(val):
            raise NonFiniteLossError(
                f"the validation loss became non-finite ({val}) after epoch {epoch}. The last good "
                "checkpoint is kept. Lower optimizer.learning_rate or set optimizer.clipnorm."
            )
