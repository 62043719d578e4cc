"""``dltrain data inspect``: look at the data before training (light zone: never imports TensorFlow).

Examples per class per split, shapes and value ranges, a grid of sample images per class, and the examples
that appear in two splits (the same file, or identical content by hash), which would make held-out scores
dishonest. Everything goes into a run directory ``<name>-inspect-<stamp>/`` and a summary to stdout.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.config import Config, to_yaml
from dltrain.data.images import display_images
from dltrain.data.splits import SPLITS, Splits
from dltrain.fsutil import atomic_write_json, atomic_write_text
from dltrain.report import plots
from dltrain.rundir import create_run_dir, write_config

SAMPLES_PER_CLASS = 8


@dataclass
class InspectReport:
    run_dir: Path
    summary: dict[str, Any]
    duplicates: list[dict[str, Any]] = field(default_factory=list)


def _present(splits: Splits) -> list[str]:
    return [s for s in SPLITS if splits.sizes()[s]]


def _item(splits: Splits, split: str, i: int) -> str:
    items = splits.manifest.get(split)
    return items[i] if items is not None and i < len(items) else f"{split}[{i}]"


def example_hashes(splits: Splits, split: str) -> list[str]:
    """A content hash per example: file bytes for image files, the text, or the raw input values."""
    x, _ = splits.get(split)
    out = []
    if splits.input_kind == "image_files":
        for path in x:
            digest = hashlib.sha256()
            with open(str(path), "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            out.append(digest.hexdigest())
    elif x.dtype.kind in ("U", "S", "O"):
        out = [hashlib.sha256(str(t).encode("utf-8", "surrogatepass")).hexdigest() for t in x]
    else:
        flat = np.ascontiguousarray(x.reshape(len(x), -1))
        out = [hashlib.sha256(row.tobytes()).hexdigest() for row in flat]
    return out


def cross_split_duplicates(splits: Splits) -> list[dict[str, Any]]:
    """Groups of examples with identical content found in more than one split."""
    where: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for split in _present(splits):
        for i, digest in enumerate(example_hashes(splits, split)):
            where[digest].append((split, i))
    groups = []
    for digest, places in where.items():
        if len({split for split, _ in places}) < 2:
            continue
        items = [_item(splits, split, i) for split, i in places]
        same_file = splits.input_kind == "image_files" and len({os.path.realpath(p) for p in items}) < len(
            items
        )
        groups.append(
            {
                "hash": digest[:16],
                "kind": "same file" if same_file else "identical content",
                "places": [
                    {"split": s, "index": i, "item": it} for (s, i), it in zip(places, items, strict=True)
                ],
            }
        )
    return groups


def _value_stats(splits: Splits, split: str) -> dict[str, Any]:
    x, _ = splits.get(split)
    if splits.input_kind == "image_files":
        sizes = [os.path.getsize(str(p)) for p in x]
        return {"files": len(x), "bytes_min": int(min(sizes)), "bytes_max": int(max(sizes))}
    if x.dtype.kind in ("U", "S", "O"):
        words = np.array([len(str(t).split()) for t in x])
        return {
            "words_min": int(words.min()),
            "words_median": float(np.median(words)),
            "words_max": int(words.max()),
        }
    xf = x.astype(np.float64)
    return {"min": float(xf.min()), "max": float(xf.max()), "mean": float(xf.mean()), "std": float(xf.std())}


def _target_stats(splits: Splits, split: str) -> dict[str, Any]:
    _, y = splits.get(split)
    if splits.task == "regression":
        return {
            name: {
                "min": float(col.min()),
                "max": float(col.max()),
                "mean": float(col.mean()),
                "std": float(col.std()),
            }
            for name, col in zip(splits.target_names, y.reshape(len(y), -1).T, strict=True)
        }
    counts = np.bincount(y, minlength=splits.num_classes)
    return {name: int(n) for name, n in zip(splits.class_names, counts, strict=True)}


def inspect_data(cfg: Config, splits: Splits, runs_root: Path) -> InspectReport:
    run_dir = create_run_dir(runs_root, cfg.name, suffix="inspect")
    write_config(run_dir, to_yaml(cfg))
    summary: dict[str, Any] = {
        "source": splits.source,
        "task": splits.task,
        "input_kind": splits.input_kind,
        "input_shape": list(splits.input_shape),
        "dtype": str(splits.x_train.dtype),
        "sizes": splits.sizes(),
        "notes": splits.notes,
        "splits": {
            split: {"inputs": _value_stats(splits, split), "targets": _target_stats(splits, split)}
            for split in _present(splits)
        },
    }
    duplicates = cross_split_duplicates(splits)
    summary["cross_split_duplicates"] = len(duplicates)
    atomic_write_json(run_dir / "inspect.json", summary)
    _write_counts(run_dir / "counts.csv", splits)
    _write_duplicates(run_dir / "duplicates.csv", duplicates)
    if splits.task != "regression":
        _, y = splits.get("train")
        chosen = np.concatenate(
            [np.flatnonzero(y == c)[:SAMPLES_PER_CLASS] for c in range(splits.num_classes)]
        ).astype(np.int64)
        images = display_images(splits, "train", chosen) if len(chosen) else None
        if images is not None:
            plots.plot_samples_per_class(
                images, y[chosen], splits.class_names, run_dir / "samples.png", SAMPLES_PER_CLASS
            )
    return InspectReport(run_dir, summary, duplicates)


def _write_counts(path: Path, splits: Splits) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    present = _present(splits)
    if splits.task == "regression":
        writer.writerow(["split", "examples"])
        for split in present:
            writer.writerow([split, splits.sizes()[split]])
    else:
        writer.writerow(["class", *present])
        counts = {s: _target_stats(splits, s) for s in present}
        for name in splits.class_names:
            writer.writerow([name, *(counts[s][name] for s in present)])
    atomic_write_text(path, buf.getvalue())


def _write_duplicates(path: Path, groups: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group", "hash", "kind", "split", "index", "item"])
    for n, group in enumerate(groups):
        for place in group["places"]:
            writer.writerow([n, group["hash"], group["kind"], place["split"], place["index"], place["item"]])
    atomic_write_text(path, buf.getvalue())


def print_inspect(report: InspectReport, out: Any) -> None:
    """The summary a person reads first: sizes, classes per split, ranges, and any cross-split duplicates."""
    s = report.summary
    sizes = ", ".join(f"{k} {v}" for k, v in s["sizes"].items() if v)
    out(f"data: {s['source']} ({s['task']}, {s['input_kind']} of shape {tuple(s['input_shape'])}): {sizes}")
    for split, info in s["splits"].items():
        targets = info["targets"]
        if s["task"] == "regression":
            parts = [
                f"{name} {t['min']:.4g}..{t['max']:.4g} (mean {t['mean']:.4g})" for name, t in targets.items()
            ]
        else:
            total = max(sum(targets.values()), 1)
            parts = [f"{name} {n} ({100 * n / total:.0f}%)" for name, n in targets.items()]
        shown = parts[:12] + ([f"... {len(parts) - 12} more"] if len(parts) > 12 else [])
        inputs = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info["inputs"].items()
        )
        out(f"  {split}: {'; '.join(shown)}")
        out(f"    inputs: {inputs}")
    if report.duplicates:
        out(
            f"warning: {len(report.duplicates)} example(s) appear in more than one split (see duplicates.csv):"
        )
        for group in report.duplicates[:5]:
            out(
                "  "
                + " = ".join(f"{p['split']}:{p['item']}" for p in group["places"])
                + f" ({group['kind']})"
            )
    else:
        out("no example appears in two splits")
    out(f"run: {report.run_dir}")
