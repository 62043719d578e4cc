"""``dltrain evaluate``: score a run's best model on a held-out split, reading only the run directory.

The split is rebuilt from the run's own config.yaml and checked against the fingerprint fit recorded, so
the numbers are about the exact examples fit held out.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from dltrain import metrics, plots
from dltrain.config import Config
from dltrain.data import load_splits
from dltrain.errors import DataError, RunDirError
from dltrain.fsutil import atomic_write_json, atomic_write_text
from dltrain.rundir import read_run_config, read_run_json

log = logging.getLogger(__name__)


@dataclass
class EvalReport:
    run_dir: Path
    split: str
    summary: dict[str, Any]
    per_class: list[dict[str, Any]]
    out_dir: Path
    top: list[dict[str, Any]] = field(default_factory=list)


def _load_model(path: Path, status: str) -> Any:
    if not path.is_file():
        hint = "the run has not finished" if status == "running" else f"the run's status is {status!r}"
        raise RunDirError(f"{path}: no model in this run ({hint}). Train it with dltrain fit first.")
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # zip, h5py and deserialisation errors all mean one thing: the file is unusable
        raise RunDirError(
            f"{path}: cannot load the model ({type(exc).__name__}: {str(exc)[:200]})."
        ) from None


def _local_runtime(cfg: Config) -> Any:
    """The run's strategy on this machine; a cluster strategy becomes the local choice (one process scores)."""
    from dltrain.runtime import setup_runtime

    runtime_cfg = cfg.runtime
    if runtime_cfg.strategy in ("multi_worker", "tpu"):
        runtime_cfg = runtime_cfg.model_copy(update={"strategy": "auto"})
    return setup_runtime(runtime_cfg, cfg.seed, cfg.data.batch_size, allow_cluster=False)


def evaluate_run(run_dir: Path, split: str = "test", top_k: int = 16, batch_size: int = 512) -> EvalReport:
    """Score ``run_dir``'s model on ``split`` and write ``eval/<split>/``.

    Raises:
        RunDirError: no run, no model or an unusable one (exit 5).
        DataError: the data is missing or no longer what fit used, or does not fit the model (exit 3).
    """
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory.")
    record = read_run_json(run_dir)
    cfg = read_run_config(run_dir)
    splits = load_splits(cfg.data, cfg.seed)
    x, y = splits.get(split)
    recorded = record.get("data", {}).get("fingerprints", {}).get(split)
    if recorded is not None and recorded != splits.fingerprint(split):
        raise DataError(
            f"the {split} split of {splits.source} is not the one this run was trained against (fingerprint "
            f"{splits.fingerprint(split)} != {recorded}); restore the original data or retrain."
        )
    runtime = _local_runtime(cfg)
    with runtime.strategy.scope():  # predict is distributed over the same devices as training
        model = _load_model(run_dir / "model.keras", str(record.get("status")))
    want_shape = tuple(model.inputs[0].shape[1:])
    if want_shape != x.shape[1:]:
        raise DataError(
            f"the model takes inputs of shape {want_shape} but the {split} data has {x.shape[1:]}."
        )
    n_out = int(model.outputs[0].shape[-1])
    if n_out != splits.num_classes:
        raise DataError(f"the model predicts {n_out} classes but the data has {splits.num_classes}.")
    # A batch that divides over the replicas, as in fit; the last one may be short.
    batch_size = max(runtime.replicas, batch_size - batch_size % runtime.replicas)
    probs = np.asarray(
        model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0), dtype=np.float64
    )
    pred = probs.argmax(axis=1)
    losses = metrics.cross_entropy(probs, y)
    cm = metrics.confusion_matrix(y, pred, splits.num_classes)
    summary = {
        "split": split,
        "examples": int(len(y)),
        "strategy": runtime.strategy_name,
        "replicas": runtime.replicas,
        "loss": float(losses.mean()),
        **metrics.summary(cm),
        "source": splits.source,
        "fingerprint": splits.fingerprint(split),
    }
    per_class = metrics.per_class_report(cm, splits.class_names)
    out_dir = run_dir / "eval" / split
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "metrics.json", summary)
    _write_csv(out_dir / "per_class.csv", ["class", "precision", "recall", "f1", "support"], per_class)
    cm_rows = [
        {"true": name, **{p: int(v) for p, v in zip(splits.class_names, row, strict=True)}}
        for name, row in zip(splits.class_names, cm, strict=True)
    ]
    _write_csv(out_dir / "confusion_matrix.csv", ["true", *splits.class_names], cm_rows)
    plots.plot_confusion_matrix(cm, splits.class_names, out_dir / "confusion_matrix.png")
    top_idx = metrics.top_losses(losses, top_k) if top_k else np.array([], dtype=np.int64)
    top: list[dict[str, Any]] = [
        {
            "index": int(i),
            "true": splits.class_names[int(y[i])],
            "predicted": splits.class_names[int(pred[i])],
            "loss": float(losses[i]),
            "probability": float(probs[i, pred[i]]),
            "true_probability": float(probs[i, y[i]]),
        }
        for i in top_idx
    ]
    _write_csv(
        out_dir / "top_losses.csv",
        ["index", "true", "predicted", "loss", "probability", "true_probability"],
        top,
    )
    if len(top_idx) and x.ndim in (3, 4):
        images = x[top_idx].astype(np.float64) / splits.scale
        plots.plot_top_losses(
            images,
            [t["true"] for t in top],
            [t["predicted"] for t in top],
            [t["loss"] for t in top],
            [t["probability"] for t in top],
            out_dir / "top_losses.png",
        )
    return EvalReport(run_dir, split, summary, per_class, out_dir, top)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def print_report(report: EvalReport, console: Console) -> None:
    s = report.summary
    console.print(
        f"{report.run_dir} on {report.split} ({s['examples']} examples): "
        f"accuracy {s['accuracy']:.4f}  loss {s['loss']:.4f}  macro F1 {s['macro_f1']:.4f}",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title=f"per class ({report.split})")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in report.per_class:
        table.add_row(
            str(row["class"]),
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    console.print(table)
    mistakes = [t for t in report.top if t["true"] != t["predicted"]]
    if mistakes:
        worst = ", ".join(f"#{t['index']} {t['true']} taken for {t['predicted']}" for t in mistakes[:5])
        console.print(f"worst mistakes: {worst}", highlight=False, soft_wrap=True)
    console.print(f"files: {report.out_dir}", highlight=False, soft_wrap=True)
