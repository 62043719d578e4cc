"""Optimizers and learning-rate schedules from the config.

Schedules are computed by the pure functions of ``dltrain.train.schedules`` as one learning rate per step; the
TensorFlow side only looks the step up in that table, so what is tested in NumPy is what trains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dltrain.registry import Registry
from dltrain.train import schedules

OPTIMIZERS: Registry[Callable[..., keras.optimizers.Optimizer]] = Registry("optimizer")
SCHEDULES: Registry[Callable[..., np.ndarray]] = Registry("schedule")


@SCHEDULES.register("constant")
def _constant(cfg: Any, lr: float, total_steps: int, steps_per_epoch: int) -> np.ndarray:
    return schedules.constant(lr, total_steps)


@SCHEDULES.register("step")
def _step(cfg: Any, lr: float, total_steps: int, steps_per_epoch: int) -> np.ndarray:
    return schedules.step_decay(lr, total_steps, steps_per_epoch, cfg.step_epochs, cfg.gamma)


@SCHEDULES.register("cosine")
def _cosine(cfg: Any, lr: float, total_steps: int, steps_per_epoch: int) -> np.ndarray:
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    return schedules.cosine(lr, total_steps, min(warmup, total_steps - 1), lr * cfg.min_lr_fraction)


@SCHEDULES.register("one_cycle")
def _one_cycle(cfg: Any, lr: float, total_steps: int, steps_per_epoch: int) -> np.ndarray:
    return schedules.one_cycle(lr, total_steps, cfg.warmup_fraction, cfg.div_factor, cfg.final_div_factor)


def lr_table(cfg: Any, lr: float, total_steps: int, steps_per_epoch: int) -> np.ndarray:
    """The learning rate of every optimizer step of the run."""
    return SCHEDULES.get(cfg.kind)(cfg, lr, total_steps, steps_per_epoch)


class TableSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Looks the learning rate up by step; past the end it keeps the last value."""

    def __init__(self, table: Any) -> None:
        self.set_table(table)

    def set_table(self, table: Any) -> None:
        """Replace the table; only before the train step is first traced (it reads the table then)."""
        self.table = tf.constant(np.asarray(table, dtype=np.float32))
        self.size = int(len(self.table))

    def __call__(self, step: Any) -> tf.Tensor:
        index = tf.clip_by_value(tf.cast(step, tf.int32), 0, self.size - 1)
        return tf.gather(self.table, index)

    def get_config(self) -> dict[str, Any]:
        return {"table": self.table.numpy().tolist()}


def _common(cfg: Any, learning_rate: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"learning_rate": learning_rate}
    if cfg.weight_decay:
        kwargs["weight_decay"] = cfg.weight_decay
    if cfg.clipnorm:
        kwargs["global_clipnorm"] = cfg.clipnorm
    return kwargs


@OPTIMIZERS.register("sgd")
def _sgd(cfg: Any, learning_rate: Any) -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **_common(cfg, learning_rate))


@OPTIMIZERS.register("adam")
def _adam(cfg: Any, learning_rate: Any) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(
        beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.epsilon, **_common(cfg, learning_rate)
    )


@OPTIMIZERS.register("adamw")
def _adamw(cfg: Any, learning_rate: Any) -> keras.optimizers.Optimizer:
    kwargs = _common(cfg, learning_rate)
    kwargs.setdefault("weight_decay", 0.0)
    return keras.optimizers.AdamW(beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.epsilon, **kwargs)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(cfg: Any, learning_rate: Any) -> keras.optimizers.Optimizer:
    return keras.optimizers.RMSprop(rho=cfg.rho, momentum=cfg.momentum, **_common(cfg, learning_rate))


def build_optimizer(
    cfg: Any,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    *,
    precision: str = "float32",
) -> keras.optimizers.Optimizer:
    """The optimizer named by ``cfg.kind``; wrapped for loss scaling under mixed float16."""
    optimizer = OPTIMIZERS.get(cfg.kind)(cfg, learning_rate)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
