"""dltrain's own handlers of the loop's events, and their order (docs/architecture.md, "The loop and its events").

The order matters at an epoch's end: the guard refuses a non-finite loss before anything is written; the
metrics row goes before the checkpoint (a kill between them costs a redone epoch, never a missing row); the best
score and the early-stopping counters change before the checkpoint that saves them; the log line comes last.
A test fault (``dltrain.testing.faults``) goes right after the guard; users' callbacks after all of these.
"""

from __future__ import annotations

from pathlib import Path

from dltrain.config import Config
from dltrain.train.events import Handler
from dltrain.train.handlers.best import BestModel
from dltrain.train.handlers.checkpointing import Checkpointing
from dltrain.train.handlers.early_stopping import EarlyStopping
from dltrain.train.handlers.guard import NonFiniteGuard
from dltrain.train.handlers.metrics_csv import MetricsCsv
from dltrain.train.handlers.progress import Progress
from dltrain.train.handlers.pruning import SweepPruning
from dltrain.train.handlers.pruning import from_env as sweep_pruning_from_env
from dltrain.train.handlers.tensorboard import TensorBoard
from dltrain.train.step import TrainStep


def standard_handlers(cfg: Config, step: TrainStep, run_dir: Path, columns: list[str]) -> list[Handler]:
    """The handlers every fit runs, in order."""
    strategy = step.strategy
    handlers: list[Handler] = [
        NonFiniteGuard(),
        MetricsCsv(run_dir, columns),
        BestModel(cfg.train.monitor, strategy),
    ]
    if cfg.train.early_stopping is not None:
        handlers.append(EarlyStopping(cfg.train.early_stopping, strategy))
    pruning = sweep_pruning_from_env()  # a `dltrain sweep` trial: report epochs, stop when pruned
    if pruning is not None:
        handlers.append(pruning)
    handlers += [
        Checkpointing(cfg.train.checkpoint_every_steps),
        TensorBoard(run_dir, step.splits.metric),
        Progress(cfg.data.batch_size),
    ]
    return handlers


__all__ = [
    "BestModel",
    "Checkpointing",
    "EarlyStopping",
    "MetricsCsv",
    "NonFiniteGuard",
    "Progress",
    "SweepPruning",
    "TensorBoard",
    "standard_handlers",
]
