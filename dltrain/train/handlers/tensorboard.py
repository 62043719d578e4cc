"""TensorBoard scalars per epoch into ``RUN/events`` (``tensorboard --logdir runs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from dltrain.train.events import Handler, TrainingLoop


class TensorBoard(Handler):
    def __init__(self, run_dir: Path, metric: str) -> None:
        self.writer = tf.summary.create_file_writer(str(run_dir / "events"))
        self.keys = ("loss", metric, "val_loss", f"val_{metric}", "learning_rate")

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        with self.writer.as_default(step=int(logs["epoch"])):
            for key in self.keys:
                if key in logs:
                    tf.summary.scalar(key, logs[key])

    def close(self) -> None:
        self.writer.flush()
