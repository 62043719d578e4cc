"""Prediction rows and where they go: CSV or JSON, to stdout or atomically to a file. Light: NumPy only.

One row per input: ``id`` (the file, or ``line N`` of a CSV), the predicted class and its probability, and the next
``top_k - 1`` classes with theirs; a regression gives the predicted value(s) in the targets' original units. With
labels (``--labelled``) a row also has ``true`` (and ``correct`` for classes). ``rows`` builds the rows that
``PredictionWriter`` writes, and that ``dltrain.load_run(...).predict`` returns.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from dltrain.errors import ConfigError, RunDirError
from dltrain.fsutil import fsync_dir

FORMATS = ("csv", "json")


@dataclass
class OutputSpec:
    """What the model's outputs mean: class probabilities (``class_names``) or values (``target_names``)."""

    task: str
    class_names: list[str] = field(default_factory=list)
    target_names: list[str] = field(default_factory=list)
    top_k: int = 1

    @property
    def k(self) -> int:
        return max(1, min(self.top_k, len(self.class_names))) if self.class_names else 0

    def columns(self, labelled: bool) -> list[str]:
        if self.task == "regression":
            values = (
                ["predicted"]
                if len(self.target_names) <= 1
                else [f"predicted_{n}" for n in self.target_names]
            )
            truth = [] if not labelled else (["true"] if len(self.target_names) <= 1 else [])
            return ["id", *values, *truth]
        extra = [c for i in range(2, self.k + 1) for c in (f"top{i}", f"top{i}_probability")]
        return ["id", "predicted", "probability", *extra, *(["true", "correct"] if labelled else [])]


def rows(
    spec: OutputSpec, ids: Sequence[str], outputs: np.ndarray, truths: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """The rows of one batch, as JSON holds them (``top_k`` a list of {class, probability})."""
    outputs = np.asarray(outputs, dtype=np.float64)
    out: list[dict[str, Any]] = []
    if spec.task == "regression":
        flat = outputs.reshape(len(ids), -1)
        for i, ident in enumerate(ids):
            values = [float(v) for v in flat[i]]
            row: dict[str, Any] = {"id": ident, "predicted": values[0] if len(values) == 1 else values}
            if len(values) > 1 and spec.target_names:
                row["predicted"] = dict(zip(spec.target_names, values, strict=False))
            if truths is not None:
                row["true"] = truths[i]
            out.append(row)
        return out
    order = np.argsort(-outputs, axis=1, kind="stable")[:, : spec.k]
    for i, ident in enumerate(ids):
        top = [{"class": spec.class_names[int(c)], "probability": float(outputs[i, c])} for c in order[i]]
        row = {"id": ident, "predicted": top[0]["class"], "probability": top[0]["probability"], "top_k": top}
        if truths is not None:
            row["true"] = truths[i]
            row["correct"] = truths[i] == top[0]["class"]
        out.append(row)
    return out


def _flat(spec: OutputSpec, row: dict[str, Any]) -> dict[str, Any]:
    """A JSON row as one CSV line."""
    flat: dict[str, Any] = {"id": row["id"]}
    if spec.task == "regression":
        pred = row["predicted"]
        if isinstance(pred, dict):
            flat.update({f"predicted_{k}": v for k, v in pred.items()})
        elif isinstance(pred, list):
            flat.update({f"predicted_{n}": v for n, v in zip(spec.target_names, pred, strict=False)})
        else:
            flat["predicted"] = pred
    else:
        flat["predicted"], flat["probability"] = row["predicted"], row["probability"]
        for i, entry in enumerate(row["top_k"][1:], start=2):
            flat[f"top{i}"], flat[f"top{i}_probability"] = entry["class"], entry["probability"]
        if "correct" in row:
            flat["correct"] = int(bool(row["correct"]))
    if "true" in row:
        flat["true"] = row["true"]
    return {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in flat.items()}


def check_output(output: Path | None, fmt: str) -> None:
    """Before any work: the format is known and ``--output`` can be created (exit 2 / exit 5 naming it)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}. Received: {fmt!r}.")
    if output is None:
        return
    if output.is_dir():
        raise RunDirError(
            f"--output {output}: is a folder; give a file name, e.g. {output / 'predictions.csv'}."
        )
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise RunDirError(f"--output {output}: folder {parent} does not exist; create it first.")
    if not os.access(parent, os.W_OK | os.X_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise RunDirError(f"--output {output}: not writable by this user; choose another file.")


class PredictionWriter:
    """Streams rows as batches arrive: to stdout, or to a temporary file renamed to ``output`` by ``commit``.

    Use as a context manager: leaving it with an exception removes the temporary file, so a failed or
    interrupted prediction never leaves a partial file under the final name (nor replaces an older one).
    """

    def __init__(
        self, spec: OutputSpec, output: Path | None, fmt: str = "csv", labelled: bool = False
    ) -> None:
        check_output(output, fmt)
        self.spec, self.output, self.fmt, self.labelled = spec, output, fmt, labelled
        self.count = 0
        self.correct = 0
        self.abs_error = 0.0
        self._tmp: Path | None = None
        self._fh: TextIO
        if output is None:
            self._fh = sys.stdout
        else:
            self._tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
            try:
                self._fh = open(self._tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed in commit)
            except OSError as exc:
                raise RunDirError(f"--output {output}: cannot write ({exc.strerror}).") from None
        self._csv: Any = None
        if fmt == "csv":
            self._csv = csv.DictWriter(
                self._fh, fieldnames=spec.columns(labelled), lineterminator="\n", extrasaction="ignore"
            )
        # The CSV header (or JSON's "[") is written with the first rows, or by commit: a prediction that fails
        # before its first batch prints nothing on stdout (a header alone looked like an empty result).
        self._opened = False

    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        if self._csv is not None:
            self._csv.writeheader()
        else:
            self._fh.write("[")

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()

    def write(self, batch: list[dict[str, Any]]) -> None:
        self._open()
        for row in batch:
            if self.fmt == "csv":
                self._csv.writerow(_flat(self.spec, row))
            else:
                self._fh.write(("\n" if self.count == 0 else ",\n") + json.dumps(row))
            self.count += 1
            if "correct" in row:
                self.correct += int(bool(row["correct"]))
            elif "true" in row and isinstance(row["predicted"], float):
                self.abs_error += abs(row["predicted"] - float(row["true"]))
        if self.output is None:
            self._fh.flush()

    def commit(self) -> None:
        self._open()
        if self.fmt == "json":
            self._fh.write("\n]\n" if self.count else "]\n")
        if self._tmp is None or self.output is None:
            self._fh.flush()
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self._tmp, self.output)
            fsync_dir(self.output.parent)
        except OSError:
            self.abort()
            raise

    def abort(self) -> None:
        if self._tmp is None:
            return
        try:
            self._fh.close()
        except OSError:
            pass
        self._tmp.unlink(missing_ok=True)

    def summary(self) -> str:
        where = str(self.output) if self.output is not None else "stdout"
        text = f"{self.count} predictions written to {where}"
        if self.labelled and self.count:
            if self.spec.task == "regression":
                text += f"; MAE {self.abs_error / self.count:.4g} against the labels"
            else:
                text += f"; accuracy {self.correct / self.count:.4f} against the labels ({self.correct}/{self.count})"
        return text


def to_text(spec: OutputSpec, batch: list[dict[str, Any]], fmt: str = "csv", labelled: bool = False) -> str:
    """The rows as the CLI would print them (for tests and notebooks)."""
    buf = io.StringIO()
    if fmt == "json":
        return json.dumps(batch, indent=1)
    writer = csv.DictWriter(
        buf, fieldnames=spec.columns(labelled), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    for row in batch:
        writer.writerow(_flat(spec, row))
    return buf.getvalue()
