"""Learning-rate schedules as full per-step tables.

Pure numpy, no TensorFlow: each function returns a float64 array of length ``total_steps`` whose entry
``s`` is the learning rate for optimizer step ``s`` (0-based). The TF side only looks the step up, so the
maths is tested here, fast, and a resumed run gets exactly the same learning rates as an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def _check_int(name: str, value: int, minimum: int) -> None:
    # Accept numpy integers, reject bools and floats: a fractional step count is a caller bug, not a
    # value to truncate silently.
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {value!r}.")


def _check_steps(total_steps: int) -> None:
    _check_int("total_steps", total_steps, 1)


def _check_lr(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}. Received: {value!r}.")


def _cosine_ramp(start: float, end: float, num: int) -> NDArray[np.float64]:
    """``num`` points of half a cosine from ``start`` (first point) to ``end`` (last point)."""
    if num == 1:
        return np.array([start], dtype=np.float64)
    progress = np.arange(num, dtype=np.float64) / (num - 1)
    return end + (start - end) * (1.0 + np.cos(np.pi * progress)) / 2.0


def constant(base_lr: float, total_steps: int) -> NDArray[np.float64]:
    """The same learning rate at every step.

    Raises:
        ValueError: for ``base_lr <= 0`` or ``total_steps < 1``.
    """
    _check_lr("base_lr", base_lr)
    _check_steps(total_steps)
    return np.full(int(total_steps), float(base_lr), dtype=np.float64)


def step_decay(
    base_lr: float, total_steps: int, steps_per_epoch: int, step_epochs: int, gamma: float
) -> NDArray[np.float64]:
    """Multiply the learning rate by ``gamma`` every ``step_epochs`` epochs.

    ``lr[s] = base_lr * gamma ** (epoch // step_epochs)`` with ``epoch = s // steps_per_epoch``.

    Raises:
        ValueError: for a non-positive rate, step count or period, or ``gamma`` outside (0, 1].
    """
    _check_lr("base_lr", base_lr)
    _check_steps(total_steps)
    _check_int("steps_per_epoch", steps_per_epoch, 1)
    _check_int("step_epochs", step_epochs, 1)
    if not (math.isfinite(gamma) and 0.0 < gamma <= 1.0):
        raise ValueError(f"gamma must be in (0, 1]. Received: {gamma!r}.")
    epochs = np.arange(int(total_steps)) // int(steps_per_epoch)
    return float(base_lr) * float(gamma) ** (epochs // int(step_epochs)).astype(np.float64)


def cosine(base_lr: float, total_steps: int, warmup_steps: int, min_lr: float) -> NDArray[np.float64]:
    """Linear warmup to ``base_lr``, then half a cosine down to ``min_lr`` at the last step.

    Warmup step ``s < warmup_steps`` gets ``base_lr * (s + 1) / warmup_steps`` (never 0, so the first step
    still moves the weights); the last warmup step reaches ``base_lr``, the decay starts from it and ends
    exactly at ``min_lr`` on step ``total_steps - 1``. A decay of a single step is just ``base_lr``.

    Raises:
        ValueError: for ``base_lr <= 0``, ``min_lr`` outside [0, base_lr], ``total_steps < 1`` or
            ``warmup_steps`` outside [0, total_steps].
    """
    _check_lr("base_lr", base_lr)
    _check_lr("min_lr", min_lr, allow_zero=True)
    _check_steps(total_steps)
    if min_lr > base_lr:
        raise ValueError(f"min_lr ({min_lr}) must not exceed base_lr ({base_lr}).")
    _check_int("warmup_steps", warmup_steps, 0)
    if warmup_steps > total_steps:
        raise ValueError(
            f"warmup_steps must not exceed total_steps ({total_steps}). Received: {warmup_steps!r}."
        )
    warmup = int(warmup_steps)
    decay = int(total_steps) - warmup
    ramp_up = float(base_lr) * np.arange(1, warmup + 1, dtype=np.float64) / max(warmup, 1)
    ramp_down = _cosine_ramp(float(base_lr), float(min_lr), decay) if decay else np.empty(0)
    return np.concatenate([ramp_up, ramp_down]).astype(np.float64)


def one_cycle(
    max_lr: float,
    total_steps: int,
    warmup_fraction: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e5,
) -> NDArray[np.float64]:
    """The one-cycle policy, as fast.ai's ``fit_one_cycle`` shapes it.

    Half a cosine up from ``max_lr / div_factor`` at step 0 to ``max_lr`` at the peak step
    ``floor(warmup_fraction * total_steps + 0.5)`` (at most ``total_steps - 2``), then half a cosine down
    to ``max_lr / final_div_factor`` on the last step. A single-step schedule is just ``max_lr``.

    Raises:
        ValueError: for ``max_lr <= 0``, ``total_steps < 1``, ``warmup_fraction`` outside [0, 1) or a
            divisor below 1.
    """
    _check_lr("max_lr", max_lr)
    _check_steps(total_steps)
    if not (math.isfinite(warmup_fraction) and 0.0 <= warmup_fraction < 1.0):
        raise ValueError(f"warmup_fraction must be in [0, 1). Received: {warmup_fraction!r}.")
    for name, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
        if not (math.isfinite(value) and value >= 1.0):
            raise ValueError(f"{name} must be a finite number >= 1. Received: {value!r}.")
    total = int(total_steps)
    # The peak is shared by both halves and must leave at least one more step for the way down, so the
    # last step still reaches max_lr / final_div_factor (only a 1-step schedule cannot).
    peak = min(math.floor(warmup_fraction * total + 0.5), max(total - 2, 0))
    up = _cosine_ramp(max_lr / div_factor, float(max_lr), peak + 1)[:-1] if peak else np.empty(0)
    down = _cosine_ramp(float(max_lr), max_lr / final_div_factor, total - peak)
    return np.concatenate([up, down]).astype(np.float64)
