"""PNG plots for the run directory: lr-find curve, learning curves, confusion matrix, top losses.

matplotlib is imported inside each function, so importing this module costs nothing. Figures are built with
``matplotlib.figure.Figure`` directly (matplotlib's advice for servers) rather than through pyplot: no GUI
backend is ever picked, so it works headless; nothing is added to pyplot's global figure registry, so no
figure can leak in a long run; and the process-wide backend is never switched, which would close the
figures of a caller (a notebook) that uses pyplot itself. Every plot is rendered into memory and written
with :func:`~dltrain.fsutil.atomic_write_bytes`, so a reader never sees a half-written PNG.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dltrain.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DPI = 100
# Past this many classes the per-cell counts become unreadable, so only the colours are drawn.
_MAX_ANNOTATED_CLASSES = 30


def _figure(**kwargs: Any) -> Figure:
    """A new figure that renders with Agg and belongs to no pyplot state."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Render ``fig`` to PNG bytes and write them atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def plot_lr_find(
    lrs: ArrayLike,
    losses: ArrayLike,
    smoothed: ArrayLike,
    suggestion_lr: float | None,
    rule: str,
    path: str | os.PathLike[str],
) -> None:
    """Loss against learning rate on a log axis: raw loss faint, smoothed loss bold, the suggestion marked.

    Non-finite points are left out. The marker sits on the smoothed curve at the suggested learning rate
    (interpolated in log space); its legend entry gives the value and the rule.
    """
    x = np.asarray(lrs, dtype=np.float64)
    raw = np.asarray(losses, dtype=np.float64)
    smooth = np.asarray(smoothed, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok_raw = np.isfinite(x) & np.isfinite(raw) & (x > 0)
        ok_smooth = np.isfinite(x) & np.isfinite(smooth) & (x > 0)

    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(x[ok_raw], raw[ok_raw], color="tab:blue", alpha=0.3, linewidth=1, label="loss")
    ax.plot(x[ok_smooth], smooth[ok_smooth], color="tab:blue", linewidth=2, label="smoothed loss")
    if suggestion_lr is not None and math.isfinite(suggestion_lr) and suggestion_lr > 0 and ok_smooth.any():
        xs, ys = x[ok_smooth], smooth[ok_smooth]
        order = np.argsort(xs)
        y_at = float(np.interp(np.log10(suggestion_lr), np.log10(xs[order]), ys[order]))
        ax.plot(
            [suggestion_lr],
            [y_at],
            marker="o",
            markersize=9,
            color="tab:red",
            linestyle="none",
            label=f"{rule}: lr = {suggestion_lr:.2e}",
        )
    if ok_raw.any():
        # The divergence at the end can be 100x the rest of the curve; keep the useful part readable.
        low = float(np.min(raw[ok_raw]))
        high = float(np.percentile(raw[ok_raw], 90))
        if ok_smooth.any():
            high = max(high, float(np.max(smooth[ok_smooth][: max(1, int(ok_smooth.sum()) - 3)])))
        if high > low:
            pad = 0.08 * (high - low)
            ax.set_ylim(low - pad, high + pad)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss")
    title = "Learning-rate range test"
    ax.set_title(title if suggestion_lr is not None else f"{title} (no suggestion)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best")
    _save(fig, path)


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> NDArray[np.float64]:
    """One metric as floats; missing, empty or unparsable cells become NaN (rows may come from a CSV)."""
    values = []
    for row in rows:
        try:
            values.append(float(row[key]))
        except (KeyError, TypeError, ValueError):
            values.append(math.nan)
    return np.asarray(values, dtype=np.float64)


# The per-epoch metric panels of the learning-curve plots: a title and the training / validation columns.
METRIC_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss", ("loss", "val_loss")),
    ("accuracy", ("accuracy", "val_accuracy")),
    ("mean absolute error", ("mae", "val_mae")),
)


def _panel_row(n: int, size: tuple[float, float], empty: str) -> tuple[Any, Any]:
    """A figure with ``n`` panels side by side (one saying ``empty`` when there are none)."""
    ncols = max(n, 1)
    fig = _figure(figsize=(size[0] * ncols, size[1]), layout="tight")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    if n == 0:
        axes[0].text(0.5, 0.5, empty, ha="center", va="center")
        axes[0].set_axis_off()
    return fig, axes


def plot_learning_curves(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
    """Per-epoch panels for loss, accuracy and learning rate, as read from ``metrics.csv``.

    Any key (epoch, loss, val_loss, accuracy, val_accuracy, learning_rate) may be missing or NaN; a panel
    is drawn only when it has at least one finite value, and a missing epoch column counts from 1.
    """
    epochs = _column(rows, "epoch")
    if not np.isfinite(epochs).all():
        epochs = np.arange(1, len(rows) + 1, dtype=np.float64)
    panels: list[tuple[str, list[tuple[str, NDArray[np.float64]]], bool]] = []
    for title, keys, log_y in (
        *((t, k, False) for t, k in METRIC_PANELS),
        ("learning rate", ("learning_rate",), True),
    ):
        series = [(key, _column(rows, key)) for key in keys]
        series = [(key, values) for key, values in series if np.isfinite(values).any()]
        if series:
            panels.append((title, series, log_y))

    fig, axes = _panel_row(len(panels), (5, 4), "no metrics recorded yet")
    for ax, (title, series, log_y) in zip(axes, panels, strict=False):
        for key, values in series:
            ok = np.isfinite(values)
            style = "--" if key.startswith("val_") else "-"
            ax.plot(epochs[ok], values[ok], style, marker="o", markersize=3, label=key)
        # A log axis shows decays spanning decades; it needs every plotted value to be positive.
        if log_y and all((values[np.isfinite(values)] > 0).all() for _, values in series):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
    _save(fig, path)


def plot_confusion_matrix(cm: ArrayLike, class_names: Sequence[str], path: str | os.PathLike[str]) -> None:
    """Confusion matrix, rows true and columns predicted, coloured by row share and annotated with counts.

    Colouring by the share of each true class keeps small classes visible next to large ones; the
    printed numbers stay raw counts.

    Raises:
        ValueError: when ``cm`` is not square or ``class_names`` has the wrong length.
    """
    matrix = np.asarray(cm, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix must be square (C, C). Received shape {matrix.shape}.")
    n = matrix.shape[0]
    if len(class_names) != n:
        raise ValueError(f"class_names has {len(class_names)} names for {n} classes.")
    row_sums = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    shares = np.zeros(matrix.shape, dtype=np.float64)
    np.divide(matrix, row_sums, out=shares, where=row_sums > 0)

    size = min(max(4.0, 0.6 * n + 2.0), 30.0)
    fig = _figure(figsize=(size, size), layout="tight")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels([str(name) for name in class_names], rotation=45, ha="right")
    ax.set_yticklabels([str(name) for name in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    if n <= _MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8)
    _save(fig, path)


def plot_top_losses(
    images: ArrayLike,
    true_names: Sequence[str],
    pred_names: Sequence[str],
    losses: ArrayLike,
    probs: ArrayLike,
    path: str | os.PathLike[str],
    ncols: int = 4,
    title: str = "prediction / actual / loss / probability",
) -> None:
    """A grid of the worst-predicted images, titled ``pred/true/loss/prob`` like fast.ai's plot_top_losses.

    Args:
        images: (N, H, W) or (N, H, W, C) floats in [0, 1]; C is 1, 3 or 4. Values are clipped to [0, 1].
        true_names: N true class names.
        pred_names: N predicted class names.
        losses: N per-example losses.
        probs: N probabilities to print per tile; which class they belong to is the caller's choice
            (fastai v2 shows the predicted class's, v1 showed the true class's).
        path: Where the PNG goes.
        ncols: Tiles per row.
        title: The figure's title (the interpretation grids reuse this plot).

    Raises:
        ValueError: on inconsistent lengths, a bad image shape or ``ncols < 1``.
    """
    pixels = np.asarray(images, dtype=np.float64)
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (3, 4) or (pixels.ndim == 4 and pixels.shape[-1] not in (3, 4)):
        raise ValueError(f"images must have shape (N, H, W) or (N, H, W, 1|3|4). Received {pixels.shape}.")
    loss_values = np.asarray(losses, dtype=np.float64).ravel()
    prob_values = np.asarray(probs, dtype=np.float64).ravel()
    n = pixels.shape[0]
    if {len(true_names), len(pred_names), loss_values.size, prob_values.size} != {n}:
        raise ValueError(
            f"images, true_names, pred_names, losses and probs must have the same length ({n}). "
            f"Received {len(true_names)}, {len(pred_names)}, {loss_values.size}, {prob_values.size}."
        )
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1. Received: {ncols}.")
    pixels = np.clip(np.nan_to_num(pixels, nan=0.0), 0.0, 1.0)

    cols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / cols))
    fig = _figure(figsize=(2.6 * cols, 2.9 * nrows + 0.4), layout="tight")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    fig.suptitle(title)
    for k, ax in enumerate(axes):
        ax.set_axis_off()
        if k >= n:
            continue
        if pixels.ndim == 3:
            ax.imshow(pixels[k], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(pixels[k])
        ax.set_title(
            f"{pred_names[k]}/{true_names[k]}\n{loss_values[k]:.2f} / {prob_values[k]:.2f}", fontsize=9
        )
    if n == 0:
        axes[0].text(0.5, 0.5, "no examples", ha="center", va="center")
    _save(fig, path)


def plot_predictions(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    path: str | os.PathLike[str],
    baseline: ArrayLike | None = None,
    title: str = "",
) -> None:
    """Regression: predicted against true (first target) and, in order, both series over the examples
    (a forecast's test period), with the naive baseline when there is one."""
    true = np.asarray(y_true, dtype=np.float64).reshape(len(np.asarray(y_true)), -1)[:, 0]
    pred = np.asarray(y_pred, dtype=np.float64).reshape(len(true), -1)[:, 0]
    fig = _figure(figsize=(11, 4), layout="tight")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    left.scatter(true, pred, s=6, alpha=0.5)
    finite = np.concatenate([true[np.isfinite(true)], pred[np.isfinite(pred)]])
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        left.plot([lo, hi], [lo, hi], "k--", linewidth=1)
    left.set_xlabel("true")
    left.set_ylabel("predicted")
    left.set_title(title or "predicted vs true")
    left.grid(True, alpha=0.3)
    steps = np.arange(len(true))
    right.plot(steps, true, label="true", linewidth=1)
    right.plot(steps, pred, label="predicted", linewidth=1)
    if baseline is not None:
        base = np.asarray(baseline, dtype=np.float64).reshape(len(true), -1)[:, 0]
        right.plot(steps, base, ":", label="naive", linewidth=1)
    right.set_xlabel("example (in split order)")
    right.grid(True, alpha=0.3)
    right.legend(loc="best")
    _save(fig, path)


def plot_samples_per_class(
    images: ArrayLike,
    labels: ArrayLike,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    per_class: int = 8,
) -> None:
    """A grid with one row per class and up to ``per_class`` of its images (the first look at the data).

    Args:
        images: (N, H, W) or (N, H, W, 1|3) floats in [0, 1].
        labels: N class indices.
    """
    pixels = np.clip(np.nan_to_num(np.asarray(images, dtype=np.float64), nan=0.0), 0.0, 1.0)
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    y = np.asarray(labels).astype(np.int64).ravel()
    rows = max(len(class_names), 1)
    fig = _figure(figsize=(1.3 * per_class + 1.5, 1.4 * rows + 0.4), layout="tight")
    axes = fig.subplots(rows, per_class, squeeze=False)
    for r, name in enumerate(class_names):
        chosen = np.flatnonzero(y == r)[:per_class]
        for c in range(per_class):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < len(chosen):
                img = pixels[chosen[c]]
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0)
        axes[r, 0].text(
            -0.1, 0.5, str(name), transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9
        )
    _save(fig, path)


def plot_compare_curves(
    labels: Sequence[str], runs: Sequence[Sequence[Mapping[str, Any]]], path: str | os.PathLike[str]
) -> None:
    """Several runs' learning curves overlaid (``dltrain runs compare``): one colour per run, training
    solid and validation dashed, one panel per metric any of them recorded."""
    panels = []
    for title, keys in METRIC_PANELS:
        if any(np.isfinite(_column(rows, key)).any() for rows in runs for key in keys):
            panels.append((title, keys))
    fig, axes = _panel_row(len(panels), (5.5, 4.2), "no metrics recorded")
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for ax, (title, keys) in zip(axes, panels, strict=False):
        for label, rows, colour in zip(labels, runs, colours, strict=True):
            epochs = _column(rows, "epoch")
            if not np.isfinite(epochs).all():
                epochs = np.arange(1, len(rows) + 1, dtype=np.float64)
            for key in keys:
                values = _column(rows, key)
                ok = np.isfinite(values)
                if ok.any():
                    style = "--" if key.startswith("val_") else "-"
                    ax.plot(
                        epochs[ok],
                        values[ok],
                        style,
                        color=colour,
                        marker="o",
                        markersize=3,
                        label=f"{label} {key}",
                    )
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    _save(fig, path)
