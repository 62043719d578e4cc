"""Where a run lives: the run directory's file names, and making a new directory that is never reused."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from dltrain.errors import RunDirError
from dltrain.fsutil import fsync_dir

SCHEMA_VERSION = 1
"""Version of the files dltrain writes for machines (run.json, data/state.json, eval/*/metrics.json, ...).
Runs made before it existed have none and read as 0; a newer one is refused with a clear message."""
CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.csv"
LOCK_FILE = ".lock"


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
