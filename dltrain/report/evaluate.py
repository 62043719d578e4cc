"""``dltrain evaluate``: score a run's best model on a held-out split, reading only the run directory.

The split is rebuilt from the run's own config.yaml and checked against the fingerprint fit recorded, so
the numbers are about the exact examples fit held out.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from dltrain.config import Config
from dltrain.data import Splits, load_splits
from dltrain.data.images import display_images
from dltrain.data.state import check_same_data
from dltrain.errors import DataError, RunDirError
from dltrain.fsutil import atomic_write_json, atomic_write_text, file_sha256
from dltrain.report import interpret, metrics, plots
from dltrain.rundir import SCHEMA_VERSION, read_run_config, read_run_json
from dltrain.rundir.lock import describe_owner, live_owner

log = logging.getLogger(__name__)


@dataclass
class EvalReport:
    run_dir: Path
    split: str
    summary: dict[str, Any]
    per_class: list[dict[str, Any]]
    out_dir: Path
    top: list[dict[str, Any]] = field(default_factory=list)


def load_run_model(path: Path, status: str) -> Any:
    """A run's ``model.keras`` for inference; missing or damaged is a ``RunDirError`` (exit 5)."""
    if not path.is_file():
        hint = "the run has not finished" if status == "running" else f"the run's status is {status!r}"
        raise RunDirError(f"{path}: no model in this run ({hint}). Train it with dltrain fit first.")
    import zipfile

    if not zipfile.is_zipfile(path):
        raise RunDirError(f"{path}: not a Keras model file (a .keras file is a zip archive); it is damaged.")
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # zip, h5py and deserialisation errors all mean one thing: the file is unusable
        saved_by = _saved_by_newer_keras(path, keras.__version__)
        if saved_by:
            raise RunDirError(
                f"{path}: saved by Keras {saved_by}, which this environment's Keras {keras.__version__} cannot "
                f"read. Upgrade Keras to {saved_by} or later (pip install -U keras; recent Keras needs a recent "
                "Python), or score the run where it was trained."
            ) from None
        text = str(exc).replace("File not found", "cannot read it")[:200]
        raise RunDirError(f"{path}: not a loadable Keras model ({type(exc).__name__}: {text}).") from None


def _saved_by_newer_keras(path: Path, installed: str) -> str | None:
    """The Keras version in a .keras file's metadata when it is newer than ``installed``, else None."""
    import json
    import zipfile

    def key(version: str) -> tuple[int, ...]:
        parts = []
        for part in version.split(".")[:3]:
            digits = "".join(ch for ch in part if ch.isdigit())
            parts.append(int(digits) if digits else 0)
        return tuple(parts)

    try:
        with zipfile.ZipFile(path) as archive:
            saved = str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return saved if saved and key(saved) > key(installed) else None


def check_not_training(run_dir: Path, what: str) -> None:
    """Refuse a run that a fit is writing now (its model.keras is about to be replaced)."""
    owner = live_owner(run_dir)
    if owner is not None:
        raise RunDirError(
            f"{run_dir}: a fit is training this run now ({describe_owner(owner)}, {owner['why']}); {what} would "
            "score a model.keras that the fit then replaces. Wait for it to finish."
        )


def check_writable(folder: Path) -> None:
    """Exit 5 naming ``folder`` before any work when results cannot be written there."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(
            f"{probe}: not writable by this user; evaluate writes its results into the run directory. "
            "Copy the run to a folder you own (cp -r RUN mine/) and evaluate the copy."
        )


def model_record(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Which model is scored: the epoch and checksum fit exported, checked against the file now there."""
    path = run_dir / "model.keras"
    sha = file_sha256(path)
    exported = record.get("exported") if isinstance(record.get("exported"), dict) else None
    best: dict[str, Any] = record.get("best") or {}
    out: dict[str, Any] = {
        "file": "model.keras",
        "sha256": sha,
        "epoch": exported.get("epoch") if exported else best.get("epoch"),
    }
    if exported is not None:
        out["matches_fit"] = exported.get("sha256") == sha
        if not out["matches_fit"]:
            log.warning(
                "%s is not the model fit exported (checksum differs): scoring the file as it is now", path
            )
    return out


def _local_runtime(cfg: Config) -> Any:
    """The run's strategy on this machine; a cluster strategy becomes the local choice (one process scores)."""
    from dltrain.train.runtime import setup_runtime

    runtime_cfg = cfg.runtime
    if runtime_cfg.strategy in ("multi_worker", "tpu"):
        runtime_cfg = runtime_cfg.model_copy(update={"strategy": "auto"})
    return setup_runtime(
        runtime_cfg, cfg.seed, cfg.data.batch_size, allow_cluster=False, model_kind=cfg.model.kind
    )


def evaluate_run(run_dir: Path, split: str = "test", top_k: int = 16, batch_size: int = 512) -> EvalReport:
    """Score ``run_dir``'s model on ``split`` and write ``eval/<split>/``.

    Raises:
        RunDirError: no run, no model or an unusable one (exit 5).
        DataError: the data is missing or no longer what fit used, or does not fit the model (exit 3).
    """
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory.")
    record = read_run_json(run_dir)
    check_not_training(run_dir, "evaluate")
    check_writable(run_dir / "eval" / split)
    cfg = read_run_config(run_dir)
    splits = load_splits(cfg.data, cfg.seed)
    x, y = splits.get(split)
    _check_class_names(run_dir, splits)  # first: a renamed class is a clearer reason than a fingerprint
    for warning in check_same_data(record.get("data", {}), splits, [split], run_dir):
        log.warning("%s", warning)
    runtime = _local_runtime(cfg)
    with runtime.strategy.scope():  # predict is distributed over the same devices as training
        model = load_run_model(run_dir / "model.keras", str(record.get("status")))
    _check_fits(model, splits, split)
    # A batch that divides over the replicas, as in fit; the last one may be short.
    batch_size = max(runtime.replicas, batch_size - batch_size % runtime.replicas)
    from dltrain.data.pipeline import make_pipeline

    if isinstance(model.input, dict):  # a csv model that takes the raw columns (one named input each)
        outputs = np.asarray(
            model.predict(raw_column_inputs(x, splits.state), batch_size=batch_size, verbose=0)
        )
        outputs = outputs.astype(np.float64)
    else:
        data = make_pipeline(
            splits, split, batch_size
        ).evaluation()  # image folders stream from disk here too
        outputs = np.asarray(model.predict(data, verbose=0), dtype=np.float64)
    out_dir = run_dir / "eval" / split
    out_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "schema_version": SCHEMA_VERSION,
        "model": model_record(run_dir, record),
        "split": split,
        "examples": int(len(y)),
        "task": splits.task,
        "strategy": runtime.strategy_name,
        "replicas": runtime.replicas,
    }
    if splits.task == "regression":
        return _regression_report(run_dir, splits, split, y, outputs, out_dir, common, top_k)
    return _classification_report(run_dir, splits, split, x, y, outputs, out_dir, common, top_k)


def _check_class_names(run_dir: Path, splits: Splits) -> None:
    """The classes fit recorded (data/state.json) are the ones the model's outputs stand for."""
    import json

    state_file = run_dir / "data" / "state.json"
    if not state_file.is_file():
        return  # runs from before data/state.json existed
    try:
        recorded = json.loads(state_file.read_text()).get("class_names")
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{state_file}: unreadable ({exc}).") from None
    if recorded is not None and list(recorded) != list(splits.class_names):
        raise DataError(
            f"the classes in the data ({', '.join(splits.class_names)}) are not the ones this run was trained "
            f"on ({', '.join(recorded)}, {state_file}); restore the original data or retrain."
        )


def raw_column_inputs(x: np.ndarray, state: dict[str, Any]) -> dict[str, Any]:
    """Encoded csv rows as the raw columns a ``model.keras`` with named inputs takes (strings as tf strings)."""
    import tensorflow as tf

    from dltrain.data.tabular import raw_columns

    return {k: tf.constant(v) if v.dtype == object else v for k, v in raw_columns(x, state).items()}


def _check_fits(model: Any, splits: Splits, split: str) -> None:
    if isinstance(model.input, dict):
        columns = splits.state.get("columns") or {}
        wanted = [*columns.get("numeric", []), *columns.get("categorical", [])]
        if sorted(model.input) != sorted(wanted):
            raise DataError(
                f"the model takes columns {', '.join(sorted(model.input))} but the {split} data has "
                f"{', '.join(sorted(wanted))}."
            )
        want_shape = splits.input_shape
    else:
        want_shape = tuple(model.inputs[0].shape[1:])
    if want_shape != splits.input_shape:
        raise DataError(
            f"the model takes inputs of shape {want_shape} but the {split} data has {splits.input_shape}."
        )
    n_out = int(model.outputs[0].shape[-1])
    if splits.task == "regression":
        if n_out != splits.num_outputs:
            raise DataError(
                f"the model predicts {n_out} values but the data has {splits.num_outputs} targets."
            )
    elif n_out != splits.num_classes:
        raise DataError(f"the model predicts {n_out} classes but the data has {splits.num_classes}.")


def _item(splits: Splits, split: str, index: int) -> str:
    """What example ``index`` of ``split`` is, for a person: its file or row when the manifest knows it."""
    items = splits.manifest.get(split)
    return items[index] if items is not None and index < len(items) else f"#{index}"


def _classification_report(
    run_dir: Path,
    splits: Splits,
    split: str,
    x: np.ndarray,
    y: np.ndarray,
    probs: np.ndarray,
    out_dir: Path,
    common: dict[str, Any],
    top_k: int,
) -> EvalReport:
    pred = probs.argmax(axis=1)
    losses = metrics.cross_entropy(probs, y)
    cm = metrics.confusion_matrix(y, pred, splits.num_classes)
    summary = {
        **common,
        "loss": float(losses.mean()),
        **metrics.summary(y, pred, splits.num_classes),
        "source": splits.source,
        "fingerprint": splits.fingerprint(split),
    }
    per_class = metrics.per_class_report(y, pred, splits.class_names)
    atomic_write_json(out_dir / "metrics.json", summary)
    _write_csv(out_dir / "per_class.csv", ["class", "precision", "recall", "f1", "support"], per_class)
    cm_rows = [
        {"true": name, **{p: int(v) for p, v in zip(splits.class_names, row, strict=True)}}
        for name, row in zip(splits.class_names, cm, strict=True)
    ]
    _write_csv(out_dir / "confusion_matrix.csv", ["true", *splits.class_names], cm_rows)
    plots.plot_confusion_matrix(cm, splits.class_names, out_dir / "confusion_matrix.png")
    top_idx = metrics.top_losses(losses, top_k) if top_k else np.array([], dtype=np.int64)
    examples = _Examples(splits, split, y, probs, losses, out_dir)
    top = examples.write(
        "top_losses",
        top_idx,
        ["index", "item", "true", "predicted", "loss", "probability", "true_probability"],
    )
    _interpretation(examples, cm, top_k)
    return EvalReport(run_dir, split, summary, per_class, out_dir, top)


@dataclass
class _Examples:
    """Chosen test examples written as ``<name>.csv`` and, where the inputs are images, ``<name>.png``."""

    splits: Splits
    split: str
    y: np.ndarray
    probs: np.ndarray
    losses: np.ndarray
    out_dir: Path

    def __post_init__(self) -> None:
        self.pred = self.probs.argmax(axis=1)

    def write(
        self,
        name: str,
        idx: np.ndarray,
        columns: list[str],
        title: str = "prediction / actual / loss / probability",
    ) -> list[dict[str, Any]]:
        names, y, pred, probs = self.splits.class_names, self.y, self.pred, self.probs
        rows: list[dict[str, Any]] = [
            {
                "index": int(i),
                "item": _item(self.splits, self.split, int(i)),
                "true": names[int(y[i])],
                "predicted": names[int(pred[i])],
                "loss": float(self.losses[i]),
                "probability": float(probs[i, pred[i]]),
                "true_probability": float(probs[i, y[i]]),
            }
            for i in idx
        ]
        _write_csv(self.out_dir / f"{name}.csv", columns, rows)
        images = display_images(self.splits, self.split, idx) if len(idx) else None
        if images is not None:
            plots.plot_top_losses(
                images,
                [r["true"] for r in rows],
                [r["predicted"] for r in rows],
                [r["loss"] for r in rows],
                [r["probability"] for r in rows],
                self.out_dir / f"{name}.png",
                title=title,
            )
        return rows


def _interpretation(examples: _Examples, cm: np.ndarray, top_k: int) -> None:
    """fast.ai's interpretation: most confident correct / wrong, most uncertain (CSV, and image grids), and the
    most confused class pairs with counts (``most_confused.csv``)."""
    columns = ["index", "item", "true", "predicted", "probability", "true_probability", "loss"]
    for view, idx in interpret.select(examples.probs, examples.y, top_k).items():
        title = f"{view.replace('_', ' ')}: prediction / actual / loss / probability"
        examples.write(view, idx, columns, title=title)
    _write_csv(
        examples.out_dir / "most_confused.csv",
        ["actual", "predicted", "count"],
        interpret.most_confused(cm, examples.splits.class_names),
    )


def _regression_report(
    run_dir: Path,
    splits: Splits,
    split: str,
    y: np.ndarray,
    pred: np.ndarray,
    out_dir: Path,
    common: dict[str, Any],
    top_k: int,
) -> EvalReport:
    pred = pred.reshape(y.shape)
    summary: dict[str, Any] = {
        **common,
        "loss": float(np.mean(np.square((pred - y) / splits.target_std))),  # MSE as trained: standardised
        **metrics.regression_summary(y, pred),
        "source": splits.source,
        "fingerprint": splits.fingerprint(split),
    }
    baseline = splits.baselines.get(split)
    if baseline is not None:
        naive = metrics.regression_summary(y, np.asarray(baseline).reshape(y.shape))
        summary["baseline"] = {"name": splits.baseline_name or "naive", **naive}
        # Skill > 0: better than the naive forecast (1 - MAE / naive MAE), the forecasting convention.
        summary["mae_skill"] = 1.0 - summary["mae"] / naive["mae"] if naive["mae"] > 0 else float("nan")
    per_target = metrics.per_target_report(y, pred, splits.target_names)
    atomic_write_json(out_dir / "metrics.json", summary)
    _write_csv(out_dir / "per_target.csv", ["target", "mae", "rmse", "r2"], per_target)
    abs_err = np.abs(pred - y).reshape(len(y), -1).mean(axis=1)
    rows = [
        {
            "index": i,
            "item": _item(splits, split, i),
            "true": float(y[i].reshape(-1)[0]),
            "predicted": float(pred[i].reshape(-1)[0]),
            **({"naive": float(np.asarray(baseline)[i].reshape(-1)[0])} if baseline is not None else {}),
            "abs_error": float(abs_err[i]),
        }
        for i in range(len(y))
    ]
    columns = [
        "index",
        "item",
        "true",
        "predicted",
        *(["naive"] if baseline is not None else []),
        "abs_error",
    ]
    _write_csv(out_dir / "predictions.csv", columns, rows)
    top_idx = np.argsort(-abs_err, kind="stable")[:top_k] if top_k else np.array([], dtype=np.int64)
    top = [rows[int(i)] for i in top_idx]
    _write_csv(out_dir / "top_errors.csv", columns, top)
    plots.plot_predictions(y, pred, out_dir / "predictions.png", baseline=baseline, title=split)
    return EvalReport(run_dir, split, summary, per_target, out_dir, top)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def print_report(report: EvalReport, console: Console) -> None:
    s = report.summary
    if s.get("task") == "regression":
        _print_regression(report, console)
        return
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


def _print_regression(report: EvalReport, console: Console) -> None:
    s = report.summary
    console.print(
        f"{report.run_dir} on {report.split} ({s['examples']} examples): "
        f"MAE {s['mae']:.4g}  RMSE {s['rmse']:.4g}  R² {s['r2']:.3f}",
        highlight=False,
        soft_wrap=True,
    )
    base = s.get("baseline")
    if base:
        verdict = "better than" if s["mae"] < base["mae"] else "NOT better than"
        console.print(
            f"naive forecast ({base['name']}): MAE {base['mae']:.4g}  RMSE {base['rmse']:.4g}; the model is "
            f"{verdict} it (MAE skill {s['mae_skill']:+.3f})",
            highlight=False,
            soft_wrap=True,
        )
    if len(report.per_class) > 1:
        table = Table(title=f"per target ({report.split})")
        for col in ("target", "mae", "rmse", "r2"):
            table.add_column(col, justify="left" if col == "target" else "right")
        for row in report.per_class:
            table.add_row(str(row["target"]), f"{row['mae']:.4g}", f"{row['rmse']:.4g}", f"{row['r2']:.3f}")
        console.print(table)
    if report.top:
        worst = ", ".join(f"{t['item']} (|error| {t['abs_error']:.3g})" for t in report.top[:5])
        console.print(f"largest errors: {worst}", highlight=False, soft_wrap=True)
    console.print(f"files: {report.out_dir}", highlight=False, soft_wrap=True)
