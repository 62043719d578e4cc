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
