"""The one training loop, for every tf.distribute strategy (DESIGN.md section 2).

``strategy.run`` of a step function over ``experimental_distribute_dataset``, several steps per
``tf.function`` call, losses averaged over the *global* batch. The composition root: it alone knows the
data, the model and the optimizer. State lives in a ``tf.train.Checkpoint`` managed by
``tf.train.CheckpointManager``; ``model.keras`` (the best epoch) is written atomically at the end.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dltrain.config import Config
from dltrain.console import EpochProgress, epoch_line
from dltrain.data import Splits
from dltrain.errors import ConfigError, NonFiniteLossError, RunDirError
from dltrain.fsutil import fsync_dir
from dltrain.models import build_model, with_probabilities
from dltrain.optim import TableSchedule, build_optimizer, lr_table
from dltrain.pipeline import ArrayPipeline
from dltrain.rundir import METRICS_FILE, MetricsLog
from dltrain.runtime import Runtime

log = logging.getLogger(__name__)

METRIC_COLUMNS = [
    "epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds", "cpu_seconds",
]  # fmt: skip
_SUM = tf.distribute.ReduceOp.SUM


@dataclass
class StepTotals:
    """Sums over the examples of a pass: mean loss and accuracy are taken from them."""

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    def add(self, loss_sum: float, correct: float, count: float) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.count += count

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else float("nan")


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int | None
    best_value: float | None
    monitor: str
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


def _better(monitor: str, value: float, best: float, min_delta: float = 0.0) -> bool:
    if not math.isfinite(value):
        return False  # a NaN epoch is never the best one
    if "loss" in monitor:
        return value < best - min_delta
    return value > best + min_delta


def _initial_best(monitor: str) -> float:
    return math.inf if "loss" in monitor else -math.inf


def _summed_steps(strategy: tf.distribute.Strategy, step_fn: Any) -> Any:
    """A tf.function that runs ``step_fn`` on ``steps`` batches of a distributed iterator in one call.

    Several steps per call cut the Python overhead per step; the (loss_sum, correct, count) of every step
    are summed over replicas and steps, so the caller reads exact totals.
    """

    @tf.function
    def run(iterator: Any, steps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        loss_sum = tf.constant(0.0)
        correct = tf.constant(0.0)
        count = tf.constant(0.0)
        for _ in tf.range(steps):
            out = strategy.run(step_fn, args=next(iterator))
            loss_sum += strategy.reduce(_SUM, out[0], axis=None)
            correct += strategy.reduce(_SUM, out[1], axis=None)
            count += strategy.reduce(_SUM, out[2], axis=None)
        return loss_sum, correct, count

    return run


class Trainer:
    """A model, its optimizer and the compiled train / eval steps, under one strategy."""

    def __init__(
        self,
        cfg: Config,
        splits: Splits,
        runtime: Runtime,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    ) -> None:
        self.cfg = cfg
        self.splits = splits
        self.runtime = runtime
        self.strategy = runtime.strategy
        self.global_batch = cfg.data.batch_size
        with self.strategy.scope():
            self.model = build_model(
                cfg.model, input_shape=splits.input_shape, num_classes=splits.num_classes, scale=splits.scale
            )
            self.optimizer = build_optimizer(cfg.optimizer, learning_rate, precision=runtime.precision)
            self.optimizer.build(self.model.trainable_variables)
        self.train_data = ArrayPipeline(splits.x_train, splits.y_train, self.global_batch)
        self.val_data = (
            ArrayPipeline(splits.x_val, splits.y_val, self.global_batch)
            if splits.x_val is not None and splits.y_val is not None
            else None
        )
        self._train_chunk = self._make_train_chunk()
        self._eval_chunk = self._make_eval_chunk()

    # ------------------------------------------------------------------------------ compiled steps

    def _losses(self, x: tf.Tensor, y: tf.Tensor, training: bool) -> tuple[tf.Tensor, ...]:
        logits = tf.cast(self.model(x, training=training), tf.float32)
        per_example = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), y), tf.float32))
        count = tf.cast(tf.shape(y)[0], tf.float32)
        return per_example, correct, count

    def _make_train_chunk(self) -> Any:
        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def step_fn(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                per_example, correct, count = self._losses(x, y, training=True)
                # Average over the examples of the whole global batch, whatever its size (the last batch
                # of an epoch is smaller): one all-reduce of the count keeps every replica's scale exact.
                ctx = tf.distribute.get_replica_context()
                global_count = ctx.all_reduce(_SUM, count) if ctx is not None else count
                loss = tf.reduce_sum(per_example) / tf.maximum(global_count, 1.0)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled = optimizer.scale_loss(loss) if scales_loss else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return tf.reduce_sum(per_example), correct, count

        step = tf.function(step_fn, jit_compile=True) if self.runtime.jit_compile else step_fn
        return _summed_steps(strategy, step)

    def _make_eval_chunk(self) -> Any:
        def step_fn(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            per_example, correct, count = self._losses(x, y, training=False)
            return tf.reduce_sum(per_example), correct, count

        return _summed_steps(self.strategy, step_fn)

    # ------------------------------------------------------------------------------------- passes

    def train_iterator(self, epoch: int, skip_batches: int = 0) -> Any:
        ds = self.train_data.train(self.cfg.seed, epoch, self.cfg.data.shuffle, skip_batches)
        return iter(self.strategy.experimental_distribute_dataset(ds))

    def run_steps(self, iterator: Any, steps: int) -> tuple[float, float, float]:
        out = self._train_chunk(iterator, tf.constant(steps, dtype=tf.int32))
        return float(out[0]), float(out[1]), float(out[2])

    def evaluate(self, data: ArrayPipeline) -> StepTotals:
        iterator = iter(self.strategy.experimental_distribute_dataset(data.evaluation()))
        out = self._eval_chunk(iterator, tf.constant(data.steps, dtype=tf.int32))
        return StepTotals(float(out[0]), float(out[1]), float(out[2]))

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.model.trainable_variables))


# ---------------------------------------------------------------------------------------------- fit


class Fit:
    """Trains a config into a run directory: epochs, validation, checkpoints, metrics, best model."""

    def __init__(
        self, cfg: Config, splits: Splits, runtime: Runtime, run_dir: Path, learning_rate: float
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        steps_per_epoch = math.ceil(len(splits.y_train) / cfg.data.batch_size)
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * cfg.train.epochs
        self.lr_values = lr_table(cfg.schedule, learning_rate, self.total_steps, steps_per_epoch)
        self.trainer = Trainer(cfg, splits, runtime, TableSchedule(self.lr_values))
        self.monitor = cfg.train.monitor
        if self.monitor.startswith("val_") and self.trainer.val_data is None:
            raise ConfigError(
                f"`train.monitor` is {self.monitor} but there is no validation split; "
                "set data.validation_split above 0 or train.monitor to loss/accuracy."
            )
        es = cfg.train.early_stopping
        if es is not None and es.monitor.startswith("val_") and self.trainer.val_data is None:
            raise ConfigError(
                f"`train.early_stopping.monitor` is {es.monitor} but there is no validation split; "
                "set data.validation_split above 0."
            )
        model = self.trainer.model
        with runtime.strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best_value = tf.Variable(_initial_best(self.monitor), dtype=tf.float64, trainable=False)
            self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
            es_monitor = cfg.train.early_stopping.monitor if cfg.train.early_stopping else "val_loss"
            self.es_best = tf.Variable(_initial_best(es_monitor), dtype=tf.float64, trainable=False)
        # model.variables, not just the model: BatchNorm statistics and seed-generator state are left out of
        # a checkpoint that only follows the optimizer's references (DESIGN.md section 2).
        self.checkpoint = tf.train.Checkpoint(
            model_variables=list(model.variables),
            optimizer=self.trainer.optimizer,
            epoch=self.epoch,
            best_value=self.best_value,
            best_epoch=self.best_epoch,
            bad_epochs=self.bad_epochs,
            es_best=self.es_best,
        )
        ckpt_dir = run_dir / "checkpoints"
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(ckpt_dir), max_to_keep=cfg.train.keep_checkpoints, checkpoint_name="ckpt"
        )
        self.best_checkpoint = tf.train.Checkpoint(model_variables=list(model.variables))
        self.best_manager = tf.train.CheckpointManager(
            self.best_checkpoint, str(ckpt_dir / "best"), max_to_keep=1, checkpoint_name="best"
        )
        self.metrics = MetricsLog(run_dir / METRICS_FILE, METRIC_COLUMNS)
        self.events = tf.summary.create_file_writer(str(run_dir / "events"))

    def _epoch_row(
        self, epoch: int, train: StepTotals, val: StepTotals | None, wall: float, cpu: float
    ) -> dict:
        step = int(self.trainer.optimizer.iterations.numpy())
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "loss": train.loss,
            "accuracy": train.accuracy,
            "learning_rate": float(self.lr_values[min(max(step - 1, 0), len(self.lr_values) - 1)]),
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
        }
        if val is not None:
            row["val_loss"] = val.loss
            row["val_accuracy"] = val.accuracy
        return row

    def run(self) -> FitResult:
        cfg, trainer = self.cfg, self.trainer
        epochs = cfg.train.epochs
        es = cfg.train.early_stopping
        history: list[dict[str, float]] = []
        stopped_early = False
        start_epoch = int(self.epoch.numpy())
        chunk = cfg.train.steps_per_execution
        for epoch_index in range(start_epoch, epochs):
            epoch = epoch_index + 1
            t0, c0 = time.monotonic(), _cpu()
            iterator = trainer.train_iterator(epoch_index)
            totals = StepTotals()
            progress = EpochProgress(epoch, epochs, self.steps_per_epoch, cfg.data.batch_size)
            done = 0
            try:
                while done < self.steps_per_epoch:
                    n = min(chunk, self.steps_per_epoch - done)
                    loss_sum, correct, count = trainer.run_steps(iterator, n)
                    done += n
                    if not math.isfinite(loss_sum):
                        step = int(trainer.optimizer.iterations.numpy())
                        raise NonFiniteLossError(
                            f"the training loss became non-finite ({loss_sum}) in epoch {epoch} at step {step}. "
                            "The last good checkpoint is kept. Lower optimizer.learning_rate (try "
                            "`dltrain lr-find`), or set optimizer.clipnorm."
                        )
                    totals.add(loss_sum, correct, count)
                    progress.update(done, totals.loss)
            finally:
                progress.close()
            val = trainer.evaluate(trainer.val_data) if trainer.val_data is not None else None
            if val is not None and not math.isfinite(val.loss):
                raise NonFiniteLossError(
                    f"the validation loss became non-finite ({val.loss}) after epoch {epoch}. The last good "
                    "checkpoint is kept. Lower optimizer.learning_rate or set optimizer.clipnorm."
                )
            row = self._epoch_row(epoch, totals, val, time.monotonic() - t0, _cpu() - c0)
            history.append(row)
            improved = _better(self.monitor, row[self.monitor], float(self.best_value.numpy()))
            if improved:
                self.best_value.assign(row[self.monitor])
                self.best_epoch.assign(epoch)
                self.best_manager.save(checkpoint_number=epoch)
            stop = False
            if es is not None:
                if _better(es.monitor, row[es.monitor], float(self.es_best.numpy()), es.min_delta):
                    self.es_best.assign(row[es.monitor])
                    self.bad_epochs.assign(0)
                else:
                    self.bad_epochs.assign_add(1)
                stop = int(self.bad_epochs.numpy()) >= es.patience
            self.epoch.assign(epoch)
            self.manager.save(checkpoint_number=epoch)
            self.metrics.append(row)
            self._write_events(row)
            log.info(epoch_line(row, epochs))
            if stop:
                stopped_early = True
                log.info("early stopping: %s did not improve for %d epochs", es.monitor, es.patience)  # type: ignore[union-attr]
                break
        self.events.flush()
        best_epoch = int(self.best_epoch.numpy()) or None
        best_value = float(self.best_value.numpy()) if best_epoch else None
        return FitResult(len(history), best_epoch, best_value, self.monitor, stopped_early, history)

    def _write_events(self, row: dict[str, Any]) -> None:
        with self.events.as_default(step=int(row["epoch"])):
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
                if key in row:
                    tf.summary.scalar(key, row[key])

    def export_best(self) -> Path:
        """Restore the best epoch's weights and write ``model.keras`` atomically."""
        latest = self.best_manager.latest_checkpoint
        if latest is not None:
            self.best_checkpoint.restore(latest).expect_partial()
        return save_model_atomic(with_probabilities(self.trainer.model), self.run_dir / "model.keras")


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def save_model_atomic(model: keras.Model, path: Path) -> Path:
    """``model.save`` to a temp file beside ``path``, fsync, rename: never a torn ``model.keras``."""
    fd, tmp_name = tempfile.mkstemp(prefix=".model.", suffix=".keras", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        model.save(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RunDirError(f"{path}: could not write the model ({exc.strerror or exc}).") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(path.parent)
    return path


def remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
