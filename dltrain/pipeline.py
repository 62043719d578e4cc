"""tf.data input from in-memory splits: stored dtype kept in memory, cast per batch, seeded order.

The order of an epoch is a permutation drawn from (seed, epoch), so any epoch can be rebuilt exactly when a
run resumes, and the first ``skip`` batches can be skipped without replaying them.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


class ArrayPipeline:
    """Batches of one split, as (float32 inputs, int64 labels)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        self.size = len(y)
        self.batch_size = batch_size
        # One copy into TF memory for the whole run; every epoch gathers batches from it.
        with tf.device("/cpu:0"):
            self._x = tf.constant(x)
            self._y = tf.constant(y.astype(np.int64))

    @property
    def steps(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def order(self, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
        if not shuffle:
            return np.arange(self.size)
        return np.random.default_rng([seed, epoch]).permutation(self.size)

    def dataset(self, order: np.ndarray, skip_batches: int = 0) -> tf.data.Dataset:
        x, y = self._x, self._y

        def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return tf.cast(tf.gather(x, idx), tf.float32), tf.gather(y, idx)

        ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64)).batch(self.batch_size)
        if skip_batches:
            ds = ds.skip(skip_batches)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return (
            ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options)
        )

    def train(self, seed: int, epoch: int, shuffle: bool = True, skip_batches: int = 0) -> tf.data.Dataset:
        return self.dataset(self.order(seed, epoch, shuffle), skip_batches)

    def evaluation(self) -> tf.data.Dataset:
        return self.dataset(np.arange(self.size))
