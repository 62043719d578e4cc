"""A plain Keras 3 ``model.fit`` script: the keras.io mnist_convnet network, as a user would write it.

Differences from keras.io, so that it is the same network as dltrain's ``bench/configs/mnist_convnet.yaml``:
padding 'same' (keras.io: 'valid') and logits with ``from_logits=True`` (keras.io: softmax + categorical
cross-entropy on one-hot labels; the same maths). Inputs are scaled to float32 in NumPy up front, as keras.io
does. Logs each epoch's wall and CPU time to a JSON file (``common.RunLog``).

    python bench/plain_keras.py --data DATA.npz --epochs 3 --out log.json [--test-each-epoch]
        [--network recommended]

``--network recommended``: dltrain's recommended ``configs/fashion_mnist_cnn.yaml`` network written by hand
in float32 (conv3x3 32 without bias - BatchNormalization(momentum 0.9) - relu - maxpool 2, the same with 64,
flatten, dropout 0.3, dense 128 relu, dropout 0.3, dense 10; 421,930 parameters), Keras's stock layers.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import EpochRecord, RunLog, cpu_seconds, load_npz  # noqa: E402


def build_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, dtype="float32"),  # float32 logits, also under mixed precision
        ]
    )


def build_recommended() -> keras.Model:
    def block(filters: int) -> list[keras.layers.Layer]:
        return [
            keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.Activation("relu"),
            keras.layers.MaxPooling2D(2),
        ]

    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            *block(32),
            *block(64),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(10, dtype="float32"),  # float32 logits, also under mixed precision
        ]
    )


class EpochLog(keras.callbacks.Callback):
    """Wall and CPU time of every epoch; optionally the test accuracy after it, timed apart."""

    def __init__(self, log: RunLog, test: tuple[np.ndarray, np.ndarray] | None) -> None:
        super().__init__()
        self.log = log
        self.test = test
        self.t0 = self.c0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.t0, self.c0 = time.monotonic(), cpu_seconds()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        wall, cpu = time.monotonic() - self.t0, cpu_seconds() - self.c0
        logs = logs or {}
        record = EpochRecord(epoch + 1, wall, cpu, float(logs["loss"]), float(logs["accuracy"]))
        if self.test is not None:
            c0 = cpu_seconds()
            scores = self.model.evaluate(*self.test, batch_size=512, verbose=0, return_dict=True)
            record.test_accuracy = float(scores["accuracy"])
            record.test_cpu_seconds = cpu_seconds() - c0
        self.log.epochs.append(record)
        print(f"epoch {record.epoch}: {record}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-each-epoch", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--network", choices=["convnet", "recommended"], default="convnet")
    parser.add_argument("--precision", default="float32", help="a Keras dtype policy, e.g. mixed_float16")
    parser.add_argument("--jit-compile", action="store_true", help="force XLA (default: Keras's auto)")
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.precision)

    keras.utils.set_random_seed(args.seed)
    data = load_npz(args.data)
    x_train = (data["x_train"].astype("float32") / 255.0)[..., None]
    x_test = (data["x_test"].astype("float32") / 255.0)[..., None]
    model = build_recommended() if args.network == "recommended" else build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True if args.jit_compile else "auto",  # Keras's default: XLA on a GPU, not on a CPU
    )
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__}
    log = RunLog("keras", model.count_params(), len(x_train), args.batch_size, versions, cpu_seconds())
    test = (x_test, data["y_test"]) if args.test_each_epoch else None
    model.fit(
        x_train,
        data["y_train"],
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[EpochLog(log, test)],
    )
    log.write(args.out)


if __name__ == "__main__":
    main()
