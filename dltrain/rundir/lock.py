"""The run lock: one process at a time writes a run directory, also across machines on a shared folder.

The lock is a file, ``RUN/.lock``, created exclusively (O_EXCL) and holding its owner: host, pid, the
machine's boot id and pid namespace, and a *lease* the owner renews from a background thread every
``lease / 3`` seconds. Another process decides whether the owner is alive:

- on the same machine and in the same pid namespace (same boot id, same namespace), by the pid: a dead pid is
  a stale lock, taken over at once;
- anywhere else (another host of a SLURM or Kubernetes job, a container), by the lease: the lock is live while
  its last renewal is younger than twice the lease plus a clock-skew allowance, and is taken over only after.

Why a lease and not only an OS lock (fcntl): on NFS and other shared file systems, fcntl locks depend on the
server and client setup and are lost silently when they are not supported; a lease needs only atomic
create and rename. Machines' clocks must agree within ``CLOCK_SKEW`` seconds (NTP does far better). A holder that
finds its lock taken over (it stalled past its lease) stops renewing and says so (``lost``); the training
loop then stops without writing more. See docs/architecture.md, "The run lock".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dltrain.errors import RunDirError
from dltrain.rundir.paths import LOCK_FILE

log = logging.getLogger(__name__)

LEASE_ENV = "DLTRAIN_LOCK_LEASE"
DEFAULT_LEASE = 30.0
"""Seconds; the owner renews every third of it. ``DLTRAIN_LOCK_LEASE`` changes it (tests use 1-2 s)."""
CLOCK_SKEW = 5.0


def lease_seconds() -> float:
    try:
        return max(0.2, float(os.environ.get(LEASE_ENV, DEFAULT_LEASE)))
    except ValueError:
        return DEFAULT_LEASE


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def machine_identity() -> dict[str, Any]:
    """What tells two processes they share a kernel and a pid namespace (so a pid means the same process)."""
    try:
        pid_ns: int | None = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pid_ns = None
    return {
        "host": socket.gethostname(),
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
        "pid_ns": pid_ns,
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot; Linux), so that a reused pid is not taken for it."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in (...) may hold spaces
    except (IndexError, ValueError):
        return None


def _same_process_alive(pid: int, started: Any) -> bool:
    """Whether ``pid`` runs and is the process that started at ``started`` (when that was recorded)."""
    if not _pid_alive(pid):
        return False
    return not isinstance(started, int) or _start_ticks(pid) in (None, started)


def read_lock(run_dir: Path) -> dict[str, Any] | None:
    """The lock's owner record; None when there is no lock file, ``{}`` when it is unreadable."""
    path = run_dir / LOCK_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def owner_alive(owner: dict[str, Any], now: float | None = None) -> tuple[bool, str]:
    """Whether the process that wrote ``owner`` still holds the lock, and why we think so."""
    if not owner:
        return False, "the lock file is unreadable"
    me = machine_identity()
    pid = owner.get("pid")
    # The same kernel, pid namespace and hostname: a pid names one process (with its start time, not a reused
    # pid; a namespace's inode number can be reused too, after the namespace is gone). Else only the lease tells.
    same_machine = (
        owner.get("boot_id") is not None
        and owner.get("boot_id") == me["boot_id"]
        and owner.get("pid_ns") == me["pid_ns"]
        and owner.get("host") == me["host"]
    )
    if same_machine and isinstance(pid, int):
        started = owner.get("pid_started")
        if pid == os.getpid() and started in (None, _start_ticks(pid)):
            return False, "it is this process's own lock"
        alive = _same_process_alive(pid, started)
        return alive, f"pid {pid} is {'running' if alive else 'gone'} on this machine"
    renewed = owner.get("renewed_unix")
    lease = owner.get("lease_seconds")
    if not isinstance(renewed, int | float) or not isinstance(lease, int | float):
        # A lock of an older dltrain (pid and host only): a pid elsewhere cannot be checked; trust the host.
        if owner.get("host") == me["host"] and isinstance(pid, int):
            return _pid_alive(pid), f"pid {pid} on this host"
        return False, "an old-style lock from another host (no lease)"
    age = (time.time() if now is None else now) - float(renewed)
    limit = 2 * float(lease) + CLOCK_SKEW
    return (
        age < limit,
        f"lease renewed {max(age, 0):.0f}s ago; taken over {limit:.0f}s after its last renewal",
    )


def describe_owner(owner: dict[str, Any]) -> str:
    return f"{owner.get('host', '?')} pid {owner.get('pid', '?')}"


class RunLock:
    """An exclusive, leased lock on a run directory (see the module docstring)."""

    def __init__(self, run_dir: Path, lease: float | None = None) -> None:
        self.path = run_dir / LOCK_FILE
        self.lease = lease if lease is not None else lease_seconds()
        self.token = uuid.uuid4().hex
        self.held = False
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._since = _now_iso()

    def _record(self) -> dict[str, Any]:
        return {
            **machine_identity(),
            "pid": os.getpid(),
            "pid_started": _start_ticks(os.getpid()),
            "token": self.token,
            "since": self._since,
            "renewed": _now_iso(),
            "renewed_unix": time.time(),
            "lease_seconds": self.lease,
        }

    def acquire(self) -> None:
        """Take the lock, or raise ``RunDirError`` (exit 5) naming its live owner."""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_lock(self.path.parent)
                if owner is None:
                    continue  # released between the two calls
                alive, why = owner_alive(owner)
                if alive:
                    raise _locked(self.path.parent, owner, why) from None
                self._take_over(owner, why)
                continue
            except PermissionError as exc:
                raise RunDirError(
                    f"{self.path.parent}: not writable by this user ({exc.strerror}); dltrain writes the run "
                    "directory (lock, checkpoints, run.json). Use a run you own, or copy it."
                ) from None
            except OSError as exc:
                raise RunDirError(
                    f"{self.path}: cannot create the run lock ({exc.strerror or exc})."
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(self._record(), fh)
            self.held = True
            self._start_renewing()
            return
        raise RunDirError(f"{self.path}: could not take the run lock (another process keeps taking it).")

    def _take_over(self, owner: dict[str, Any], why: str) -> None:
        """Remove a stale lock, unless it changed since we read it (another process took it over first)."""
        if read_lock(self.path.parent) != owner:
            return
        log.warning("taking over the run lock of %s: %s", describe_owner(owner), why)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="dltrain-lock-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease / 3):
            self.renew()

    def renew(self) -> bool:
        """Renew the lease; False (and ``lost``) when another process holds the lock now."""
        if not self.held or self.lost:
            return False
        owner = read_lock(self.path.parent)
        if owner and owner.get("token") != self.token:
            self.lost = True
            log.error(
                "the run lock of %s was taken over by %s: this process stops writing the run",
                self.path.parent,
                describe_owner(owner),
            )
            return False
        tmp = self.path.with_name(f"{LOCK_FILE}.{self.token}.tmp")
        try:
            tmp.write_text(json.dumps(self._record()), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # a full disk, a dropped mount: the lease lapses if this goes on
            log.warning("could not renew the run lock %s (%s)", self.path, exc.strerror or exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return True
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.held and not self.lost:
            owner = read_lock(self.path.parent)
            if owner is None or owner.get("token") == self.token:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def live_owner(run_dir: Path) -> dict[str, Any] | None:
    """The live owner of ``run_dir``'s lock (a fit or lr-find writing it now), else None."""
    owner = read_lock(run_dir)
    if not owner:
        return None
    alive, why = owner_alive(owner)
    return {**owner, "why": why} if alive else None


def _locked(run_dir: Path, owner: dict[str, Any], why: str) -> RunDirError:
    return RunDirError(
        f"{run_dir}: run locked by {describe_owner(owner)} ({why}). Wait for it to finish or stop it; a lock "
        "whose owner died is taken over by itself."
    )


def check_unlocked(run_dir: Path) -> None:
    """Refuse at once (``RunDirError``, exit 5) when a live process holds ``run_dir``'s lock.

    A quick look before the slow start-up (TensorFlow, data): the lock itself is still taken later, atomically.
    """
    owner = read_lock(run_dir)
    if owner:
        alive, why = owner_alive(owner)
        if alive:
            raise _locked(run_dir, owner, why)
