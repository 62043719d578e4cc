"""tf.data input from the splits: stored dtype kept in memory, cast per batch, seeded order.

The order of an epoch is a permutation drawn from (seed, epoch), so any epoch can be rebuilt exactly when a
run resumes, and the first ``skip`` batches can be skipped without replaying them. Image folders stream from
disk (``dltrain.data.pipeline.images``) under the same contract (``dltrain.data.pipeline.Pipeline``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from dltrain.data.splits import aligned_take, is_aligned


def epoch_order(size: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    if not shuffle:
        return np.arange(size)
    return np.random.default_rng([seed, epoch]).permutation(size)


def distribute_options() -> tf.data.Options:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def targets_for_training(splits: Any, y: np.ndarray) -> np.ndarray:
    """Targets as the loss reads them: class indices (int64), or regression values standardised with the
    training split's statistics (float32)."""
    if splits.task == "regression":
        return ((y - splits.target_mean) / splits.target_std).astype(np.float32)
    return y.astype(np.int64)


def utf8_bytes(texts: np.ndarray) -> np.ndarray:
    """Texts as an object array of UTF-8 bytes, each its own length: a fixed-width copy ("<U"/"S") would pad
    every text to the longest (20,000 short texts and one of 15,000 characters took 1.8 GB instead of 5 MB)."""
    out = np.empty(len(texts), dtype=object)
    out[:] = [t if isinstance(t, bytes) else str(t).encode("utf-8") for t in texts]
    return out


class ArrayPipeline:
    """Batches of one split held in memory: (float32 inputs, or strings for text; targets)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> None:
        self.size = len(y)
        self.batch_size = batch_size
        self._cast = x.dtype.kind not in ("U", "S", "O")
        # The inputs as ``host``: ``x`` itself when it is 64-byte aligned (carved splits are), else one aligned
        # copy the caller keeps instead of ``x`` (``make_pipeline``). TensorFlow reads it in place.
        self.host = x
        with tf.device("/cpu:0"):
            self._x = self._shared(x) if self._cast else tf.constant(utf8_bytes(x))
            self._y = tf.constant(y)

    def _shared(self, x: np.ndarray) -> tf.Tensor:
        """A tensor over ``x``'s memory (DLPack, no copy): ``tf.constant`` held two more copies of the pixels."""
        host = x if is_aligned(x) else aligned_take(x)
        try:
            tensor = tf.experimental.dlpack.from_dlpack(host.__dlpack__())
        except (BufferError, TypeError, ValueError, tf.errors.OpError):  # read-only memory, an unusual dtype
            return tf.constant(x)
        self.host = host
        return tensor

    @property
    def steps(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def order(self, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
        return epoch_order(self.size, seed, epoch, shuffle)

    def dataset(self, order: np.ndarray, skip_batches: int = 0) -> tf.data.Dataset:
        x, y, cast = self._x, self._y, self._cast

        def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            xs = tf.gather(x, idx)
            return (tf.cast(xs, tf.float32) if cast else xs), tf.gather(y, idx)

        ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64)).batch(self.batch_size)
        if skip_batches:
            ds = ds.skip(skip_batches)
        options = distribute_options()
        # tf.data's default graph rewrites serialise the pipeline, the captured inputs with it: a full copy of
        # the pixels for the run (bench/README.md). Nothing here gains from them (map is parallel already).
        options.experimental_optimization.apply_default_optimizations = False
        return (
            ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options)
        )

    def train(self, seed: int, epoch: int, shuffle: bool = True, skip_batches: int = 0) -> tf.data.Dataset:
        return self.dataset(self.order(seed, epoch, shuffle), skip_batches)

    def evaluation(self) -> tf.data.Dataset:
        return self.dataset(np.arange(self.size))
