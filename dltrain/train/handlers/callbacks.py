"""Users' callbacks from ``train.callbacks``: a dltrain ``Handler`` subclass, or a Keras callback that works in a
custom loop, adapted to the loop's events.

The config names each by ``class: "package.module:ClassName"`` (the other keys are its keyword arguments); the
syntax is checked with the config (no import then), the class is imported here, after TensorFlow starts and
before the run directory is made, so a bad class is exit 2 with nothing left behind. Their own state is not
in the checkpoint: a resumed run starts them afresh (dltrain's own handlers resume exactly).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import keras

from dltrain.errors import ConfigError
from dltrain.train.events import Handler, TrainingLoop

# Keras callbacks that assume Keras's own fit loop, optimizer or checkpoints, with why (exit 2 when named).
REFUSED: dict[str, str] = {
    "ReduceLROnPlateau": "it sets the optimizer's learning rate, which dltrain takes from its schedule table "
    "(schedule.kind); use schedule step/cosine/one_cycle",
    "LearningRateScheduler": "dltrain's learning rate comes from schedule.kind (a table per step); set the schedule "
    "in the config instead",
    "ModelCheckpoint": "dltrain checkpoints every epoch (atomically, resumable) and keeps the best model as "
    "model.keras; set train.keep_checkpoints / train.checkpoint_every_steps",
    "BackupAndRestore": "dltrain fit --resume already continues a killed run exactly",
    "TensorBoard": "dltrain writes TensorBoard scalars to RUN/events already (tensorboard --logdir runs)",
    "ProgbarLogger": "dltrain shows its own progress bar",
    "SwapEMAWeights": "it needs Keras's optimizer EMA, which dltrain's optimizers do not keep",
}
SUPPORTED_KERAS = ("CSVLogger", "EarlyStopping", "LambdaCallback", "TerminateOnNaN", "RemoteMonitor")


class KerasCallback(Handler):
    """A ``keras.callbacks.Callback`` driven by the loop: it sees the usual ``logs`` (loss, accuracy or mae,
    val_*, learning_rate), batch events once per chunk, and can stop the run with ``model.stop_training``."""

    def __init__(self, callback: keras.callbacks.Callback) -> None:
        self.callback = callback
        self.name = type(callback).__name__

    def on_train_begin(self, loop: TrainingLoop) -> None:
        model = loop.step.model
        model.stop_training = False
        self.callback.set_model(model)
        self.callback.set_params({"epochs": loop.epochs, "steps": loop.steps_per_epoch, "verbose": 0})
        self.callback.on_train_begin(logs={})

    def on_epoch_begin(self, loop: TrainingLoop, epoch: int) -> None:
        self.callback.on_epoch_begin(epoch - 1, logs={})

    def on_chunk_end(self, loop: TrainingLoop, epoch: int, done: int, logs: dict[str, float]) -> None:
        metric = loop.metric
        self.callback.on_train_batch_end(done - 1, logs={"loss": logs["loss"], metric: logs[metric]})
        self._stop_if_asked(loop)

    def on_epoch_end(self, loop: TrainingLoop, epoch: int, logs: dict[str, Any]) -> None:
        keys = ("loss", loop.metric, "val_loss", f"val_{loop.metric}", "learning_rate")
        self.callback.on_epoch_end(epoch - 1, logs={k: float(logs[k]) for k in keys if k in logs})
        self._stop_if_asked(loop)

    def on_train_end(self, loop: TrainingLoop, result: Any) -> None:
        self.callback.on_train_end(logs={})

    def _stop_if_asked(self, loop: TrainingLoop) -> None:
        if getattr(loop.step.model, "stop_training", False):
            loop.request_stop(f"{self.name} set model.stop_training")


def _import(spec: dict[str, Any], where: str) -> type:
    module_name, _, class_name = str(spec["class"]).partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own error while importing
        raise ConfigError(
            f"`{where}.class`: cannot import {module_name} ({type(exc).__name__}: {str(exc)[:160]}). "
            "Check the module path, and that the package is installed or on PYTHONPATH."
        ) from None
    found = getattr(module, class_name, None)
    if not isinstance(found, type):
        raise ConfigError(f"`{where}.class`: {module_name} has no class {class_name}.")
    return found


def load_callbacks(specs: Sequence[dict[str, Any]]) -> list[Handler]:
    """Import and build each ``train.callbacks`` entry.

    Raises:
        ConfigError: a class that cannot be imported, is of no supported kind, is refused (with why), or does not
            accept its arguments (exit 2).
    """
    handlers: list[Handler] = []
    for i, spec in enumerate(specs):
        where = f"train.callbacks[{i}]"
        cls = _import(spec, where)
        kwargs = {k: v for k, v in spec.items() if k != "class"}
        if issubclass(cls, keras.callbacks.Callback):
            refused = next((why for name, why in REFUSED.items() if _is_keras(cls, name)), None)
            if refused:
                raise ConfigError(
                    f"`{where}.class`: {cls.__name__} does not work in dltrain's training loop: {refused}. "
                    f"Supported Keras callbacks: {', '.join(SUPPORTED_KERAS)}, and your own "
                    "keras.callbacks.Callback subclasses."
                )
        elif not issubclass(cls, Handler):
            raise ConfigError(
                f"`{where}.class`: {spec['class']} is neither a keras.callbacks.Callback nor a "
                "dltrain.train.events.Handler subclass."
            )
        try:
            made = cls(**kwargs)
        except Exception as exc:  # a TypeError for unknown keywords, or the class's own check
            raise ConfigError(
                f"`{where}`: {cls.__name__}({', '.join(kwargs)}) failed: {type(exc).__name__}: {str(exc)[:160]}."
            ) from None
        handlers.append(KerasCallback(made) if isinstance(made, keras.callbacks.Callback) else made)
    return handlers


def _is_keras(cls: type, name: str) -> bool:
    """``cls`` is Keras's callback ``name`` or a subclass of it."""
    keras_cls = getattr(keras.callbacks, name, None)
    return isinstance(keras_cls, type) and issubclass(cls, keras_cls)
