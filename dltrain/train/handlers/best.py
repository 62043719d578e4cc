"""The best epoch by ``train.monitor``: its score survives restarts, its weights go to checkpoints/best/."""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from dltrain.train.events import Handler, TrainingLoop


def better(monitor: str, value: float, best: float, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` for ``monitor`` (lower loss/MAE, higher accuracy) by more than ``min_delta``."""
    if not math.isfinite(value):
        return False  # a NaN epoch is never the best one
    if "loss" in monitor or "mae" in monitor:
        return value < best - min_delta
    return value > best + min_delta


def initial_best(monitor: str) -> float:
    return math.inf if ("loss" in monitor or "mae" in monitor) else -math.inf


class BestModel(Handler):
    """Keeps the best score and epoch in the checkpoint; saves the best epoch's weights when it improves."""

    def __init__(self, monitor: str, strategy: tf.distribute.Strategy) -> None:
        self.monitor = monitor
        with strategy.scope():
            self.best_value = tf.Variable(
                initial_best(monitor), dtype=tf.float64, trainable=False, name="best_value"
            )
            self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")

    def checkpoint_state(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch}

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        if better(self.monitor, logs[self.monitor], float(self.best_value.numpy())):
            self.best_value.assign(logs[self.monitor])
            self.best_epoch.assign(epoch)
            loop.state.save_best(epoch, loop.run_dir)

    def best(self) -> tuple[int | None, float | None]:
        epoch = int(self.best_epoch.numpy())
        return (epoch, float(self.best_value.numpy())) if epoch else (None, None)
