"""Model builders: shapes, options and the exported probabilities (in-process Keras, tiny inputs)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dltrain.config import CnnModel, DenseModel, RnnModel
from dltrain.errors import ConfigError
from dltrain.models import build_model, with_probabilities


def _logits(model: keras.Model, shape: tuple[int, ...]) -> np.ndarray:
    x = np.random.default_rng(0).integers(0, 16, size=(4, *shape)).astype("float32")
    return np.asarray(model(x, training=False))


def test_dense_without_hidden_layers_is_softmax_regression() -> None:
    model = build_model(DenseModel(kind="dense", units=[]), input_shape=(8, 8), num_outputs=10, scale=16.0)
    assert model.count_params() == 64 * 10 + 10
    assert _logits(model, (8, 8)).shape == (4, 10)


def test_dense_hidden_layers_batch_norm_and_dropout() -> None:
    cfg = DenseModel(kind="dense", units=[32, 16], batch_norm=True, dropout=0.2, activation="gelu")
    model = build_model(cfg, input_shape=(8, 8), num_outputs=3, scale=16.0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert (
        kinds.count("Dense") == 3 and kinds.count("BatchNormalization") == 2 and kinds.count("Dropout") == 2
    )
    assert "Rescaling" in kinds  # model.keras takes raw stored inputs
    assert _logits(model, (8, 8)).shape == (4, 3)


def test_cnn_stops_pooling_when_the_image_runs_out() -> None:
    cfg = CnnModel(kind="cnn", filters=[8, 8, 8, 8, 8])  # 8x8 -> 4 -> 2 -> 1, then no more pooling
    model = build_model(cfg, input_shape=(8, 8), num_outputs=10, scale=16.0)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 3
    assert _logits(model, (8, 8)).shape == (4, 10)


def test_cnn_residual_blocks_add_skips_and_project_channels() -> None:
    cfg = CnnModel(
        kind="cnn", filters=[8, 16], residual=True, convs_per_block=2, global_pool=True, dense=[16]
    )
    model = build_model(cfg, input_shape=(12, 12, 3), num_outputs=5, scale=255.0)
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    one_by_one = [c for c in model.layers if isinstance(c, keras.layers.Conv2D) and c.kernel_size == (1, 1)]
    assert len(adds) == 2 and len(one_by_one) == 2  # 3->8 and 8->16 channels both need a projection
    assert _logits(model, (12, 12, 3)).shape == (4, 5)


def test_cnn_rejects_flat_inputs() -> None:
    with pytest.raises(ConfigError, match="cnn needs images"):
        build_model(CnnModel(kind="cnn"), input_shape=(20,), num_outputs=2, scale=1.0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
def test_rnn_reads_images_row_by_row(cell: str) -> None:
    cfg = RnnModel(kind="rnn", cell=cell, units=[8, 4], bidirectional=True)
    model = build_model(cfg, input_shape=(8, 8), num_outputs=10, scale=16.0)
    assert sum(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers) == 2
    assert _logits(model, (8, 8)).shape == (4, 10)


def test_rnn_on_channels_and_plain_sequences() -> None:
    model = build_model(RnnModel(kind="rnn", units=[4]), input_shape=(6, 5, 3), num_outputs=2, scale=1.0)
    assert _logits(model, (6, 5, 3)).shape == (4, 2)
    model = build_model(RnnModel(kind="rnn", units=[4]), input_shape=(30,), num_outputs=2, scale=1.0)
    assert _logits(model, (30,)).shape == (4, 2)


def test_with_probabilities_shares_weights_and_sums_to_one() -> None:
    model = build_model(DenseModel(kind="dense", units=[8]), input_shape=(8, 8), num_outputs=4, scale=16.0)
    probs_model = with_probabilities(model)
    x = np.random.default_rng(1).integers(0, 16, size=(5, 8, 8)).astype("float32")
    probs = np.asarray(probs_model(x))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    logits = np.asarray(model(x))
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), rtol=1e-5)


def test_fused_batch_norm_trains_like_keras_and_keeps_the_biased_moving_variance() -> None:
    import tensorflow as tf

    from dltrain.models.fused_bn import FusedBatchNormalization

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (16, 7, 7, 5)).astype("float32"))
    stock, fused = keras.layers.BatchNormalization(momentum=0.9), FusedBatchNormalization(momentum=0.9)
    for layer in (stock, fused):
        layer.build(x.shape)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outs = [layer(x, training=True) for layer in (stock, fused)]
        losses = [tf.reduce_sum(out**2) for out in outs]
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-5)
    grads = [
        tape.gradient(loss, [x, layer.gamma]) for loss, layer in zip(losses, (stock, fused), strict=True)
    ]
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(fused.moving_mean, stock.moving_mean, atol=1e-6)
    # Keras's (biased) batch variance, not the fused op's Bessel-corrected one (n = 16*7*7: 1e-3 apart here)
    np.testing.assert_allclose(fused.moving_variance, stock.moving_variance, rtol=1e-6)


def test_portable_model_is_stock_keras_in_float32_with_the_same_outputs(tmp_path) -> None:
    import subprocess
    import sys

    from dltrain.models import portable

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        cfg = CnnModel(kind="cnn", filters=[4, 8], batch_norm=True)
        model = with_probabilities(build_model(cfg, input_shape=(8, 8), num_outputs=3, scale=16.0))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert "FusedBatchNormalization" in [type(layer).__name__ for layer in model.layers]
    x = np.random.default_rng(0).integers(0, 16, size=(32, 8, 8)).astype("float32")
    model(x, training=True)  # moves the BatchNorm statistics off their initial values
    export = portable(model)
    assert {layer.dtype_policy.name for layer in export.layers} == {"float32"}
    for a, b in zip(model.get_weights(), export.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(export(x), model(x), atol=0.02)  # bfloat16 vs float32 arithmetic
    export.save(tmp_path / "m.keras")
    # Plain Keras, no dltrain: the file names only stock layers.
    code = (
        "import sys, keras; m = keras.models.load_model(sys.argv[1]); "
        "assert 'dltrain' not in sys.modules, 'dltrain imported'; "
        "print(sorted({type(l).__name__ for l in m.layers}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'BatchNormalization'" in proc.stdout and "Fused" not in proc.stdout


@pytest.mark.parametrize(
    ("kind", "cfg", "input_shape"),
    [
        ("cnn", CnnModel(kind="cnn", filters=[4], dropout=0.3, dense=[8]), (8, 8)),
        ("dense", DenseModel(kind="dense", units=[8], dropout=0.3), (8, 8)),
        ("rnn", RnnModel(kind="rnn", cell="gru", units=[4], dropout=0.3), (8, 8)),
    ],
)
def test_dropout_keeps_its_rate_and_scale_under_bfloat16(kind, cfg, input_shape) -> None:
    # A stock Dropout in bfloat16 keeps 69.55% of the units at rate 0.3 and scales them by 1.4297 (both rounded
    # to bfloat16): training's activations come out 0.56% smaller on average than inference's. dltrain's
    # dropout layers compute in float32, between bfloat16 layers.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model(cfg, input_shape=input_shape, num_outputs=3, scale=16.0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts, kind
    assert {layer.dtype_policy.name for layer in model.layers if layer not in dropouts} >= {"mixed_bfloat16"}
    ones = keras.ops.ones((1000, 1000), dtype="bfloat16")
    for layer in dropouts:
        out = np.asarray(keras.ops.cast(layer(ones, training=True), "float32"))
        kept = out > 0
        # 1e6 draws: the standard error of the kept fraction is 0.05 points, of the mean 0.07%
        assert abs(kept.mean() - 0.7) < 0.002, (kind, kept.mean())
        assert abs(out.mean() - 1.0) < 0.003, (kind, out.mean())
        np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
