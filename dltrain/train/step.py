"""The train step: a model, its optimizer groups and the compiled train / eval chunks, under one strategy.

``strategy.run`` of a step function over ``experimental_distribute_dataset``, several steps per
``tf.function`` call (a *chunk*), losses averaged over the *global* batch. What the loop around it does with
the numbers is ``dltrain.train.loop``; see docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dltrain.config import Config
from dltrain.data import Splits
from dltrain.data.pipeline import ImageFilePipeline, Pipeline, make_pipeline
from dltrain.models import build_model
from dltrain.models.transfer import backbone_layers, leaf_layers
from dltrain.train.optimizers import TableSchedule, build_optimizer
from dltrain.train.runtime import Runtime

_SUM = tf.distribute.ReduceOp.SUM


@dataclass
class StepTotals:
    """Sums over the examples of a pass; the mean loss and the mean metric (accuracy, or a regression's MAE
    in original units) are taken from them."""

    loss_sum: float = 0.0
    metric_sum: float = 0.0
    count: float = 0.0

    def add(self, loss_sum: float, metric_sum: float, count: float) -> None:
        self.loss_sum += loss_sum
        self.metric_sum += metric_sum
        self.count += count

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def metric(self) -> float:
        return self.metric_sum / self.count if self.count else float("nan")


@dataclass
class OptimizerGroup:
    """One optimizer and the trainable variables it updates. Keras 3 has no multi-optimizer: a discriminative
    learning rate (transfer learning) is several groups, each with its own optimizer state and schedule."""

    name: str
    optimizer: keras.optimizers.Optimizer
    variables: list[Any] = field(default_factory=list)


def _summed_steps(strategy: tf.distribute.Strategy, step_fn: Any) -> Any:
    """A tf.function that runs ``step_fn`` on ``steps`` batches of a distributed iterator in one call.

    Several steps per call cut the Python overhead per step; the (loss_sum, metric_sum, count) of every step
    are summed over replicas and steps, so the caller reads exact totals. The sums over steps are float64:
    adding a few hundred float32 step totals is then exact, so an epoch's mean loss is the same bits however
    the epoch was cut into calls (a resumed run matches an uninterrupted one).
    """

    def total(value: tf.Tensor) -> tf.Tensor:
        return tf.cast(strategy.reduce(_SUM, value, axis=None), tf.float64)

    @tf.function
    def run(iterator: Any, steps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        loss_sum = tf.constant(0.0, tf.float64)
        metric_sum = tf.constant(0.0, tf.float64)
        count = tf.constant(0.0, tf.float64)
        for _ in tf.range(steps):
            out = strategy.run(step_fn, args=next(iterator))
            loss_sum += total(out[0])
            metric_sum += total(out[1])
            count += total(out[2])
        return loss_sum, metric_sum, count

    return run


def prepare_stem(splits: Splits) -> dict[str, Any]:
    """The model's input transforms; text needs its vocabulary adapted on the training texts first."""
    stem = dict(splits.stem)
    if "text" in stem and "vocabulary" not in stem["text"]:
        from dltrain.models.text import adapt_vocabulary

        stem["text"] = {**stem["text"], "vocabulary": adapt_vocabulary(splits.x_train, stem["text"])}
    return stem


def fine_tunes(cfg: Config) -> bool:
    """Whether the fit trains head and backbone as separate groups (frozen first, or at different rates)."""
    return cfg.train.freeze_epochs > 0 or cfg.optimizer.backbone_lr_factor != 1.0


class TrainStep:
    """A model, its optimizer group(s), the input pipelines and the compiled train / eval chunks."""

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
                num_outputs=splits.num_outputs,
                scale=splits.scale,
                stem=self.stem,
            )
            self.backbone = backbone_layers(self.model) if fine_tunes(cfg) else []
            optimizer = build_optimizer(cfg.optimizer, learning_rate, precision=runtime.precision)
            if self.backbone:
                self.groups = self._transfer_groups(optimizer, learning_rate)
                self.all_groups = list(self.groups)
            else:
                optimizer.build(self.model.trainable_variables)
                self.groups = [OptimizerGroup("all", optimizer, list(self.model.trainable_variables))]
        self.train_data = make_pipeline(splits, "train", self.global_batch)
        self.val_data = (
            make_pipeline(splits, "validation", self.global_batch) if splits.x_val is not None else None
        )
        self._train_chunk = self._make_train_chunk()
        self._eval_chunk = self._make_eval_chunk()

    def _transfer_groups(self, head: keras.optimizers.Optimizer, learning_rate: Any) -> list[OptimizerGroup]:
        """Head and backbone, each with its own optimizer (Keras 3 has no multi-optimizer, and scaling
        gradients does nothing to Adam's step): the backbone's rate is ``optimizer.backbone_lr_factor`` times
        the head's (its own schedule table), and its state (moments, step count) starts fresh, so Adam's bias
        correction counts the backbone's own steps from its first one after unfreezing."""
        factor = self.cfg.optimizer.backbone_lr_factor
        if isinstance(learning_rate, TableSchedule):
            self.backbone_lr: Any = TableSchedule([1.0])  # its table is set with the head's (train.fit)
        else:
            self.backbone_lr = float(learning_rate) * factor
        backbone_opt = build_optimizer(self.cfg.optimizer, self.backbone_lr, precision=self.runtime.precision)
        mine = {id(v) for layer in self.backbone for v in layer.trainable_variables}
        self.backbone_variables = [v for v in self.model.trainable_variables if id(v) in mine]
        self.head_variables = [v for v in self.model.trainable_variables if id(v) not in mine]
        self.backbone_bn_variables = [
            v
            for layer in leaf_layers(self.backbone)
            if isinstance(layer, keras.layers.BatchNormalization)
            for v in layer.trainable_variables
        ]
        # The head's optimizer also knows the backbone's batch-norm scale/offset: with
        # train.frozen_batch_norm: train they are trained with the head while the backbone is frozen.
        head.build(self.head_variables + self.backbone_bn_variables)
        backbone_opt.build(self.backbone_variables)
        return [
            OptimizerGroup("head", head, list(self.head_variables)),
            OptimizerGroup("backbone", backbone_opt, list(self.backbone_variables)),
        ]

    def set_learning_rate(self, learning_rate: float) -> None:
        """A fixed rate for every group (lr-find's sweep): the backbone's is scaled by its factor."""
        for group in self.groups:
            factor = self.cfg.optimizer.backbone_lr_factor if group.name == "backbone" else 1.0
            group.optimizer.learning_rate = float(learning_rate) * factor

    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        """The first group's optimizer (the only one unless a phase splits the variables into groups)."""
        return self.groups[0].optimizer

    def set_groups(self, groups: Sequence[OptimizerGroup]) -> None:
        """Train with these groups from the next chunk on: a change of trainable variables re-traces the step."""
        self.groups = list(groups)
        self._train_chunk = self._make_train_chunk()

    @property
    def global_step(self) -> int:
        """Optimizer steps taken (the first group's iterations: it steps on every batch)."""
        return int(self.optimizer.iterations.numpy())

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
        model, strategy, groups = self.model, self.strategy, list(self.groups)
        trained = [v for group in groups for v in group.variables]
        # Loss scaling (float16) wraps the optimizer: the loss is scaled by the first group's scale; with several
        # groups each other group's gradients are brought to its own scale, which its optimizer divides out.
        first = groups[0].optimizer
        scaler = first if isinstance(first, keras.optimizers.LossScaleOptimizer) else None

        def step_fn(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                per_example, metric, count = self._losses(x, y, training=True)
                # Average over the examples of the whole global batch, whatever its size (the last batch
                # of an epoch is smaller): one all-reduce of the count keeps every replica's scale exact.
                ctx = tf.distribute.get_replica_context()
                global_count = ctx.all_reduce(_SUM, count) if ctx is not None else count
                loss = tf.reduce_sum(per_example) / tf.maximum(global_count, 1.0)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                if scaler is not None:  # float16: scaled inside the tape, or the gradients are None
                    loss = scaler.scale_loss(loss)
            if len(groups) == 1:
                grads = tape.gradient(loss, trained)
                groups[0].optimizer.apply_gradients(zip(grads, trained, strict=True))
            else:
                grads = tape.gradient(loss, trained)
                start = 0
                for group in groups:
                    n = len(group.variables)
                    part = grads[start : start + n]
                    if scaler is not None and group.optimizer is not first:
                        ratio = group.optimizer.dynamic_scale / first.dynamic_scale
                        part = [g * tf.cast(ratio, g.dtype) for g in part]
                    group.optimizer.apply_gradients(zip(part, group.variables, strict=True))
                    start += n
            return tf.reduce_sum(per_example), metric, count

        step = tf.function(step_fn, jit_compile=True) if self.runtime.jit_compile else step_fn
        return _summed_steps(strategy, step)

    def _make_eval_chunk(self) -> Any:
        def step_fn(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            per_example, metric, count = self._losses(x, y, training=False)
            return tf.reduce_sum(per_example), metric, count

        return _summed_steps(self.strategy, step_fn)

    # ------------------------------------------------------------------------------------- passes

    def _per_worker(self, data: Pipeline) -> ImageFilePipeline | None:
        """``data`` where each worker reads only its own share of it (image files streamed under several
        workers); else None: every worker runs the whole pipeline and tf.data's DATA policy keeps its share."""
        if self.runtime.workers > 1 and isinstance(data, ImageFilePipeline) and data.streams:
            return data
        return None

    def _sharded(self, data: ImageFilePipeline, order: np.ndarray, skip_batches: int) -> Any:
        return iter(
            self.strategy.distribute_datasets_from_function(
                lambda context: data.worker_dataset(order, skip_batches, context)
            )
        )

    def train_iterator(self, epoch: int, skip_batches: int = 0) -> Any:
        files = self._per_worker(self.train_data)
        if files is not None:
            return self._sharded(
                files, files.order(self.cfg.seed, epoch, self.cfg.data.shuffle), skip_batches
            )
        ds = self.train_data.train(self.cfg.seed, epoch, self.cfg.data.shuffle, skip_batches)
        return iter(self.strategy.experimental_distribute_dataset(ds))

    def run_steps(self, iterator: Any, steps: int) -> tuple[float, float, float]:
        out = self._train_chunk(iterator, tf.constant(steps, dtype=tf.int32))
        return float(out[0]), float(out[1]), float(out[2])

    def evaluate(self, data: Pipeline) -> StepTotals:
        files = self._per_worker(data)
        if files is not None:
            iterator = self._sharded(files, np.arange(files.size), 0)
        else:
            iterator = iter(self.strategy.experimental_distribute_dataset(data.evaluation()))
        out = self._eval_chunk(iterator, tf.constant(data.steps, dtype=tf.int32))
        return StepTotals(float(out[0]), float(out[1]), float(out[2]))

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.model.trainable_variables))

    def copy_weights_from(self, other: keras.Model) -> None:
        """Start from another model's variables (same architecture): lr-find sweeps from fit's initial weights."""
        for mine, theirs in zip(self.model.variables, other.variables, strict=True):
            mine.assign(theirs)
