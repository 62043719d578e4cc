"""Plots write real PNG files, atomically, for ordinary and awkward inputs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dltrain.lrfind.maths import exponential_lrs, smooth_losses
from dltrain.report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path, min_bytes: int = 5_000) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes, len(data)
    # No temp file from the atomic write is left behind.
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_lr_find(tmp_path: Path) -> None:
    lrs = exponential_lrs(1e-7, 10, 100)
    x = np.log10(lrs)
    raw = 2.3 - 2 / (1 + np.exp(-2 * (x + 4))) + np.random.default_rng(0).normal(0, 0.05, 100)
    raw[-3:] = [math.nan, math.inf, math.nan]
    path = tmp_path / "lr_find" / "lr_find.png"  # the folder is created
    plots.plot_lr_find(lrs, raw, smooth_losses(raw), 3e-4, "valley", path)
    _assert_png(path)


def test_plot_lr_find_without_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "lr.png"
    plots.plot_lr_find([1e-5, 1e-4, 1e-3], [2.0, 1.0, 3.0], [2.0, 1.5, 2.0], None, "valley", path)
    _assert_png(path, 2_000)


def test_plot_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "lr.png"
    path.write_bytes(b"old")
    plots.plot_lr_find([1e-5, 1e-4, 1e-3], [2.0, 1.0, 3.0], [2.0, 1.5, 2.0], 1e-4, "steep", path)
    _assert_png(path, 2_000)


def test_plot_learning_curves_with_missing_and_nan(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"epoch": 1, "loss": 1.0, "val_loss": 1.2, "accuracy": 0.6, "learning_rate": 1e-3},
        {"epoch": 2, "loss": 0.6, "val_loss": math.nan, "accuracy": 0.7, "val_accuracy": 0.65},
        {"epoch": 3, "loss": "0.4", "val_loss": "", "learning_rate": 1e-4},  # cells as read from a CSV
    ]
    path = tmp_path / "plots" / "learning_curves.png"
    plots.plot_learning_curves(rows, path)
    _assert_png(path)
    three_panels = _png_size(path)

    only_loss = tmp_path / "only_loss.png"
    plots.plot_learning_curves([{"loss": 1.0}, {"loss": 0.5}], only_loss)
    _assert_png(only_loss)
    # One panel instead of three: a much narrower image.
    assert _png_size(only_loss)[0] < three_panels[0] / 2


def test_plot_learning_curves_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    plots.plot_learning_curves([], path)
    _assert_png(path, 1_000)


def test_plot_confusion_matrix(tmp_path: Path) -> None:
    cm = np.array([[50, 2, 0], [3, 40, 7], [0, 0, 0]])  # a class with no support must not divide by 0
    path = tmp_path / "eval" / "test" / "confusion_matrix.png"
    plots.plot_confusion_matrix(cm, ["cat", "dog", "bird"], path)
    _assert_png(path)


def test_plot_confusion_matrix_many_classes(tmp_path: Path) -> None:
    cm = np.random.default_rng(0).integers(0, 20, (40, 40))
    path = tmp_path / "cm40.png"
    plots.plot_confusion_matrix(cm, [f"class_{i}" for i in range(40)], path)
    _assert_png(path)


def test_plot_confusion_matrix_rejects() -> None:
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.ones((2, 3)), ["a", "b"], "unused.png")
    with pytest.raises(ValueError, match="names"):
        plots.plot_confusion_matrix(np.ones((2, 2)), ["a"], "unused.png")


@pytest.mark.parametrize("shape", [(6, 28, 28), (6, 28, 28, 1), (5, 16, 16, 3)])
def test_plot_top_losses(tmp_path: Path, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    n = shape[0]
    images = rng.random(shape)
    images[0, 0, 0] = 1.5  # out of range and NaN pixels are clipped, not an error
    images[0, 0, 1] = math.nan
    path = tmp_path / "top_losses.png"
    plots.plot_top_losses(
        images,
        [f"true{i}" for i in range(n)],
        [f"pred{i}" for i in range(n)],
        rng.random(n) * 5,
        rng.random(n),
        path,
        ncols=4,
    )
    _assert_png(path)


def test_plot_top_losses_rejects() -> None:
    images = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match="same length"):
        plots.plot_top_losses(images, ["a"], ["b", "c"], [1.0, 2.0], [0.1, 0.2], "unused.png")
    with pytest.raises(ValueError, match="shape"):
        plots.plot_top_losses(np.zeros((2, 8)), ["a", "b"], ["b", "c"], [1.0, 2.0], [0.1, 0.2], "unused.png")
    with pytest.raises(ValueError, match="ncols"):
        plots.plot_top_losses(images, ["a", "b"], ["b", "c"], [1.0, 2.0], [0.1, 0.2], "unused.png", ncols=0)


def test_plots_leave_no_pyplot_figures_open(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], tmp_path / "cm.png")
    assert plt.get_fignums() == before
