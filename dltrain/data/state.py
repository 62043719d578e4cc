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
from dltrain.errors import DataError
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


def check_same_data(recorded: dict[str, Any], splits: Splits, names: list[str], run_dir: Path) -> list[str]:
    """Check that ``splits`` hold the examples a run was trained on (run.json ``data``), split by split.

    Returns warnings (image files whose modification times changed, e.g. after a copy or a fresh checkout, but
    which are the same files of the same sizes in the same splits).

    Raises:
        DataError: a split holds other examples than the run's (exit 3).
    """
    strict = recorded.get("fingerprints") or {}
    loose = recorded.get("file_fingerprints") or {}
    warnings: list[str] = []
    for name in names:
        if name not in strict or strict[name] == splits.fingerprint(name):
            continue
        if splits.input_kind == "image_files":
            if name in loose and loose[name] == splits.fingerprint(name, mtimes=False):
                warnings.append(
                    f"the {name} files' modification times changed since fit (same files and sizes)"
                )
                continue
            if name not in loose and _same_manifest(run_dir, splits, name):
                warnings.append(
                    f"the {name} files' modification times changed since fit (same files per data/manifest.csv)"
                )
                continue
        raise DataError(
            f"the {name} split of {splits.source} is not the one this run was trained on (fingerprint "
            f"{splits.fingerprint(name)} != {strict[name]}); restore the original data or start a new run."
        )
    return warnings


def _same_manifest(run_dir: Path, splits: Splits, name: str) -> bool:
    """A run from before ``file_fingerprints``: its manifest lists the same files for ``name``."""
    path = run_dir / "data" / "manifest.csv"
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            listed = [row["item"] for row in csv.DictReader(fh) if row.get("split") == name]
    except (OSError, KeyError, UnicodeDecodeError, csv.Error):
        return False
    return bool(listed) and listed == list(splits.manifest.get(name, []))
