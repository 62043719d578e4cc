"""tf.data input that streams image files from disk: read, decode and resize per example, batched.

Same contract as ``dltrain.data.pipeline.arrays.ArrayPipeline``: the order of an epoch is a permutation drawn from
(seed, epoch), ``skip_batches`` skips the first batches of an epoch without reading their files, batches
are (float32 pixels in 0..255, targets). Only the file paths live in memory, so memory stays flat however
large the folder; ``data.cache: true`` decodes every image once into a uint8 array instead (small folders,
where decoding would cost more than the training step).

Pixels are resized with antialiased bilinear interpolation (as Pillow's BILINEAR, which
``dltrain.data.images.read_images`` uses for plots) and rounded to whole grey levels, so a streamed image,
a cached one and a uint8 image handed to ``model.keras`` are the same input.

Under several workers (``worker_dataset``), each worker reads and decodes only its replicas' share of every
global batch (``shard_batches``), instead of decoding every file and dropping the other workers' share.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from dltrain.data.pipeline.arrays import ArrayPipeline, distribute_options, epoch_order


def _needs_rgb_decode(raw: tf.Tensor) -> tf.Tensor:
    """GIF, BMP and WebP decoders accept 3 channels, not 1: grayscale is converted after decoding."""
    head = tf.strings.substr(raw, 0, 3)
    webp = tf.logical_and(
        tf.equal(tf.strings.substr(raw, 0, 4), b"RIFF"), tf.equal(tf.strings.substr(raw, 8, 4), b"WEBP")
    )
    return tf.logical_or(
        tf.logical_or(tf.equal(head, b"GIF"), tf.equal(tf.strings.substr(raw, 0, 2), b"BM")), webp
    )


def decode_image(raw: tf.Tensor, height: int, width: int, channels: int) -> tf.Tensor:
    """Encoded bytes -> float32 (height, width, channels) pixels in 0..255, whole numbers."""

    def decode(c: int) -> tf.Tensor:
        return tf.io.decode_image(raw, channels=c, expand_animations=False, dtype=tf.uint8)

    if channels == 1:
        image = tf.cond(
            _needs_rgb_decode(raw),
            lambda: tf.image.rgb_to_grayscale(decode(3)),
            lambda: decode(1),
        )
    else:
        image = decode(channels)
    image.set_shape([None, None, channels])
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))

    def resized() -> tf.Tensor:
        out = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
        return tf.clip_by_value(tf.round(out), 0.0, 255.0)

    pixels = tf.cond(same, lambda: tf.cast(image, tf.float32), resized)
    return tf.ensure_shape(pixels, (height, width, channels))


def shard_batches(
    order: np.ndarray, batch_size: int, shards: int, shard: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shard ``shard`` of ``shards``' part of every global batch of ``order``: (rows, lengths), one row per
    global batch, ``batch_size / shards`` wide, holding its ``lengths[i]`` examples first (then padding).

    A global batch of ``n`` examples is cut into ``shards`` consecutive runs, ``ceil(n / shards)`` long until
    the batch runs out: the shares of a full batch are equal; in the epoch's short last batch the last shards'
    rows may be empty, never missing (every worker steps as often, and the step all-reduces the count).
    """
    size = len(order)
    steps = math.ceil(size / batch_size)
    width = math.ceil(batch_size / shards)
    starts = np.arange(steps, dtype=np.int64) * batch_size
    n = np.minimum(batch_size, size - starts)
    per_shard = -(-n // shards)
    lo = starts + np.minimum(n, per_shard * shard)
    lengths = starts + np.minimum(n, per_shard * (shard + 1)) - lo
    cols = np.arange(width, dtype=np.int64)
    positions = np.minimum(lo[:, None] + cols[None, :], max(size - 1, 0))
    rows = np.where(cols[None, :] < lengths[:, None], np.asarray(order, dtype=np.int64)[positions], 0)
    return rows.reshape(steps, width), lengths


class ImageFilePipeline:
    """Batches of one split read from image files: (float32 pixels, targets)."""

    def __init__(self, x_paths: np.ndarray, y: np.ndarray, batch_size: int, splits: Any) -> None:
        self.size = len(y)
        self.batch_size = batch_size
        height, width, channels = (int(d) for d in splits.input_shape)
        self.image_shape = (height, width, channels)
        with tf.device("/cpu:0"):
            self._paths = tf.constant(np.asarray(x_paths, dtype=object))
            self._y = tf.constant(y)
        cache = bool(splits.state.get("image", {}).get("cache", False))
        # With the cache on, the pixels are decoded once here and served from memory like an array split.
        self.cached: ArrayPipeline | None = (
            ArrayPipeline(self.decode_all(), np.asarray(y), batch_size) if cache else None
        )

    @property
    def steps(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def _load(self, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        height, width, channels = self.image_shape
        raw = tf.io.read_file(tf.gather(self._paths, index))
        return decode_image(raw, height, width, channels), tf.gather(self._y, index)

    def dataset(self, order: np.ndarray, skip_batches: int = 0) -> tf.data.Dataset:
        """Examples ``order``, from batch ``skip_batches`` on, decoded in parallel (in order) and batched."""
        if self.cached is not None:
            return self.cached.dataset(order, skip_batches)
        # Skipped batches are dropped as indices, before any file is read.
        ds = tf.data.Dataset.from_tensor_slices(order[skip_batches * self.batch_size :].astype(np.int64))
        return (
            ds.map(self._load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(self.batch_size)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(distribute_options())
        )

    @property
    def streams(self) -> bool:
        """Whether batches are read from the files (not from the decoded cache): then several workers
        each read only their share (``worker_dataset``)."""
        return self.cached is None

    def worker_dataset(
        self, order: np.ndarray, skip_batches: int, context: tf.distribute.InputContext
    ) -> tf.data.Dataset:
        """This worker's part of ``dataset(order, skip_batches)`` for ``distribute_datasets_from_function``:
        for every global batch, the per-replica batch of each of its replicas in turn, read and decoded here
        alone. A replica with no examples in the epoch's last batch gets an empty (0, h, w, c) batch."""
        replicas = context.num_replicas_in_sync
        local = max(replicas // context.num_input_pipelines, 1)
        first = context.input_pipeline_id * local
        rest = np.asarray(order)[skip_batches * self.batch_size :]
        parts = [shard_batches(rest, self.batch_size, replicas, first + j) for j in range(local)]
        rows = np.stack([p[0] for p in parts], axis=1).reshape(-1, parts[0][0].shape[1])
        lengths = np.stack([p[1] for p in parts], axis=1).reshape(-1)
        width = rows.shape[1]
        valid = np.arange(width)[None, :] < lengths[:, None]
        height, width_px, channels = self.image_shape

        def load(index: tf.Tensor, keep: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            pixels = tf.cond(
                keep,
                lambda: self._load(index)[0],
                lambda: tf.zeros((height, width_px, channels), tf.float32),  # padding: no file read
            )
            return pixels, tf.gather(self._y, index), keep

        def unpad(x: tf.Tensor, y: tf.Tensor, keep: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return tf.boolean_mask(x, keep), tf.boolean_mask(y, keep)

        options = tf.data.Options()  # sharded here: nothing for tf.data's auto-sharding to do
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        ds = tf.data.Dataset.from_tensor_slices((rows.reshape(-1), valid.reshape(-1)))
        return (
            ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(width)  # every row is exactly ``width`` long: one batch a replica's share
            .map(unpad)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options)
        )

    def order(self, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
        return epoch_order(self.size, seed, epoch, shuffle)

    def train(self, seed: int, epoch: int, shuffle: bool = True, skip_batches: int = 0) -> tf.data.Dataset:
        return self.dataset(self.order(seed, epoch, shuffle), skip_batches)

    def evaluation(self) -> tf.data.Dataset:
        return self.dataset(np.arange(self.size))

    def decode_all(self) -> np.ndarray:
        """Every image of the split as uint8 (n, height, width, channels), decoded through the pipeline."""
        out = np.empty((self.size, *self.image_shape), dtype=np.uint8)
        ds = tf.data.Dataset.from_tensor_slices(np.arange(self.size, dtype=np.int64))
        ds = ds.map(self._load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256)
        start = 0
        for pixels, _ in ds.prefetch(2):
            n = int(pixels.shape[0])
            out[start : start + n] = pixels.numpy().astype(np.uint8)
            start += n
        return out
