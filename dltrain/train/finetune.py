"""fast.ai's fine-tune as two phases of the loop: the head with the backbone frozen, then everything.

``train.freeze_epochs: N``: epochs 1..N train the head only (the backbone's layers are made non-trainable;
its batch norm runs in inference mode, or with ``train.frozen_batch_norm: train`` keeps training, fast.ai's
``train_bn``), then epochs N+1..N+train.epochs train head and backbone, the backbone at
``optimizer.backbone_lr_factor`` times the head's rate with an optimizer of its own whose state starts at the
unfreezing. Each phase has its own schedule table (one-cycle unless the config names another); the unfrozen
phase peaks at ``train.unfreeze_lr_factor`` times the frozen one's rate (fast.ai halves it).

The head's optimizer steps on every batch of both phases (its iterations are the run's global step); the
backbone's counts only its own steps, so Adam's bias correction (1 - beta ** t) starts again at t = 1 for the
backbone's fresh moments, as PyTorch's per-parameter step count does in fast.ai.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from dltrain.config import Config
from dltrain.models.transfer import leaf_layers
from dltrain.train.events import Phase
from dltrain.train.optimizers import lr_table
from dltrain.train.step import OptimizerGroup, TrainStep, fine_tunes


def _set_backbone_trainable(step: TrainStep, trainable: bool, keep_batch_norm: bool = False) -> None:
    for layer in leaf_layers(step.backbone):
        layer.trainable = trainable or (
            keep_batch_norm and isinstance(layer, keras.layers.BatchNormalization)
        )


def frozen_groups(step: TrainStep) -> Sequence[OptimizerGroup]:
    """The head alone (and the backbone's batch-norm scale/offset with ``frozen_batch_norm: train``)."""
    train_bn = step.cfg.train.frozen_batch_norm == "train"
    _set_backbone_trainable(step, False, keep_batch_norm=train_bn)
    head = step.all_groups[0]
    extra = list(step.backbone_bn_variables) if train_bn else []
    return [OptimizerGroup("head", head.optimizer, list(step.head_variables) + extra)]


def unfrozen_groups(step: TrainStep) -> Sequence[OptimizerGroup]:
    _set_backbone_trainable(step, True)
    return list(step.all_groups)


def phases(cfg: Config) -> list[Phase]:
    """The run's phases: one (every variable, one optimizer), or frozen then unfrozen."""
    frozen = cfg.train.freeze_epochs
    if not fine_tunes(cfg):
        return [Phase("train", 1, cfg.train.epochs)]
    out = [Phase("frozen", 1, frozen, frozen_groups)] if frozen else []
    out.append(Phase("unfrozen", frozen + 1, frozen + cfg.train.epochs, unfrozen_groups))
    return out


def lr_tables(
    cfg: Config, learning_rate: float, steps_per_epoch: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The head's rate at every global step (one schedule per phase, end to end) and the backbone's at each of
    its own steps (None without fine-tuning)."""
    epochs = cfg.train.epochs
    if not fine_tunes(cfg):
        return lr_table(cfg.schedule, learning_rate, steps_per_epoch * epochs, steps_per_epoch), None
    frozen = cfg.train.freeze_epochs
    parts = []
    peak = learning_rate
    if frozen:
        parts.append(lr_table(cfg.schedule, learning_rate, steps_per_epoch * frozen, steps_per_epoch))
        peak = learning_rate * cfg.train.unfreeze_lr_factor
    unfrozen = lr_table(cfg.schedule, peak, steps_per_epoch * epochs, steps_per_epoch)
    parts.append(unfrozen)
    return np.concatenate(parts), unfrozen * cfg.optimizer.backbone_lr_factor
