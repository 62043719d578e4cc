"""Shared by the bench's runner scripts: the data file, process CPU time and the per-epoch log.

Deliberately free of dltrain imports: the plain runners are what a user would write without dltrain.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    times = os.times()
    return times.user + times.system


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test as stored (uint8 images, integer labels)."""
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


@dataclass
class EpochRecord:
    epoch: int
    seconds: float  # wall time of the epoch's training
    cpu_seconds: float  # process CPU time of the epoch's training
    loss: float
    accuracy: float
    test_accuracy: float | None = None  # when the run scores the test set after every epoch
    test_cpu_seconds: float | None = None  # ... and what that scoring cost (not in cpu_seconds)


@dataclass
class RunLog:
    runner: str
    parameters: int
    train_images: int
    batch_size: int
    versions: dict[str, str]
    setup_cpu_seconds: float = 0.0  # start-up, imports, data and model, before the first epoch
    epochs: list[EpochRecord] = field(default_factory=list)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))


def read_log(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
