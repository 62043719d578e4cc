"""tf.data input from the splits (TensorFlow zone). One contract for every input kind: an epoch's order is a
permutation drawn from (seed, epoch), ``skip_batches`` skips batches without reading them, batches are
(inputs, targets). ``arrays`` serves in-memory splits (numbers and texts); ``images`` streams image files.
"""

from __future__ import annotations

from typing import Any, Protocol

import tensorflow as tf

from dltrain.data.pipeline.arrays import ArrayPipeline, distribute_options, epoch_order, targets_for_training
from dltrain.data.pipeline.images import ImageFilePipeline


class Pipeline(Protocol):
    size: int
    batch_size: int

    @property
    def steps(self) -> int: ...

    def train(
        self, seed: int, epoch: int, shuffle: bool = True, skip_batches: int = 0
    ) -> tf.data.Dataset: ...

    def evaluation(self) -> tf.data.Dataset: ...


def make_pipeline(splits: Any, split: str, batch_size: int) -> Pipeline:
    """The input pipeline of ``split``: in memory, or streamed from image files."""
    x, y = splits.get(split)
    y = targets_for_training(splits, y)
    if splits.input_kind == "image_files":
        return ImageFilePipeline(x, y, batch_size, splits)
    pipeline = ArrayPipeline(x, y, batch_size)
    if pipeline.host is not x:  # TensorFlow shares an aligned copy: hold that one instead, once
        splits.adopt(split, pipeline.host)
    return pipeline


__all__ = [
    "ArrayPipeline",
    "ImageFilePipeline",
    "Pipeline",
    "distribute_options",
    "epoch_order",
    "make_pipeline",
]
