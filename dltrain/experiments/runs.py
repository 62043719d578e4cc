"""Read a folder of run directories into rows, and compare runs. Light zone: small files only.

A row never raises: a folder without run.json is ``foreign`` (or ``incomplete`` when it has dltrain files but
no readable run.json, e.g. a fit killed while starting), and a run.json that says ``running`` while no live
process holds the run's lock (``dltrain.rundir.lock``) is ``dead``.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dltrain.errors import ConfigError, RunDirError
from dltrain.rundir.lock import owner_alive, read_lock
from dltrain.rundir.paths import CONFIG_FILE, METRICS_FILE, RUN_FILE

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

COLUMNS = ("name", "kind", "status", "data", "model", "epochs", "best", "test", "cpu_s", "started")
SORT_KEYS = (*COLUMNS, "best_value", "test_value", "best_epoch", "monitor", "path")
KINDS = ("fit", "lr-find", "inspect", "sweep", "foreign", "incomplete")
DLTRAIN_FILES = (CONFIG_FILE, METRICS_FILE, "checkpoints", ".lock", "data")


@dataclass
class RunRow:
    """One run directory as ``runs ls`` shows it."""

    path: Path
    name: str
    kind: str
    status: str
    data: str | None = None
    model: str | None = None
    epochs: int | None = None
    monitor: str | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    test_metric: str | None = None
    test_value: float | None = None
    cpu_s: float | None = None
    started: str | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> str:
        if self.best_value is None:
            return ""
        return f"{self.monitor} {self.best_value:.4f} @{self.best_epoch}"

    @property
    def test(self) -> str:
        return "" if self.test_value is None else f"{self.test_metric} {self.test_value:.4f}"

    def value(self, key: str) -> Any:
        """The value a --sort or --filter key names."""
        if key in ("best", "test"):
            return getattr(self, f"{key}_value")
        if key == "path":
            return str(self.path)
        return getattr(self, key)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "data": self.data,
            "model": self.model,
            "epochs": self.epochs,
            "monitor": self.monitor,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "test_metric": self.test_metric,
            "test_value": self.test_value,
            "cpu_seconds": self.cpu_s,
            "started": self.started,
            "note": self.note,
        }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError):
        return ...  # present but unreadable


def _finite(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _config_kinds(run_dir: Path) -> tuple[str | None, str | None, str | None]:
    """(name, data kind, model kind) from config.yaml, or Nones; never raises."""
    try:
        raw = yaml.load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None, None, None
    if not isinstance(raw, dict):
        return None, None, None
    data, model = raw.get("data"), raw.get("model")
    return (
        raw.get("name") if isinstance(raw.get("name"), str) else None,
        data.get("kind") if isinstance(data, dict) else None,
        model.get("kind") if isinstance(model, dict) else None,
    )


def _test_score(run_dir: Path) -> tuple[str | None, float | None]:
    summary = _read_json(run_dir / "eval" / "test" / "metrics.json")
    if not isinstance(summary, dict):
        return None, None
    for key in ("accuracy", "mae"):
        value = _finite(summary.get(key))
        if value is not None:
            return key, value
    return None, None


def _kind_of(run_dir: Path, record: dict[str, Any]) -> str:
    command = str(record.get("command") or "")
    if command.startswith("lr-find") or command.startswith("lr_find"):
        return "lr-find"
    if command.startswith("inspect") or command.startswith("data"):
        return "inspect"
    if command.startswith("fit"):
        return "fit"
    if (
        run_dir.name.endswith(("-lrfind",))
        or (run_dir / "lr_find").is_dir()
        and not (run_dir / METRICS_FILE).exists()
    ):
        return "lr-find"
    return "fit"


def _epochs_done(run_dir: Path) -> int | None:
    """Finished epochs from metrics.csv's last complete row (a fast tail read)."""
    try:
        with open(run_dir / METRICS_FILE, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        first = line.split(",", 1)[0].strip()
        if first.isdigit():
            return int(first)
    return 0 if lines else None


def read_row(run_dir: Path) -> RunRow:
    """One run directory as a row; never raises."""
    name = run_dir.name
    if (run_dir / "sweep.json").is_file():
        sweep = _read_json(run_dir / "sweep.json")
        info = sweep if isinstance(sweep, dict) else {}
        return RunRow(run_dir, name, "sweep", str(info.get("status") or "sweep"), started=info.get("created"))
    if (run_dir / "inspect.json").is_file() and not (run_dir / RUN_FILE).exists():
        _, data_kind, _ = _config_kinds(run_dir)
        return RunRow(run_dir, name, "inspect", "finished", data=data_kind, note="dltrain data inspect")
    record = _read_json(run_dir / RUN_FILE)
    if not isinstance(record, dict):
        looks_ours = any((run_dir / item).exists() for item in DLTRAIN_FILES) or record is ...
        if not looks_ours:
            return RunRow(
                run_dir, name, "foreign", "foreign", note="not a dltrain run directory (no run.json)"
            )
        why = "run.json unreadable or corrupt" if record is ... else "no run.json (killed while starting?)"
        return RunRow(run_dir, name, "incomplete", "incomplete", note=why)
    cfg_name, data_kind, model_kind = _config_kinds(run_dir)
    model = record.get("model")
    if isinstance(model, dict) and isinstance(model.get("kind"), str):
        model_kind = model["kind"]
    status = str(record.get("status") or "unknown")
    note = record.get("reason") if isinstance(record.get("reason"), str) else None
    if status == "running":
        owner = read_lock(run_dir)
        alive, why = owner_alive(owner) if owner is not None else (False, "no lock file")
        if not alive:
            status = "dead"
            note = (
                f"run.json says running but no process holds the run ({why}); dltrain fit --resume {run_dir}"
            )
    best: dict[str, Any] = record["best"] if isinstance(record.get("best"), dict) else {}
    test_metric, test_value = _test_score(run_dir)
    epochs = record.get("epochs_run")
    if not isinstance(epochs, int):
        epochs = _epochs_done(run_dir)
    stop_reason = record.get("stop_reason")
    if isinstance(stop_reason, str) and not note:
        note = stop_reason
    return RunRow(
        path=run_dir,
        name=name,
        kind=_kind_of(run_dir, record),
        status=status,
        data=data_kind,
        model=model_kind,
        epochs=epochs,
        monitor=best.get("monitor") if isinstance(best.get("monitor"), str) else None,
        best_value=_finite(best.get("value")),
        best_epoch=best.get("epoch") if isinstance(best.get("epoch"), int) else None,
        test_metric=test_metric,
        test_value=test_value,
        cpu_s=_finite(record.get("cpu_seconds")),
        started=record.get("started") if isinstance(record.get("started"), str) else None,
        note=note,
        extra={"config_name": cfg_name},
    )


def list_runs(runs_dir: Path) -> list[RunRow]:
    """Every directory directly under ``runs_dir`` as a row, by name."""
    if not runs_dir.exists():
        raise RunDirError(
            f"{runs_dir}: no such folder. Pass the folder that holds run directories (default runs/)."
        )
    if not runs_dir.is_dir():
        raise RunDirError(f"{runs_dir}: not a folder; give the folder that holds run directories.")
    try:
        entries = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise RunDirError(f"{runs_dir}: cannot be listed ({exc.strerror or exc}).") from None
    return [read_row(path) for path in entries]


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    "=": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
    "~": lambda have, want: want in str(have),
}
_FILTER = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|!=|=|>|<|~)\s*(.*?)\s*$")


def parse_filter(text: str) -> Callable[[RunRow], bool]:
    """``KEY OP VALUE``: OP one of = != > >= < <= ~ (contains); e.g. ``status=finished``, ``best>0.9``."""
    match = _FILTER.match(text)
    if not match or match.group(1) not in SORT_KEYS:
        raise ConfigError(
            f"--filter {text!r}: expected KEY OP VALUE with KEY one of {', '.join(SORT_KEYS)} and OP one of "
            "= != > >= < <= ~ (contains), e.g. --filter status=finished --filter 'best>0.9'."
        )
    key, op, raw = match.groups()
    want: Any = raw
    number = _finite(raw)
    if number is not None and op != "~":
        want = number
    compare = _OPS[op]

    def keep(row: RunRow) -> bool:
        have = row.value(key)
        if have is None:
            return op == "!="
        if isinstance(want, float):
            have = _finite(have)
            if have is None:
                return False
        else:
            have = str(have)
        try:
            return bool(compare(have, want))
        except TypeError:
            return False

    return keep


def sort_rows(rows: list[RunRow], key: str) -> list[RunRow]:
    """Sort by ``key`` (``-key``: descending); rows without the value go last either way."""
    descending = key.startswith("-")
    key = key.lstrip("-")
    if key not in SORT_KEYS:
        raise ConfigError(
            f"--sort {key!r}: not a column; use one of {', '.join(SORT_KEYS)} (prefix - to reverse)."
        )
    present = [row for row in rows if row.value(key) is not None]
    missing = [row for row in rows if row.value(key) is None]

    def order(row: RunRow) -> Any:
        value = row.value(key)
        return (0, value, "") if isinstance(value, int | float) else (1, 0, str(value))

    return sorted(present, key=order, reverse=descending) + missing


# ---- compare -------------------------------------------------------------------------------------------


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def read_config_flat(run_dir: Path) -> dict[str, Any]:
    try:
        raw = yaml.load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"), Loader=_Loader)
    except FileNotFoundError:
        raise RunDirError(f"{run_dir}: no config.yaml; not a dltrain run directory.") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunDirError(f"{run_dir / CONFIG_FILE}: unreadable ({exc}).") from None
    return _flatten(raw if isinstance(raw, dict) else {})


@dataclass
class Comparison:
    rows: list[RunRow]
    differing: dict[str, list[Any]]
    """config key -> its value in each run (only keys whose values differ)."""
    curves: list[list[dict[str, float]]]

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [row.to_json() for row in self.rows],
            "config_differences": self.differing,
        }


_MISSING = "(absent)"


def compare_runs(run_dirs: list[Path]) -> Comparison:
    """Config keys that differ, scores side by side, and each run's metrics.csv rows."""
    from dltrain.rundir.metrics_log import read_metrics

    if len(run_dirs) < 2:
        raise ConfigError("runs compare needs at least two run directories.")
    rows, configs, curves = [], [], []
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise RunDirError(f"{run_dir}: no such run directory.")
        row = read_row(run_dir)
        if row.kind in ("foreign", "incomplete"):
            raise RunDirError(f"{run_dir}: {row.note}; runs compare needs dltrain run directories.")
        rows.append(row)
        configs.append(read_config_flat(run_dir))
        curves.append(read_metrics(run_dir / METRICS_FILE))
    keys = sorted(set().union(*configs))
    differing = {}
    for key in keys:
        values = [cfg.get(key, _MISSING) for cfg in configs]
        if any(value != values[0] for value in values[1:]):
            differing[key] = values
    return Comparison(rows, differing, curves)
