"""tf.data input that streams image files from disk: read, decode and resize per example, batched.

Same contract as ``dltrain.data.pipeline.arrays.ArrayPipeline``: the order of an epoch is a permutation drawn from
(seed, epoch), ``skip_batches`` skips the first batches of an epoch without reading their files, batches
are (float32 pixels in 0..255, targets). Only the file paths live in memory, so memory stays flat however
large the folder; ``data.cache: true`` decodes every image once into a uint8 array instead (small folders,
where decoding would cost more than the training step).

Pixels are resized with antialiased bilinear interpolation (as Pillow's BILINEAR, which
``dltrain.data.images.read_images`` uses for plots) and rounded to whole grey levels, so a streamed image,
a cached one and a uint8 image handed to ``model.keras`` are the same input.
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

    def train(self, seed: int, epoch: int, shuffle: bool = True, skip_batches: int = 0) -> tf.data.Dataset:
        return self.dataset(epoch_order(self.size, seed, epoch, shuffle), skip_batches)

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
