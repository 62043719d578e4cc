"""A learning-rate range test's result, and its files: steps.csv, suggestion.json, lr_find.png."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dltrain.fsutil import atomic_write_json, atomic_write_text
from dltrain.lrfind import maths as lr_range
from dltrain.report import plots


@dataclass
class LrFindResult:
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: lr_range.Suggestion
    stopped_early: bool
    steps_per_epoch: int
    planned_steps: int = 0
    beta: float = 0.0

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.suggestion.as_dict())
        out.update(
            {
                "points": int(len(self.lrs)),
                "stopped_on_divergence": self.stopped_early,
                "lr_range": [float(self.lrs[0]), float(self.lrs[-1])] if len(self.lrs) else [],
                "steps_per_epoch": self.steps_per_epoch,
                "planned_steps": self.planned_steps,
                "smoothing_beta": self.beta,
            }
        )
        return out


def write_lr_find(result: LrFindResult, out_dir: Path) -> None:
    """``steps.csv``, ``suggestion.json`` and ``lr_find.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", "lr", "loss", "smoothed_loss"])
    for i, (lr, loss, smooth) in enumerate(zip(result.lrs, result.losses, result.smoothed, strict=True)):
        writer.writerow([i, f"{lr:.8g}", f"{loss:.8g}", f"{smooth:.8g}"])
    atomic_write_text(out_dir / "steps.csv", buf.getvalue())
    atomic_write_json(out_dir / "suggestion.json", result.as_dict())
    plots.plot_lr_find(
        result.lrs,
        result.losses,
        result.smoothed,
        result.suggestion.lr,
        result.suggestion.rule,
        out_dir / "lr_find.png",
    )
