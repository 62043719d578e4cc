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
from dltrain.data.pipeline import Pipeline, make_pipeline
from dltrain.errors import ConfigError, Interrupted, NonFiniteLossError, RunDirError
from dltrain.fsutil import fsync_dir
from dltrain.models import build_model, with_outputs
from dltrain.rundir import METRICS_FILE, MetricsLog, read_metrics
from dltrain.testing import faults
from dltrain.train.checkpoints import TrainingState
from dltrain.train.optimizers import TableSchedule, build_optimizer, lr_table
from dltrain.train.runtime import Runtime
from dltrain.train.signals import StopRequest

log = logging.getLogger(__name__)


def metric_columns(metric: str = "accuracy") -> list[str]:
    """metrics.csv columns; ``metric`` is accuracy, or mae (original units) for a regression."""
    return [
        "epoch", "step", "loss", metric, "val_loss", f"val_{metric}", "learning_rate", "seconds", "cpu_seconds",
    ]  # fmt: skip


METRIC_COLUMNS = metric_columns()
_SUM = tf.distribute.ReduceOp.SUM


@dataclass
class StepTotals:
    """Sums over the examples of a pass: mean loss and accuracy (or MAE) are taken from them."""

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
    are summed over replicas and steps, so the caller reads exact totals. The sums over steps are float64:
    adding a few hundred float32 step totals is then exact, so an epoch's mean loss is the same bits however
    the epoch was cut into calls (a resumed run matches an uninterrupted one).
    """

    def total(value: tf.Tensor) -> tf.Tensor:
        return tf.cast(strategy.reduce(_SUM, value, axis=None), tf.float64)

    @tf.function
    def run(iterator: Any, steps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        loss_sum = tf.constant(0.0, tf.float64)
        correct = tf.constant(0.0, tf.float64)
        count = tf.constant(0.0, tf.float64)
        for _ in tf.range(steps):
            out = strategy.run(step_fn, args=next(iterator))
            loss_sum += total(out[0])
            correct += total(out[1])
            count += total(out[2])
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
        self.stem = prepare_stem(splits)
        self._target_std = tf.constant(
            splits.target_std if splits.target_std is not None else np.ones(1), tf.float32
        )
        with self.strategy.scope():
            self.model = build_model(
                cfg.model,
                input_shape=splits.input_shape,
                num_classes=splits.num_outputs,
                scale=splits.scale,
                stem=self.stem,
            )
            self.optimizer = build_optimizer(cfg.optimizer, learning_rate, precision=runtime.precision)
            self.optimizer.build(self.model.trainable_variables)
        self.train_data = make_pipeline(splits, "train", self.global_batch)
        self.val_data = (
            make_pipeline(splits, "validation", self.global_batch) if splits.x_val is not None else None
        )
        self._train_chunk = self._make_train_chunk()
        self._eval_chunk = self._make_eval_chunk()

    # ------------------------------------------------------------------------------ compiled steps

    def _losses(self, x: tf.Tensor, y: tf.Tensor, training: bool) -> tuple[tf.Tensor, ...]:
        """Per-example loss, the batch's metric sum (correct predictions, or absolute error in original
        units) and its example count."""
        out = tf.cast(self.model(x, training=training), tf.float32)
        count = tf.cast(tf.shape(y)[0], tf.float32)
        task = self.splits.task
        if task == "regression":
            diff = out - y
            per_example = tf.reduce_mean(tf.square(diff), axis=-1)
            # MAE in the targets' units: the standardised error times each target's spread.
            metric = tf.reduce_sum(tf.reduce_mean(tf.abs(diff) * self._target_std, axis=-1))
            return per_example, metric, count
        if task == "binary":
            logit = out[:, 0]
            labels = tf.cast(y, tf.float32)
            per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logit)
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.cast(logit > 0, tf.int64), y), tf.float32))
            return per_example, correct, count
        per_example = keras.losses.sparse_categorical_crossentropy(y, out, from_logits=True)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, axis=-1), y), tf.float32))
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

    def evaluate(self, data: Pipeline) -> StepTotals:
        iterator = iter(self.strategy.experimental_distribute_dataset(data.evaluation()))
        out = self._eval_chunk(iterator, tf.constant(data.steps, dtype=tf.int32))
        return StepTotals(float(out[0]), float(out[1]), float(out[2]))

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.model.trainable_variables))


# ---------------------------------------------------------------------------------------------- fit


class Fit:
    """Trains a config into a run directory: epochs, validation, checkpoints, metrics, best model.

    Stops cleanly between steps when asked (Ctrl-C, SIGTERM): the state at that step is checkpointed, so
    ``--resume`` continues at the next batch. A SIGKILL resumes from the last checkpoint: the end of an
    epoch, or every ``train.checkpoint_every_steps`` steps.
    """

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
        self.metric = splits.metric
        es = cfg.train.early_stopping
        for key, monitor in (
            ("train.monitor", self.monitor),
            ("train.early_stopping.monitor", es and es.monitor),
        ):
            if monitor and monitor.removeprefix("val_") not in ("loss", self.metric):
                raise ConfigError(
                    f"`{key}` is {monitor} but a {splits.task} reports loss and {self.metric}; "
                    f"set it to val_loss or val_{self.metric}."
                )
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
        self.state = TrainingState(
            run_dir,
            self.trainer.model,
            self.trainer.optimizer,
            runtime.strategy,
            keep=cfg.train.keep_checkpoints,
            best_initial=_initial_best(self.monitor),
            es_initial=_initial_best(es.monitor if es else "val_loss"),
        )
        self.metrics = MetricsLog(run_dir / METRICS_FILE, metric_columns(self.metric))
        self.events = tf.summary.create_file_writer(str(run_dir / "events"))
        self.faults = faults.active()

    def restore(self, source: Path | None = None) -> dict[str, Any] | None:
        """Continue from the newest usable checkpoint; metrics rows past it are dropped (they get redone).

        ``source``: the chief's checkpoint folder, for a non-chief worker that writes to its own scratch.
        """
        restored = self.state.restore_latest(source)
        if restored is None:
            if read_metrics(self.run_dir / METRICS_FILE):
                raise RunDirError(
                    f"{self.run_dir}: metrics.csv has finished epochs but there is no checkpoint to resume from."
                )
            return None
        values = self.state.values()
        self.metrics.keep_epochs_up_to(values["epoch"])
        return {"checkpoint": Path(restored).name, **values, "global_step": self._global_step()}

    def _global_step(self) -> int:
        return int(self.trainer.optimizer.iterations.numpy())

    def _epoch_row(
        self, epoch: int, train: StepTotals, val: StepTotals | None, wall: float, cpu: float
    ) -> dict:
        step = self._global_step()
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "loss": train.loss,
            self.metric: train.accuracy,
            "learning_rate": float(self.lr_values[min(max(step - 1, 0), len(self.lr_values) - 1)]),
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
        }
        if val is not None:
            row["val_loss"] = val.loss
            row[f"val_{self.metric}"] = val.accuracy
        return row

    def _chunk_size(self, done: int) -> int:
        """Steps in the next call: never past the epoch's end nor a step-checkpoint boundary."""
        n = min(self.cfg.train.steps_per_execution, self.steps_per_epoch - done)
        every = self.cfg.train.checkpoint_every_steps
        if every:
            step = self._global_step()
            n = min(n, every - step % every)
        if self.faults and self.trainer.runtime.workers == 1:
            # A test fault fires at an exact step: one step a call. Not across workers: every worker must run
            # the same calls (collectives are matched call by call), so there it fires after the chunk.
            n = 1
        return max(n, 1)

    def _save_mid_epoch(self, done: int, totals: StepTotals) -> None:
        self.state.step_in_epoch.assign(done)
        self.state.partial.assign([totals.loss_sum, totals.correct, totals.count])
        self.state.save(self._global_step(), self.run_dir)

    def _fire_fault(self, epoch: int, done: int, steps_run: int) -> None:
        fault = faults.due(
            self.faults, epoch=epoch, step_in_epoch=done, global_step=self._global_step(), steps_run=steps_run
        )
        if fault is None:
            return
        if fault.action == "nan":
            for var in self.trainer.model.trainable_variables:
                var.assign(tf.fill(var.shape, float("nan")))
        else:
            faults.fire_signal(fault)

    def run(self, stop: StopRequest | None = None) -> FitResult:
        cfg, trainer, state = self.cfg, self.trainer, self.state
        epochs = cfg.train.epochs
        es = cfg.train.early_stopping
        history: list[dict[str, float]] = read_metrics(self.run_dir / METRICS_FILE)
        stopped_early = False
        start_epoch = int(state.epoch.numpy())
        skip = int(state.step_in_epoch.numpy())
        every = cfg.train.checkpoint_every_steps
        for epoch_index in range(start_epoch, epochs):
            epoch = epoch_index + 1
            t0, c0 = time.monotonic(), _cpu()
            iterator = trainer.train_iterator(epoch_index, skip_batches=skip)
            totals = StepTotals(*(float(v) for v in state.partial.numpy())) if skip else StepTotals()
            done, skip = skip, 0
            progress = EpochProgress(epoch, epochs, self.steps_per_epoch, cfg.data.batch_size)
            try:
                while done < self.steps_per_epoch:
                    n = self._chunk_size(done)
                    loss_sum, correct, count = trainer.run_steps(iterator, n)
                    done += n
                    self._account(loss_sum, correct, count, totals, epoch)
                    progress.update(done, totals.loss)
                    self._fire_fault(epoch, done, n)
                    if done < self.steps_per_epoch:
                        if stop is not None and stop.requested:
                            self._save_mid_epoch(done, totals)
                            raise self._interrupted(stop, epoch, done)
                        if every and self._global_step() % every == 0:
                            self._save_mid_epoch(done, totals)
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
            # The row goes first: a kill before the checkpoint leaves a row that resume drops and redoes.
            self.metrics.append(row)
            if _better(self.monitor, row[self.monitor], float(state.best_value.numpy())):
                state.best_value.assign(row[self.monitor])
                state.best_epoch.assign(epoch)
                state.save_best(epoch, self.run_dir)
            stop_now = False
            if es is not None:
                if _better(es.monitor, row[es.monitor], float(state.es_best.numpy()), es.min_delta):
                    state.es_best.assign(row[es.monitor])
                    state.bad_epochs.assign(0)
                else:
                    state.bad_epochs.assign_add(1)
                stop_now = int(state.bad_epochs.numpy()) >= es.patience
            state.epoch.assign(epoch)
            state.reset_partial()
            state.save(self._global_step(), self.run_dir)
            self._write_events(row)
            log.info(epoch_line(row, epochs))
            if stop is not None and stop.requested and epoch < epochs:
                raise self._interrupted(stop, epoch + 1, 0)
            if stop_now:
                stopped_early = True
                log.info("early stopping: %s did not improve for %d epochs", es.monitor, es.patience)  # type: ignore[union-attr]
                break
        self.events.flush()
        best_epoch = int(state.best_epoch.numpy()) or None
        best_value = float(state.best_value.numpy()) if best_epoch else None
        return FitResult(len(history), best_epoch, best_value, self.monitor, stopped_early, history)

    def _account(self, loss_sum: float, correct: float, count: float, totals: StepTotals, epoch: int) -> None:
        """Add a finished chunk to the epoch's totals; a non-finite loss stops the run before any save."""
        if not math.isfinite(loss_sum):
            raise NonFiniteLossError(
                f"the training loss became non-finite ({loss_sum}) in epoch {epoch} at step {self._global_step()}. "
                "The last good checkpoint is kept. Lower optimizer.learning_rate (try `dltrain lr-find`), "
                "or set optimizer.clipnorm."
            )
        totals.add(loss_sum, correct, count)

    def _interrupted(self, stop: StopRequest, epoch: int, step: int) -> Interrupted:
        where = f"epoch {epoch}, step {step}" if step else f"the start of epoch {epoch}"
        return Interrupted(
            f"stopped by {stop.name}; checkpoint saved at {where}. Resume with: dltrain fit --resume {self.run_dir}",
            stop.exit_code,
        )

    def _write_events(self, row: dict[str, Any]) -> None:
        with self.events.as_default(step=int(row["epoch"])):
            for key in ("loss", self.metric, "val_loss", f"val_{self.metric}", "learning_rate"):
                if key in row:
                    tf.summary.scalar(key, row[key])

    def export_best(self) -> Path:
        """Restore the best epoch's weights and write ``model.keras`` atomically."""
        self.state.restore_best()
        splits = self.trainer.splits
        model = with_outputs(self.trainer.model, splits.task, splits.target_mean, splits.target_std)
        return save_model_atomic(model, self.run_dir / "model.keras")


def prepare_stem(splits: Splits) -> dict[str, Any]:
    """The model's input transforms; text needs its vocabulary adapted on the training texts first."""
    stem = dict(splits.stem)
    if "text" in stem and "vocabulary" not in stem["text"]:
        from dltrain.models.text import adapt_vocabulary

        stem["text"] = {**stem["text"], "vocabulary": adapt_vocabulary(splits.x_train, stem["text"])}
    return stem


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
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp made it 0600
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
