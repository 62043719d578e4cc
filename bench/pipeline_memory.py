"""Experiment behind bench/README.md's "one copy of the pixels" finding (issue 15).

240,000 28x28 uint8 images (188 MB) in a 64-byte-aligned numpy array, shared with TensorFlow through DLPack,
then gathered by a tf.data pipeline; prints RSS and peak RSS (MB) after each stage. MODE: plain (map only),
default (parallel map + prefetch, tf.data's default rewrites), noopt (the same with
apply_default_optimizations off: what dltrain's ArrayPipeline does), variable, fromtensors.

    python bench/pipeline_memory.py MODE
"""

import resource
import sys

import numpy as np
import tensorflow as tf


def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


tf.constant(1.0)
raw = np.empty(240000 * 784 + 64, np.uint8)
off = (-raw.ctypes.data) % 64
x = raw[off : off + 240000 * 784].reshape(240000, 28, 28)
x[:] = 7
print("numpy", rss(), peak(), x.ctypes.data % 64)
t = tf.experimental.dlpack.from_dlpack(x.__dlpack__())
print("tensor", rss(), peak())
y = tf.constant(np.zeros(240000, np.int64))


def gather(idx):
    return tf.cast(tf.gather(t, idx), tf.float32), tf.gather(y, idx)


mode = sys.argv[1]
ds = tf.data.Dataset.from_tensor_slices(np.arange(240000)).batch(128)
if mode == "plain":
    ds = ds.map(gather)
elif mode == "noopt":
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    o = tf.data.Options()
    o.experimental_optimization.apply_default_optimizations = False
    ds = ds.with_options(o)
elif mode == "default":
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
elif mode == "variable":
    v = tf.Variable(t, trainable=False)
    print("var", rss(), peak())
    del globals()["t"]
    ds = ds.map(
        lambda i: (tf.cast(tf.gather(v, i), tf.float32), tf.gather(y, i)), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)
elif mode == "fromtensors":
    # gather from a dataset element instead of a capture
    ds = (
        tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensors((t, y)).repeat()))
        .map(
            lambda i, xy: (tf.cast(tf.gather(xy[0], i), tf.float32), tf.gather(xy[1], i)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )
print("dataset made", rss(), peak())
it = iter(ds)
next(it)
print("first batch", rss(), peak())
for i, _ in enumerate(it):
    if i == 5:
        break
print("iterated", rss(), peak())
