"""The learning-rate range test on a fresh model, through the same strategy and train step as ``fit`` (the
lr-find command's and fit's ``learning_rate: auto``; ``train.fit.lr_find`` writes it into a run directory).

Exponential sweep from ``lr_find.start_lr`` to ``lr_find.end_lr``, one optimizer step per learning rate,
loss smoothed (EMA with bias correction), stopped when it diverges; the maths is ``dltrain.lrfind.maths``.
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np

from dltrain.config import Config
from dltrain.data import Splits
from dltrain.errors import Interrupted
from dltrain.lrfind import maths as lr_range
from dltrain.lrfind.result import LrFindResult
from dltrain.testing import faults
from dltrain.train.runtime import Runtime
from dltrain.train.signals import StopRequest
from dltrain.train.step import TrainStep

log = logging.getLogger(__name__)


def run_lr_find(
    cfg: Config,
    splits: Splits,
    runtime: Runtime,
    *,
    initial: keras.Model | None = None,
    stop: StopRequest | None = None,
    resume_hint: str = "",
) -> LrFindResult:
    """Sweep the learning rate on a fresh model and suggest one.

    The sweep is ``lr_find.num_steps`` optimizer steps; when an epoch is shorter, it goes on into the next
    epoch's (re-shuffled) batches, as fast.ai does, so a small dataset still gets a full curve.

    Args:
        initial: start from this model's weights (fit's, with ``learning_rate: auto``); else a model built
            from the seed, which has the same initial weights.
        stop: Ctrl-C / SIGTERM end the sweep between steps with ``Interrupted`` (exit 130 / 143).
        resume_hint: added to the interruption's message (how to continue).
    """
    opts = cfg.lr_find
    keras.utils.set_random_seed(cfg.seed)
    trainer = TrainStep(cfg, splits, runtime, opts.start_lr)
    if initial is not None:
        trainer.copy_weights_from(initial)
    if trainer.backbone and cfg.train.freeze_epochs and not opts.unfrozen:
        from dltrain.train.finetune import frozen_groups

        trainer.set_groups(frozen_groups(trainer))  # fast.ai's lr_find on the frozen model
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
    planted = faults.active()
    for lr in lrs_planned:
        if stop is not None and stop.requested:
            raise Interrupted(f"stopped by {stop.name} during lr-find.{resume_hint}", stop.exit_code)
        if done_in_epoch == steps_per_epoch:
            epoch, done_in_epoch = epoch + 1, 0
            iterator = trainer.train_iterator(epoch)
        trainer.set_learning_rate(float(lr))
        loss_sum, _, count = trainer.run_steps(iterator, 1)
        done_in_epoch += 1
        faults.fire_in_lr_find(planted, len(lrs) + 1)
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
