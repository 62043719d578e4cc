"""Learning-rate range test maths: the sweep, loss smoothing, divergence and suggestion rules.

Pure numpy, no TensorFlow: the lr-finder callback only calls these functions, so the maths is tested fast
and on its own (Leslie Smith's range test, as popularised by fast.ai's ``lr_find``).

A sweep raises the learning rate geometrically from ``start_lr`` to ``end_lr``, one step per batch, and
records the training loss. The raw loss is smoothed with a bias-corrected EMA; the sweep stops once the
smoothed loss exceeds ``factor`` times the best seen. A rule then picks a point of the smoothed curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

RULES: tuple[str, ...] = ("valley", "steep", "minimum")

# A curve whose smoothed losses spread by less than this fraction of their median is "flat".
FLAT_SPREAD = 0.05
# Noise (see noise_ratio) above this fraction of the trend's range makes the curve "noisy". At 0.15 the
# batch-to-batch scatter is a sizeable share of the whole descent, enough to move the steepest or valley
# point by several steps; a clean curve with ordinary mini-batch jitter stays under 0.05.
NOISE_THRESHOLD = 0.15
# A suggestion inside the first or last 10% of the swept log10 range sits at the "edge".
EDGE_FRACTION = 0.10


def exponential_lrs(start_lr: float, end_lr: float, num_steps: int) -> NDArray[np.float64]:
    """Geometric learning-rate sweep from ``start_lr`` to ``end_lr`` inclusive.

    Args:
        start_lr: First learning rate, > 0.
        end_lr: Last learning rate, > ``start_lr``.
        num_steps: Number of learning rates, >= 2.

    Returns:
        A float64 array of length ``num_steps``; ``[0] == start_lr`` and ``[-1] == end_lr`` exactly.

    Raises:
        ValueError: on a non-positive or non-finite bound, ``end_lr <= start_lr`` or ``num_steps < 2``.
    """
    if not (math.isfinite(start_lr) and start_lr > 0):
        raise ValueError(f"start_lr must be a finite number > 0. Received: {start_lr!r}.")
    if not (math.isfinite(end_lr) and end_lr > start_lr):
        raise ValueError(
            f"end_lr must be finite and larger than start_lr ({start_lr}). Received: {end_lr!r}."
        )
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2 for a sweep. Received: {num_steps}.")
    lrs = np.geomspace(start_lr, end_lr, num_steps, dtype=np.float64)
    # geomspace goes through exp/log and can miss the endpoints by an ulp; callers compare them exactly.
    lrs[0], lrs[-1] = start_lr, end_lr
    return lrs


class LossSmoother:
    """Bias-corrected exponential moving average of the loss (Adam-style debiasing).

    Without the correction the average starts at 0 and the first points look far better than they are;
    with it, the first smoothed value equals the first loss.

    A non-finite loss is passed straight through and does not enter the average, so one bad batch does not
    turn every later point into NaN (the divergence tracker stops the sweep on it anyway).
    """

    def __init__(self, beta: float = 0.98) -> None:
        if not (0.0 <= beta < 1.0):
            raise ValueError(f"beta must be in [0, 1). Received: {beta!r}.")
        self.beta = beta
        self._avg = 0.0
        self._count = 0

    def update(self, loss: float) -> float:
        """Feed one raw loss and return the smoothed loss for this step."""
        loss = float(loss)
        if not math.isfinite(loss):
            return loss
        self._count += 1
        self._avg = self.beta * self._avg + (1.0 - self.beta) * loss
        return self._avg / (1.0 - self.beta**self._count)


def smooth_losses(losses: ArrayLike, beta: float = 0.98) -> NDArray[np.float64]:
    """Bias-corrected EMA over a whole array of raw losses (see :class:`LossSmoother`)."""
    smoother = LossSmoother(beta)
    raw = np.asarray(losses, dtype=np.float64).ravel()
    return np.array([smoother.update(x) for x in raw], dtype=np.float64)


class DivergenceTracker:
    """Says when a sweep has diverged: the loss is non-finite or ``factor`` times above its best.

    Meant for losses bounded below by 0 (cross-entropy, MSE); while the best loss is <= 0 the ratio test is
    meaningless and only a non-finite loss counts as divergence.
    """

    def __init__(self, factor: float = 4.0) -> None:
        if not (math.isfinite(factor) and factor > 1.0):
            raise ValueError(f"factor must be a finite number > 1. Received: {factor!r}.")
        self.factor = factor
        self.best = math.inf

    def update(self, smoothed: float) -> bool:
        """Feed one smoothed loss; True when the sweep should stop."""
        smoothed = float(smoothed)
        if not math.isfinite(smoothed):
            return True
        self.best = min(self.best, smoothed)
        return self.best > 0 and smoothed > self.factor * self.best


@dataclass
class Suggestion:
    """The outcome of a range test.

    Attributes:
        rule: The rule that chose the point.
        lr: The suggested learning rate, or None when there is none.
        index: Index of the chosen point in the arrays given to :func:`suggest`, or None.
        message: Why there is no suggestion and how to fix it; None when there is one.
        warnings: One-line, human-readable caveats, each saying what to change.
    """

    rule: str
    lr: float | None
    index: int | None
    message: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``lr_find/suggestion.json``)."""
        return asdict(self)


def _as_1d(name: str, values: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional. Received shape {arr.shape}.")
    return arr


def _check_pair(lrs: ArrayLike, losses: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x = _as_1d("lrs", lrs)
    y = _as_1d("losses", losses)
    if x.shape != y.shape:
        raise ValueError(f"lrs and losses must have the same length. Received {x.size} and {y.size}.")
    return x, y


def _lead_in_end(segment: NDArray[np.float64], top: float) -> int:
    """The offset after the last point of ``segment`` still within a tenth of its depth below ``top``.

    0 when that would leave fewer than two points (the valley is then kept whole).
    """
    depth = top - float(segment[-1])
    if depth <= 0.0:
        return 0
    high = np.flatnonzero(segment > top - 0.1 * depth)
    if high.size and int(high[-1]) + 1 < segment.size - 1:
        return int(high[-1]) + 1
    return 0


def _lead_in_level(segment: NDArray[np.float64]) -> float | None:
    """The loss level of a flat lead-in before the descent, or None when the curve falls from its start.

    A continuous hinge is fit by least squares: flat at ``level`` up to a knee, then a straight line
    that may not rise. The best-fitting knee is taken (the earliest among equals); at the first point
    there is no lead-in.
    """
    n = segment.size
    if n < 4:
        return None
    steps = np.arange(n, dtype=np.float64)
    best_sse, best_knee, best_level = math.inf, 0, float(segment[0])
    for knee in range(n - 2):
        design = np.stack([np.ones(n), np.maximum(0.0, steps - knee)], axis=1)
        coef = np.linalg.lstsq(design, segment, rcond=None)[0]
        if coef[1] > 0.0:
            continue
        sse = float(np.sum((design @ coef - segment) ** 2))
        if sse < best_sse * (1.0 - 1e-12):
            best_sse, best_knee, best_level = sse, knee, float(coef[0])
    return best_level if best_knee > 0 else None


def valley(lrs: ArrayLike, losses: ArrayLike) -> int | None:
    """fast.ai's default rule: the middle of the longest valley of the loss curve.

    The valley is the longest strictly decreasing subsequence of the losses, spanning ``[start, end]``;
    the chosen index is ``start + int(span / 3) + int(span / 6)`` with ``span = end - start``, i.e. about
    half-way down: well inside the descent, clear of both the flat start and the unstable bottom.

    Returns:
        The chosen index, or None when the loss never decreases (or there are fewer than 2 points).
    """
    _, y = _check_pair(lrs, losses)
    n = y.size
    if n < 2:
        return None
    # length[i]: longest strictly decreasing subsequence ending at i; first[i]: where that one starts.
    # Among equally long predecessors the earliest start wins, so the valley is as wide as possible.
    length = np.ones(n, dtype=np.int64)
    first = np.arange(n)
    for i in range(1, n):
        higher = np.flatnonzero(y[:i] > y[i])
        if higher.size == 0:
            continue
        best = length[higher].max()
        length[i] = best + 1
        first[i] = first[higher[length[higher] == best]].min()
    end = int(np.argmax(length))
    if length[end] < 2:
        return None
    start = int(first[end])
    # A long flat lead-in (the learning rate still too small to matter) counts as "decreasing" through
    # noise and drags the pick toward uselessly small rates on short sweeps; the valley starts where the
    # loss has really begun to fall: after the last point still within a tenth of the valley's depth of
    # the lead-in's level. That level is the valley's first point, or, where the curve has a flat lead-in,
    # the level a hinge fit finds for it, whichever starts the valley later: the first smoothed points carry
    # the noise of single batches, and when the whole descent is shallow beside that noise (an LSTM on the
    # 8x8 digits: 2.32 -> 2.26 over the sweep, the first point 2.34) they alone would set the threshold.
    segment = y[start : end + 1]
    cut = _lead_in_end(segment, float(segment[0]))
    level = _lead_in_level(segment)
    if level is not None:
        cut = max(cut, _lead_in_end(segment, level))
    start += cut
    span = end - start
    return start + int(span / 3) + int(span / 6)


def steep(lrs: ArrayLike, losses: ArrayLike) -> int | None:
    """The point of steepest descent: most negative d(loss)/d(log10 lr).

    Returns:
        The chosen index, or None with fewer than 2 points or when the loss never goes down.
    """
    x, y = _check_pair(lrs, losses)
    if y.size < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = np.gradient(y, np.log10(x))
    grad = np.where(np.isfinite(grad), grad, np.inf)
    idx = int(np.argmin(grad))
    return idx if grad[idx] < 0 else None


def minimum(lrs: ArrayLike, losses: ArrayLike) -> int | None:
    """The point of minimum loss; the suggested learning rate is ``lrs[idx] / 10``.

    At the minimum the sweep is already about to blow up, hence a tenth of it.

    Returns:
        The index of the (first) minimum, or None for an empty curve.
    """
    _, y = _check_pair(lrs, losses)
    if y.size == 0:
        return None
    return int(np.argmin(y))


_RULE_FUNCTIONS: dict[str, Callable[[ArrayLike, ArrayLike], int | None]] = {
    "valley": valley,
    "steep": steep,
    "minimum": minimum,
}


def _running_median(values: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    half = window // 2
    padded = np.pad(values, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    return np.median(windows, axis=1)


def noise_ratio(raw_losses: ArrayLike) -> float:
    """How noisy a raw loss curve is, relative to the size of its trend.

    The noise is measured against a trend that does not lag: each point's residual from the straight line
    through its two neighbours, ``y[i] - (y[i-1] + y[i+1]) / 2``, which follows a steep descent exactly
    (the EMA trails a falling curve by tens of steps, so raw-minus-EMA would call any fast descent noisy,
    and a running median returns the point itself on any locally monotonic stretch, so it sees no noise).
    For independent noise of standard deviation sigma the residual has standard deviation
    ``sigma * sqrt(1.5)``; sigma is estimated robustly as ``1.4826 * median|residual| / sqrt(1.5)`` so a
    few spikes do not count. The size of the trend is the 5th-95th percentile range of a centred running
    median (window ~ n/10, at least 5).

    Returns:
        sigma / trend range: 0.0 for fewer than 5 finite points, inf for noise on a trend with no range.
    """
    y = _as_1d("raw_losses", raw_losses)
    y = y[np.isfinite(y)]
    if y.size < 5:
        return 0.0
    residual = y[1:-1] - (y[:-2] + y[2:]) / 2.0
    sigma = 1.4826 * float(np.median(np.abs(residual))) / math.sqrt(1.5)
    window = max(5, (y.size // 10) | 1)
    window = min(window, y.size if y.size % 2 else y.size - 1)
    lo, hi = np.percentile(_running_median(y, window), [5.0, 95.0])
    spread = float(hi - lo)
    if spread <= 0.0:
        return 0.0 if sigma == 0.0 else math.inf
    return sigma / spread


def noise_warning(raw_losses: ArrayLike, threshold: float = NOISE_THRESHOLD) -> str | None:
    """A one-line warning when :func:`noise_ratio` exceeds ``threshold``, else None."""
    ratio = noise_ratio(raw_losses)
    if ratio <= threshold:
        return None
    return (
        f"the loss curve is noisy (noise is {ratio:.0%} of its range, above {threshold:.0%}); "
        "raise data.batch_size or lr_find.num_steps for a steadier curve"
    )


def flat_warning(losses: ArrayLike) -> str | None:
    """A one-line warning when the losses spread by less than ``FLAT_SPREAD`` of their median, else None."""
    y = _as_1d("losses", losses)
    y = y[np.isfinite(y)]
    if y.size == 0:
        return None
    spread = float(y.max() - y.min())
    scale = abs(float(np.median(y)))
    relative = spread / scale if scale > 0 else (0.0 if spread == 0 else math.inf)
    if relative >= FLAT_SPREAD:
        return None
    return (
        f"the loss curve is flat (spread {relative:.1%} of its median): the model is not learning in this "
        "range; widen lr_find.start_lr / lr_find.end_lr or check the model and the labels"
    )


def _edge_warning(lr: float, lr_min: float, lr_max: float) -> str | None:
    if not (lr_max > lr_min > 0):
        return None
    position = (math.log10(lr) - math.log10(lr_min)) / (math.log10(lr_max) - math.log10(lr_min))
    if position < EDGE_FRACTION:
        return (
            f"the chosen point (lr={lr:.3g}) is in the first {EDGE_FRACTION:.0%} of the swept range; "
            "lower lr_find.start_lr so the curve shows where the loss starts to fall"
        )
    if position > 1.0 - EDGE_FRACTION:
        return (
            f"the chosen point (lr={lr:.3g}) is in the last {EDGE_FRACTION:.0%} of the swept range; "
            "raise lr_find.end_lr so the curve shows where the loss turns up"
        )
    return None


def _too_few_message(
    n_finite: int, n_total: int, lrs: NDArray[np.float64], ok: NDArray[np.bool_], need: int
) -> str:
    if n_total < need:
        return (
            f"only {n_total} points were swept (need {need}); raise lr_find.num_steps or lower "
            "data.batch_size so an epoch has more steps (if the loss diverged that early, lower "
            "lr_find.start_lr)"
        )
    if n_finite == 0:
        return (
            "the loss was non-finite at every step; check the data for NaN/inf and the model's output layer"
        )
    first_bad = int(np.argmin(ok))
    return (
        f"only {n_finite} of {n_total} points are finite (the loss went non-finite from "
        f"lr={lrs[first_bad]:.3g}); lower lr_find.end_lr or raise lr_find.num_steps"
    )


def suggest(
    lrs: ArrayLike,
    losses: ArrayLike,
    rule: str = "valley",
    min_points: int = 10,
    *,
    raw_losses: ArrayLike | None = None,
) -> Suggestion:
    """Suggest a learning rate from a range test's smoothed losses.

    Points where the learning rate or the loss is NaN or inf (or the learning rate is <= 0) are dropped
    first; the returned index still refers to the arrays given here.

    Args:
        lrs: Learning rates of the sweep, increasing.
        losses: Smoothed losses at those learning rates.
        rule: One of :data:`RULES`.
        min_points: Finite points needed for a suggestion.
        raw_losses: The unsmoothed losses, same length; when given, a noisy curve is warned about.

    Returns:
        A :class:`Suggestion`; ``lr`` is None (with a ``message``) when there is no suggestion.

    Raises:
        ValueError: for an unknown rule or mismatched array shapes.
    """
    if rule not in _RULE_FUNCTIONS:
        raise ValueError(f"unknown lr_find rule {rule!r}; expected one of: {', '.join(RULES)}")
    x, y = _check_pair(lrs, losses)
    raw: NDArray[np.float64] | None = None
    if raw_losses is not None:
        raw = _as_1d("raw_losses", raw_losses)
        if raw.shape != x.shape:
            raise ValueError(
                f"raw_losses must have the same length as lrs. Received {raw.size} and {x.size}."
            )

    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    kept = np.flatnonzero(ok)
    need = max(int(min_points), 2)
    if kept.size < need:
        return Suggestion(rule, None, None, _too_few_message(int(kept.size), int(x.size), x, ok, need))

    fx, fy = x[kept], y[kept]
    local = _RULE_FUNCTIONS[rule](fx, fy)
    if local is None:
        message = (
            "the loss never decreased over the sweep; lower lr_find.start_lr, or check that the model can "
            "learn (labels, loss, output layer)"
        )
        return Suggestion(rule, None, None, message)

    # The edge is judged against every learning rate tried, including those whose loss went non-finite.
    with np.errstate(invalid="ignore"):
        swept = x[np.isfinite(x) & (x > 0)]
    lr = float(fx[local]) / 10.0 if rule == "minimum" else float(fx[local])
    warnings: list[str] = []
    for warning in (
        flat_warning(fy),
        noise_warning(raw[ok]) if raw is not None else None,
        _edge_warning(float(fx[local]), float(swept.min()), float(swept.max())),
    ):
        if warning is not None:
            warnings.append(warning)
    return Suggestion(rule, lr, int(kept[local]), None, warnings)


AUTO_SHARE = 0.15  # of an epoch: the sweep's cost stays small beside the training it tunes
AUTO_MIN, AUTO_MAX = 60, 100


def sweep_steps(configured: int | str, steps_per_epoch: int) -> int:
    """``lr_find.num_steps``, with auto resolved: 15% of an epoch, kept within 60..100 steps.

    100 is fast.ai's default; on a large epoch 15% of it would be more steps than the curve needs, and on a
    small dataset fewer than 60 points make the smoothed curve too short to read.
    """
    if configured != "auto":
        return int(configured)
    return int(min(AUTO_MAX, max(AUTO_MIN, math.floor(AUTO_SHARE * steps_per_epoch))))


def scaled_beta(beta: float, num_steps: int, reference: int = 100) -> float:
    """The EMA factor that smooths a ``num_steps`` sweep over the same share as ``beta`` does 100 steps.

    fast.ai's valley rule is tuned on a 100-step curve smoothed with 0.98; a 63-step sweep with the same
    factor would lag over a larger part of the curve.
    """
    return float(beta ** (reference / num_steps)) if beta > 0 else 0.0
