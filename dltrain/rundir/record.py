"""``run.json`` (what ran, where, how it ended) and the run's ``config.yaml``: written and read back safely."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dltrain import __version__
from dltrain.config import Config, load_config_text
from dltrain.errors import ConfigError, DltrainError, Interrupted, NonFiniteLossError, RunDirError
from dltrain.fsutil import atomic_write_json, atomic_write_text
from dltrain.rundir.lock import RunLock
from dltrain.rundir.paths import CONFIG_FILE, RUN_FILE, SCHEMA_VERSION


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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

    def __init__(self, run_dir: Path, command: str, seed: int, lock: RunLock | None = None) -> None:
        """``lock``: the run's lock; once another process has taken it over, this record writes nothing more."""
        self.path = run_dir / RUN_FILE
        self.lock = lock
        self.data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
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
    def reopen(cls, run_dir: Path, command: str, lock: RunLock | None = None) -> RunRecord:
        """Continue an existing run's record (``--resume``): earlier fields are kept, the restart is logged."""
        record = cls.__new__(cls)
        record.path = run_dir / RUN_FILE
        record.lock = lock
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
        record.data.update(
            status="running", finished=None, pid=os.getpid(), host=socket.gethostname(), command=command
        )
        record.data["schema_version"] = SCHEMA_VERSION
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
        if self.lock is not None and self.lock.lost:
            return  # another process owns the run now
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
    for key, expected in _RUN_JSON_TYPES.items():
        if key in data and not isinstance(data[key], expected):
            names = " or ".join(
                "null" if t is type(None) else _JSON_NAMES.get(t, t.__name__) for t in expected
            )
            raise RunDirError(
                f"{path}: `{key}` is {_JSON_NAMES.get(type(data[key]), type(data[key]).__name__)}, expected {names}; "
                "the file is damaged. Restore it, or start a new run."
            )
    version = data.get("schema_version", 0)
    if version > SCHEMA_VERSION:
        raise RunDirError(
            f"{path}: written by a newer dltrain (run files schema {version}; this dltrain reads up to "
            f"{SCHEMA_VERSION}). Upgrade dltrain: pip install -U dltrain."
        )
    return data


_NONE = type(None)
# The run.json fields dltrain reads back, with the JSON types they must have.
_RUN_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "command": (str,),
    "status": (str,),
    "started": (str, _NONE),
    "finished": (str, _NONE),
    "reason": (str, _NONE),
    "seed": (int,),
    "host": (str, _NONE),
    "pid": (int, _NONE),
    "data": (dict,),
    "runtime": (dict,),
    "model": (dict,),
    "learning_rate": (dict,),
    "restarts": (list,),
    "best": (dict, _NONE),
    "epochs_run": (int,),
    "wall_seconds": (int, float, _NONE),
    "cpu_seconds": (int, float, _NONE),
}
_JSON_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    _NONE: "null",
}


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
