"""The run directory: the only output of a command, never overwritten (DESIGN.md section 4).

Light zone: no TensorFlow here.
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dltrain import __version__
from dltrain.config import Config, load_config_text
from dltrain.errors import ConfigError, DltrainError, Interrupted, NonFiniteLossError, RunDirError
from dltrain.fsutil import atomic_write_json, atomic_write_text, fsync_dir

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.csv"
LOCK_FILE = ".lock"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def create_run_dir(runs_root: Path, name: str, *, suffix: str = "") -> Path:
    """Make ``runs_root/<name>[-suffix]-<YYYYmmdd-HHMMSS>[-N]``; an existing directory is never reused."""
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"cannot create the runs folder {runs_root}: {exc.strerror}. Pass --runs-dir."
        ) from None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{name}{'-' + suffix if suffix else ''}-{stamp}"
    for n in range(1000):
        path = runs_root / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunDirError(f"cannot create the run directory {path}: {exc.strerror}.") from None
        fsync_dir(runs_root)
        return path
    raise RunDirError(f"{runs_root}: could not find a free run directory name for {base}.")


def create_named_run_dir(path: Path) -> Path:
    """Make exactly ``path`` (``--run-dir``); an existing non-empty directory is never reused."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create the run directory {path}: {exc.strerror}.") from None
    if any(path.iterdir()):
        raise RunDirError(
            f"{path} already holds files; a run directory is never reused. Continue it with --resume {path}, "
            "or pick another --run-dir."
        )
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock file with the owner's pid; a lock left by a dead process is taken over."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = json.loads(self.path.read_text())
                    pid = int(owner["pid"])
                except (OSError, ValueError, KeyError, TypeError):
                    pid = -1
                if (
                    pid > 0
                    and pid != os.getpid()
                    and _pid_alive(pid)
                    and owner.get("host") == socket.gethostname()
                ):
                    raise RunDirError(
                        f"{self.path.parent}: run locked by pid {pid} (still running). Wait for it or stop it."
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()  # stale: its owner died
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}, fh)
            self.held = True
            return
        raise RunDirError(f"{self.path}: could not take the run lock.")

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def git_commit() -> str | None:
    """The commit of the working directory's git checkout, if there is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class RunRecord:
    """``run.json``: what ran, where, with what, and how it ended. Rewritten atomically on each update."""

    def __init__(self, run_dir: Path, command: str, seed: int) -> None:
        self.path = run_dir / RUN_FILE
        self.data: dict[str, Any] = {
            "dltrain_version": __version__,
            "command": command,
            "argv": sys.argv,
            "status": "running",
            "started": _now(),
            "finished": None,
            "seed": seed,
            "host": socket.gethostname(),
            "user": _user(),
            "pid": os.getpid(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "git_commit": git_commit(),
        }
        self._t0 = time.monotonic()
        self._prior = (0.0, 0.0)  # time spent by earlier processes of a resumed run
        self.save()

    @classmethod
    def reopen(cls, run_dir: Path, command: str) -> RunRecord:
        """Continue an existing run's record (``--resume``): earlier fields are kept, the restart is logged."""
        record = cls.__new__(cls)
        record.path = run_dir / RUN_FILE
        record.data = read_run_json(run_dir)
        record._t0 = time.monotonic()
        record._prior = (
            float(record.data.get("wall_seconds") or 0),
            float(record.data.get("cpu_seconds") or 0),
        )
        restarts = record.data.setdefault("restarts", [])
        restarts.append(
            {"at": _now(), "argv": sys.argv, "pid": os.getpid(), "previous_status": record.data.get("status")}
        )
        record.data.update(status="running", finished=None, pid=os.getpid(), command=command)
        record.data.pop("reason", None)
        record.save()
        return record

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def finish(self, status: str, reason: str | None = None) -> None:
        self.data["status"] = status
        self.data["finished"] = _now()
        self.data["wall_seconds"] = round(self._prior[0] + time.monotonic() - self._t0, 3)
        times = os.times()
        self.data["cpu_seconds"] = round(self._prior[1] + times.user + times.system, 3)
        if reason:
            self.data["reason"] = reason
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.data)

    @contextlib.contextmanager
    def finishing_on_error(self) -> Iterator[None]:
        """Within the block, any exception marks the run interrupted or failed (with why), then propagates."""
        try:
            yield
        except (Interrupted, KeyboardInterrupt) as exc:
            self.finish("interrupted", exc.message if isinstance(exc, Interrupted) else "Ctrl-C")
            raise
        except NonFiniteLossError as exc:
            self.finish("failed", f"non-finite loss: {exc.message}")
            raise
        except DltrainError as exc:
            self.finish("failed", exc.message)
            raise
        except BaseException as exc:
            self.finish("failed", f"{type(exc).__name__}: {exc}")
            raise


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """Read ``run.json``; missing or corrupt is a ``RunDirError`` (exit 5), never a JSON traceback."""
    path = run_dir / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: not found; {run_dir} is not a dltrain run directory.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable or corrupt ({exc}).") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: corrupt (expected a JSON object).")
    return data


def read_run_config(run_dir: Path) -> Config:
    """The resolved config a run was trained with; corrupt or missing is a ``RunDirError`` (exit 5)."""
    path = run_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path}: not found; {run_dir} is not a complete dltrain run directory.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc}).") from None
    try:
        return load_config_text(text, str(path))
    except ConfigError as exc:
        raise RunDirError(
            f"{path}: the run's config is corrupt or from another version: {exc.message}"
        ) from None


def write_config(run_dir: Path, text: str) -> None:
    atomic_write_text(run_dir / CONFIG_FILE, text)


class MetricsLog:
    """``metrics.csv``: one row per epoch, appended and fsynced, so a crash never loses a finished epoch."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        if not path.exists():
            atomic_write_text(path, ",".join(columns) + "\n")

    def keep_epochs_up_to(self, epoch: int) -> None:
        """Drop rows after ``epoch`` (epochs a killed run finished but never checkpointed; they are redone)."""
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
    with open(path, encoding="utf-8", newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, float] = {}
            for key, value in raw.items():
                if key is None or value in (None, ""):
                    continue
                try:
                    row[key] = float(value)
                except ValueError:
                    continue
            rows.append(row)
    return rows
