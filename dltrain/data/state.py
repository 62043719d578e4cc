"""``run_dir/data/``: what fit learned about the data (task, classes, transform statistics, vocabulary) and
which example went to which split, so a later evaluate or predict applies exactly the same."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.data.splits import SPLITS, Splits
from dltrain.fsutil import atomic_write_text


def write_data_files(run_dir: Path, splits: Splits, stem: dict[str, Any] | None = None) -> None:
    """``run_dir/data/``: the split manifest (which file or row went where), the transforms' statistics and
    state computed on the training split (standardisation, categories, vocabulary), so a later evaluate or
    predict applies exactly what fit learned."""
    out = run_dir / "data"
    out.mkdir(parents=True, exist_ok=True)
    stem = dict(stem if stem is not None else splits.stem)
    vocabulary = stem.get("text", {}).get("vocabulary")
    if vocabulary is not None:
        atomic_write_text(out / "vocabulary.txt", "".join(f"{token}\n" for token in vocabulary))
        stem["text"] = {k: v for k, v in stem["text"].items() if k != "vocabulary"}
        stem["text"]["vocabulary_file"] = "data/vocabulary.txt"
    state: dict[str, Any] = {"task": splits.task, "class_names": splits.class_names, "stem": stem}
    if splits.task == "regression":
        state["targets"] = {
            "names": splits.target_names,
            "mean": np.asarray(splits.target_mean).tolist(),
            "std": np.asarray(splits.target_std).tolist(),
            "computed_on": "train",
        }
    state.update(splits.state)
    atomic_write_text(out / "state.json", json.dumps(state, indent=2, default=_jsonable) + "\n")
    if splits.manifest:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["split", "item"])
        for split in SPLITS:
            for item in splits.manifest.get(split, []):
                writer.writerow([split, item])
        atomic_write_text(out / "manifest.csv", buf.getvalue())


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
