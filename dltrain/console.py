"""Terminal output: results to stdout, logs and progress to stderr (Rich on a terminal, plain lines otherwise)."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stdout = Console()
stderr = Console(stderr=True)


def result_line(text: str) -> None:
    """A result line on stdout, never wrapped (paths stay copyable)."""
    sys.stdout.write(text + "\n")


def escape(text: str) -> str:
    """Text shown through Rich markup as it is (a path with [brackets] stays a path)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def warn(text: str) -> None:
    stderr.print(f"[yellow]warning:[/] {escape(text)}")


def error(text: str) -> None:
    stderr.print(f"[bold red]error:[/] {escape(text)}", highlight=False, markup=True, soft_wrap=True)


def setup_logging(verbose: bool = False) -> None:
    """Configure logging once: Rich on a terminal, plain lines when stderr is a file or pipe."""
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if stderr.is_terminal:
        handler = RichHandler(console=stderr, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("dltrain").setLevel(level)
    # TensorFlow's C++ start-up chatter hides the lines that matter; the user can still set it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class EpochProgress:
    """A progress bar over the steps of one epoch (steps, loss, examples/s, ETA); silent off a terminal."""

    def __init__(self, epoch: int, epochs: int, steps: int, batch_size: int) -> None:
        self.enabled = stderr.is_terminal
        self.batch_size = batch_size
        self.start = time.monotonic()
        self._progress: Progress | None = None
        if self.enabled:
            self._progress = Progress(
                TextColumn(f"epoch {epoch}/{epochs}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("{task.fields[rate]:.0f} ex/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr,
                transient=True,
            )
            self._task = self._progress.add_task("train", total=steps, loss=float("nan"), rate=0.0)
            self._progress.start()

    def update(self, done: int, loss: float) -> None:
        if self._progress is None:
            return
        elapsed = max(time.monotonic() - self.start, 1e-9)
        self._progress.update(self._task, completed=done, loss=loss, rate=done * self.batch_size / elapsed)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    for key in ("loss", "accuracy", "mae", "val_loss", "val_accuracy", "val_mae"):
        value = row.get(key)
        if isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
    parts.append(f"lr {row.get('learning_rate', float('nan')):.3g}")
    parts.append(f"{row.get('seconds', 0.0):.1f}s")
    return "  ".join(parts)
