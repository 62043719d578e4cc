"""The run lock: one process at a time writes a run directory."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from dltrain.errors import RunDirError
from dltrain.rundir.paths import LOCK_FILE


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
