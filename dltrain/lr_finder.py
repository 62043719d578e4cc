"""The learning-rate range test on a fresh model, through the same strategy and train step as ``fit``.

Exponential sweep from ``lr_find.start_lr`` to ``lr_find.end_lr``, one optimizer step per learning rate,
loss smoothed (EMA with bias correction), stopped when it diverges; the maths is ``dltrain.lr_range``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from dltrain import lr_range, plots
from dltrain.config import Config
from dltrain.data import Splits
from dltrain.fsutil import atomic_write_json, atomic_write_text
from dltrain.runtime import Runtime
from dltrain.trainer import Trainer

log = logging.getLogger(__name__)


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


def run_lr_find(cfg: Config, splits: Splits, runtime: Runtime) -> LrFindResult:
    """Sweep the learning rate on a fresh model and suggest one.

    The sweep is ``lr_find.num_steps`` optimizer steps; when an epoch is shorter, it goes on into the next
    epoch's (re-shuffled) batches, as fast.ai does, so a small dataset still gets a full curve.
    """
    opts = cfg.lr_find
    keras.utils.set_random_seed(cfg.seed)
    trainer = Trainer(cfg, splits, runtime, opts.start_lr)
    num_steps = lr_range.sweep_steps(opts.num_steps, trainer.train_data.steps)
    lrs_planned = lr_range.exponential_lrs(opts.start_lr, opts.end_lr, num_steps)
    smoother = lr_range.LossSmoother(lr_range.scaled_beta(opts.beta, num_steps))
    tracker = lr_range.DivergenceTracker(opts.diverge_factor)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    steps_per_epoch = trainer.train_data.steps
    epoch, done_in_epoch = 0, 0
    iterator = trainer.train_iterator(epoch)
    stopped = False
    for lr in lrs_planned:
        if done_in_epoch == steps_per_epoch:
            epoch, done_in_epoch = epoch + 1, 0
            iterator = trainer.train_iterator(epoch)
        trainer.optimizer.learning_rate = float(lr)
        loss_sum, _, count = trainer.run_steps(iterator, 1)
        done_in_epoch += 1
        loss = loss_sum / count if count else math.nan
        lrs.append(float(lr))
        losses.append(loss)
        smooth = smoother.update(loss) if math.isfinite(loss) else math.nan
        smoothed.append(smooth)
        if tracker.update(smooth):
            stopped = True
            break
    lr_arr, loss_arr, smooth_arr = np.array(lrs), np.array(losses), np.array(smoothed)
    suggestion = lr_range.suggest(lr_arr, smooth_arr, opts.rule, raw_losses=loss_arr)
    return LrFindResult(
        lr_arr, loss_arr, smooth_arr, suggestion, stopped, steps_per_epoch, num_steps, smoother.beta
    )


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
