"""Checks of a config against its data that run before the run directory exists (light: no TensorFlow).

A mistake only the data reveals (a monitor the task does not report, a validation metric without a validation
split) is exit 2 with nothing left behind. The checks that need TensorFlow (building the model: a CNN on a
table; importing users' callbacks) run after these and still before the directory is made: see
``dltrain.train.fit.prepare``.
"""

from __future__ import annotations

from dltrain.config import Config
from dltrain.data import Splits
from dltrain.errors import ConfigError


def check_fit(cfg: Config, splits: Splits) -> None:
    """Raise ``ConfigError`` (exit 2) when ``cfg`` cannot train on ``splits``."""
    metric = splits.metric
    es = cfg.train.early_stopping
    for key, monitor in (
        ("train.monitor", cfg.train.monitor),
        ("train.early_stopping.monitor", es and es.monitor),
    ):
        if monitor and monitor.removeprefix("val_") not in ("loss", metric):
            raise ConfigError(
                f"`{key}` is {monitor} but a {splits.task} reports loss and {metric}; "
                f"set it to val_loss or val_{metric}."
            )
    has_validation = splits.x_val is not None
    if cfg.train.monitor.startswith("val_") and not has_validation:
        raise ConfigError(
            f"`train.monitor` is {cfg.train.monitor} but there is no validation split; "
            "set data.validation_split above 0 or train.monitor to loss/accuracy."
        )
    if es is not None and es.monitor.startswith("val_") and not has_validation:
        raise ConfigError(
            f"`train.early_stopping.monitor` is {es.monitor} but there is no validation split; "
            "set data.validation_split above 0."
        )
    if (cfg.train.freeze_epochs or cfg.optimizer.backbone_lr_factor != 1.0) and cfg.model.kind not in (
        "cnn",
        "pretrained",
    ):
        raise ConfigError(
            f"`train.freeze_epochs` / `optimizer.backbone_lr_factor` need a model with a backbone (cnn or "
            f"pretrained); model.kind is {cfg.model.kind}. Remove them or change model.kind."
        )
