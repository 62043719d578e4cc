"""Per-step learning-rate tables: shapes, endpoints, monotonic segments, edge cases and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dltrain.train import schedules
from dltrain.train.schedules import constant, cosine, one_cycle, step_decay


def test_constant() -> None:
    table = constant(0.01, 7)
    assert table.shape == (7,) and table.dtype == np.float64
    assert np.all(table == 0.01)
    assert constant(0.5, 1).tolist() == [0.5]


def test_step_decay_hand_example() -> None:
    # 2 steps per epoch, decay every 2 epochs: epochs 0,0,1,1 | 2,2,3,3 | 4,4
    table = step_decay(1.0, 10, steps_per_epoch=2, step_epochs=2, gamma=0.5)
    np.testing.assert_allclose(table, [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_step_decay_gamma_one_is_constant() -> None:
    np.testing.assert_allclose(step_decay(0.1, 20, 3, 1, 1.0), 0.1)


def test_cosine_with_warmup() -> None:
    table = cosine(1.0, 100, warmup_steps=10, min_lr=0.01)
    assert table.shape == (100,)
    np.testing.assert_allclose(table[:10], np.arange(1, 11) / 10)
    assert table[0] == pytest.approx(0.1) and table[0] > 0
    assert int(np.argmax(table)) == 9  # the peak is the last warmup step
    assert table.max() == pytest.approx(1.0)
    assert table[-1] == pytest.approx(0.01)
    assert np.all(np.diff(table[:10]) > 0)
    assert np.all(np.diff(table[10:]) < 0)
    # Half-way through the decay the cosine is at the mid-point of base and min.
    decay = table[10:]
    assert decay[(decay.size - 1) // 2] == pytest.approx(0.505, abs=0.02)


def test_cosine_without_warmup_starts_at_base() -> None:
    table = cosine(0.5, 11, warmup_steps=0, min_lr=0.0)
    assert table[0] == 0.5 and table[-1] == pytest.approx(0.0, abs=1e-15)
    assert table[5] == pytest.approx(0.25)


def test_cosine_edge_cases() -> None:
    assert cosine(0.3, 1, 0, 0.0).tolist() == [0.3]
    assert cosine(0.3, 1, 1, 0.0).tolist() == [0.3]
    np.testing.assert_allclose(cosine(1.0, 4, 4, 0.0), [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(cosine(1.0, 2, 0, 0.2), [1.0, 0.2])
    np.testing.assert_allclose(cosine(1.0, 5, 0, 1.0), 1.0)


def test_one_cycle_shape_and_endpoints() -> None:
    table = one_cycle(0.1, 100)
    peak = int(np.argmax(table))
    assert peak == 25
    assert table[0] == pytest.approx(0.1 / 25)
    assert table[peak] == pytest.approx(0.1)
    assert table[-1] == pytest.approx(0.1 / 1e5)
    assert np.all(np.diff(table[: peak + 1]) > 0)
    assert np.all(np.diff(table[peak:]) < 0)
    assert np.all(table > 0)


def test_one_cycle_custom_arguments() -> None:
    table = one_cycle(1.0, 50, warmup_fraction=0.1, div_factor=10.0, final_div_factor=100.0)
    assert int(np.argmax(table)) == 5
    assert table[0] == pytest.approx(0.1) and table[-1] == pytest.approx(0.01)


def test_one_cycle_tiny_schedules() -> None:
    assert one_cycle(0.2, 1).tolist() == [0.2]
    np.testing.assert_allclose(one_cycle(1.0, 2, final_div_factor=10.0), [1.0, 0.1])
    table = one_cycle(1.0, 3, warmup_fraction=0.9, div_factor=4.0, final_div_factor=2.0)
    np.testing.assert_allclose(table, [0.25, 1.0, 0.5])  # the peak leaves room for the last step
    no_warmup = one_cycle(1.0, 5, warmup_fraction=0.0)
    assert no_warmup[0] == 1.0 and np.all(np.diff(no_warmup) < 0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: constant(0.0, 10),
        lambda: constant(-1.0, 10),
        lambda: constant(math.nan, 10),
        lambda: constant(0.1, 0),
        lambda: constant(0.1, 2.5),  # type: ignore[arg-type]
        lambda: constant(0.1, True),
        lambda: step_decay(0.1, 10, 0, 1, 0.5),
        lambda: step_decay(0.1, 10, 2, 0, 0.5),
        lambda: step_decay(0.1, 10, 2, 1, 0.0),
        lambda: step_decay(0.1, 10, 2, 1, 1.5),
        lambda: cosine(0.1, 10, -1, 0.0),
        lambda: cosine(0.1, 10, 11, 0.0),
        lambda: cosine(0.1, 10, 2, 0.2),
        lambda: cosine(0.1, 10, 2, -0.01),
        lambda: one_cycle(0.1, 0),
        lambda: one_cycle(0.1, 10, warmup_fraction=1.0),
        lambda: one_cycle(0.1, 10, warmup_fraction=-0.1),
        lambda: one_cycle(0.1, 10, div_factor=0.5),
        lambda: one_cycle(0.1, 10, final_div_factor=math.inf),
        lambda: one_cycle(math.inf, 10),
    ],
)
def test_invalid_arguments_raise(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_error_message_names_argument_and_value() -> None:
    with pytest.raises(ValueError, match=r"total_steps must be an integer >= 1\. Received: 0"):
        constant(0.1, 0)


def test_numpy_integers_accepted() -> None:
    assert cosine(0.1, np.int64(5), np.int32(1), 0.0).shape == (5,)  # type: ignore[arg-type]


@pytest.mark.parametrize("total", [1, 2, 3, 7, 1000])
def test_all_tables_finite_positive_and_right_length(total: int) -> None:
    for table in (
        schedules.constant(1e-3, total),
        schedules.step_decay(1e-3, total, 3, 2, 0.1),
        schedules.cosine(1e-3, total, min(total, 2), 1e-5),
        schedules.one_cycle(1e-3, total),
    ):
        assert table.shape == (total,) and table.dtype == np.float64
        assert np.all(np.isfinite(table)) and np.all(table > 0)
