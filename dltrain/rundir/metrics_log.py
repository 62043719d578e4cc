"""``metrics.csv``: one row per epoch, appended and fsynced; and reading it back."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from dltrain.errors import RunDirError
from dltrain.fsutil import atomic_write_text


class MetricsLog:
    """``metrics.csv``: one row per epoch, appended and fsynced, so a crash never loses a finished epoch."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        if not path.exists():
            atomic_write_text(path, ",".join(columns) + "\n")

    def keep_epochs_up_to(self, epoch: int) -> None:
        """Drop rows after ``epoch`` (epochs a killed run finished but never checkpointed; they are redone)."""
        read_metrics(self.path)  # a corrupt file is exit 5 naming it, before anything is rewritten
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        if not lines:
            return
        header, rows = lines[0], lines[1:]
        kept = []
        for line in rows:
            first = line.split(",", 1)[0].strip()
            if not line.strip() or not first.isdigit():
                continue  # a torn last line from a kill mid-write
            if int(first) <= epoch:
                kept.append(line if line.endswith("\n") else line + "\n")
        if len(kept) != len(rows):
            atomic_write_text(self.path, header + "".join(kept))

    def append(self, row: dict[str, Any]) -> None:
        cells = []
        for col in self.columns:
            value = row.get(col, "")
            if isinstance(value, float):
                value = "nan" if math.isnan(value) else f"{value:.8g}"
            cells.append(str(value))
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(",".join(cells) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics.csv as floats (empty cells are left out)."""
    if not path.exists():
        return []
    rows = []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunDirError(
            f"{path}: corrupt (not text at byte {exc.start}). Restore it, or move it aside to resume without "
            "the earlier epochs' rows."
        ) from None
    except OSError as exc:
        raise RunDirError(f"{path}: unreadable ({exc.strerror or exc}).") from None
    if "\x00" in text:
        raise RunDirError(f"{path}: corrupt (it holds NUL bytes). Restore it, or move it aside to resume.")
    for raw in csv.DictReader(io.StringIO(text, newline="")):
        row: dict[str, float] = {}
        for key, value in raw.items():
            if key is None or value in (None, ""):
                continue
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        rows.append(row)
    return rows
