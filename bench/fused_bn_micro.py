"""Micro-benchmark behind bench/README.md's fused batch norm finding (issue 15).

Forward + backward of one batch norm layer on a 128x28x28x32 tensor inside a ``tf.function``, 30 steps:
Keras's BatchNormalization against dltrain's FusedBatchNormalization; prints CPU-ms per step and how far the
two layers' outputs and moving statistics are apart after one training call.

    PYTHONPATH=. python bench/fused_bn_micro.py
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from dltrain.models.fused_bn import FusedBatchNormalization


def main() -> None:
    x = tf.constant(np.random.default_rng(0).normal(2, 3, (16, 7, 7, 5)).astype("float32"))
    stock, fused = keras.layers.BatchNormalization(momentum=0.9), FusedBatchNormalization(momentum=0.9)
    outs = [layer(x, training=True) for layer in (stock, fused)]
    print("max |output difference|", float(tf.reduce_max(tf.abs(outs[0] - outs[1]))))
    print(
        "max |moving variance difference|",
        float(np.max(np.abs(stock.moving_variance - fused.moving_variance))),
    )
    big = tf.random.normal((128, 28, 28, 32))
    for cls in (keras.layers.BatchNormalization, FusedBatchNormalization):
        layer = cls(momentum=0.9)
        layer.build(big.shape)

        @tf.function
        def step(layer: keras.layers.Layer = layer) -> list[tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(big)
                y = layer(big, training=True)
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, [big, layer.gamma])

        step()
        c0 = time.process_time()
        for _ in range(30):
            step()
        print(f"{cls.__name__}: {(time.process_time() - c0) / 30 * 1000:.1f} CPU-ms per forward + backward")


if __name__ == "__main__":
    main()
