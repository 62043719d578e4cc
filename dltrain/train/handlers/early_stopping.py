"""Early stopping on ``train.early_stopping``: its counters live in the checkpoint, so a resume continues them."""

from __future__ import annotations

import logging
from typing import Any

import tensorflow as tf

from dltrain.config.schema import EarlyStopping as EarlyStoppingConfig
from dltrain.train.events import Handler, TrainingLoop
from dltrain.train.handlers.best import better, initial_best

log = logging.getLogger("dltrain.train.loop")


class EarlyStopping(Handler):
    def __init__(self, cfg: EarlyStoppingConfig, strategy: tf.distribute.Strategy) -> None:
        self.cfg = cfg
        with strategy.scope():
            self.es_best = tf.Variable(
                initial_best(cfg.monitor), dtype=tf.float64, trainable=False, name="es_best"
            )
            self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")

    def checkpoint_state(self) -> dict[str, Any]:
        return {"es_best": self.es_best, "bad_epochs": self.bad_epochs}

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        cfg = self.cfg
        if better(cfg.monitor, logs[cfg.monitor], float(self.es_best.numpy()), cfg.min_delta):
            self.es_best.assign(logs[cfg.monitor])
            self.bad_epochs.assign(0)
        else:
            self.bad_epochs.assign_add(1)
        if int(self.bad_epochs.numpy()) >= cfg.patience:
            log.info("early stopping: %s did not improve for %d epochs", cfg.monitor, cfg.patience)
            loop.request_stop(f"early stopping: {cfg.monitor} did not improve for {cfg.patience} epochs")
