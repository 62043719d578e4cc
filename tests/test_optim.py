"""Optimizers and the step -> learning-rate lookup that connects the NumPy schedules to training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dltrain.config import (
    AdamOptimizer,
    AdamWOptimizer,
    CosineSchedule,
    OneCycleSchedule,
    RmspropOptimizer,
    SgdOptimizer,
    StepSchedule,
)  # fmt: skip
from dltrain.train.optimizers import TableSchedule, build_optimizer, lr_table


def test_table_schedule_looks_up_every_step_and_holds_the_last() -> None:
    table = lr_table(OneCycleSchedule(kind="one_cycle"), 1e-2, total_steps=50, steps_per_epoch=10)
    schedule = TableSchedule(table)
    got = [float(schedule(step)) for step in range(55)]
    np.testing.assert_allclose(got[:50], table, rtol=1e-6)
    assert got[50:] == [pytest.approx(float(table[-1]), rel=1e-6)] * 5
    assert max(table) == pytest.approx(1e-2)


def test_step_and_cosine_tables_follow_the_config() -> None:
    step = lr_table(
        StepSchedule(kind="step", step_epochs=2, gamma=0.5), 0.1, total_steps=60, steps_per_epoch=10
    )
    assert (
        step[0] == pytest.approx(0.1) and step[25] == pytest.approx(0.05) and step[45] == pytest.approx(0.025)
    )
    cos = lr_table(CosineSchedule(kind="cosine", warmup_epochs=1, min_lr_fraction=0.1), 0.1, 100, 10)
    assert int(np.argmax(cos)) in (9, 10) and cos[-1] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("cfg", "cls"),
    [
        (SgdOptimizer(kind="sgd", momentum=0.9, nesterov=True), keras.optimizers.SGD),
        (AdamOptimizer(kind="adam", clipnorm=1.0), keras.optimizers.Adam),
        (AdamWOptimizer(kind="adamw"), keras.optimizers.AdamW),
        (RmspropOptimizer(kind="rmsprop"), keras.optimizers.RMSprop),
    ],
)
def test_build_optimizer_kinds(cfg: object, cls: type) -> None:
    opt = build_optimizer(cfg, 1e-3)
    assert isinstance(opt, cls)
    if isinstance(cfg, AdamOptimizer) and cfg.clipnorm:
        assert opt.global_clipnorm == 1.0
    if isinstance(cfg, AdamWOptimizer):
        assert opt.weight_decay == pytest.approx(0.004)


def test_mixed_float16_wraps_in_loss_scaling() -> None:
    opt = build_optimizer(AdamOptimizer(kind="adam"), 1e-3, precision="mixed_float16")
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
