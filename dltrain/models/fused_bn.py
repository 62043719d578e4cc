"""Batch normalization for conv blocks on TensorFlow's fused kernel (``FusedBatchNormV3``, oneDNN on a CPU).

Keras 3's ``BatchNormalization`` on the TensorFlow backend is built from unfused ops (``moments``, then
``batch_normalization``); forward + backward on a 128x28x28x32 tensor cost 26 CPU-ms against 8.6 with the
fused op (bench/README.md). ``FusedBatchNormalization`` is that layer with the fused kernel in training, and
Keras's own code everywhere else (inference, masks, renorm, other ranks or axes), with the same weights
(gamma, beta, moving mean, moving variance) under the same names, so checkpoints of either restore into the
other and ``models.portable`` saves it in ``model.keras`` as a stock ``BatchNormalization``.

The moving variance: the fused op returns the batch variance with Bessel's correction (n / (n - 1)); Keras 3
updates its moving variance with the biased one, the variance it normalises with. We keep Keras's: the
exported stock layer then normalises at inference by the same estimate it was trained to expect, runs are
comparable with and without the fused kernel, and a dense head's (unfused) BatchNorm follows the same rule.
The correction is undone per channel (n = batch x height x width), one multiply of a few floats.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

# The name under which model configs refer to the layer while training (model.keras never holds it).
REGISTERED_NAME = "dltrain>FusedBatchNormalization"


@keras.saving.register_keras_serializable(package="dltrain")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step runs ``FusedBatchNormV3`` (NHWC, last axis)."""

    def _fusable(self, inputs: Any, mask: Any) -> bool:
        return (
            mask is None
            and not getattr(self, "renorm", False)  # Keras < 3.13 has no renorm
            and self.scale
            and self.center
            and len(inputs.shape) == 4
            and self.axis in (3, -1, [3], [-1])
        )

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        if not (training and self.trainable) or not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        # float32 or (mixed precision) float16 / bfloat16 inputs; statistics and parameters stay float32.
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=tf.cast(self.gamma, tf.float32),
            offset=tf.cast(self.beta, tf.float32),
            mean=tf.constant([], tf.float32),
            variance=tf.constant([], tf.float32),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        shape = tf.shape(inputs)
        n = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
        biased = variance * ((n - 1.0) / tf.maximum(n, 1.0))  # undo Bessel's correction: Keras's estimate
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + biased * (1.0 - momentum))
        return tf.cast(outputs, self.compute_dtype)
