"""Run directories: never reused, locked while in use, run.json and metrics.csv robust to damage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dltrain.errors import RunDirError
from dltrain.fsutil import atomic_write_text
from dltrain.rundir import MetricsLog, RunLock, RunRecord, create_run_dir, read_metrics, read_run_json


def test_run_directories_are_never_reused(tmp_path: Path) -> None:
    made = {create_run_dir(tmp_path, "exp") for _ in range(3)}  # same second: -1, -2 suffixes
    assert len(made) == 3 and all(p.is_dir() and p.name.startswith("exp-") for p in made)


def test_lock_held_by_a_live_process_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(RunDirError, match=f"run locked by {socket.gethostname()} pid {os.getppid()}") as err:
        RunLock(tmp_path).acquire()
    assert err.value.exit_code == 5


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(proc.stdout)
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname()}))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def _other_host_lock(renewed_ago: float, lease: float = 30.0) -> dict[str, object]:
    """A lock written by a process on another machine (another boot id and pid namespace)."""
    return {
        "host": "elsewhere", "boot_id": "another-boot", "pid_ns": 1, "pid": os.getpid(), "token": "theirs",
        "renewed_unix": time.time() - renewed_ago, "lease_seconds": lease,
    }  # fmt: skip


def test_a_live_lease_of_another_host_is_refused_even_with_a_pid_alive_here(tmp_path: Path) -> None:
    # The pid is this process's own (certainly alive here), but it is another machine's pid: the lease decides.
    (tmp_path / ".lock").write_text(json.dumps(_other_host_lock(renewed_ago=3)))
    with pytest.raises(RunDirError, match=r"run locked by elsewhere pid \d+ \(lease renewed 3s ago"):
        RunLock(tmp_path).acquire()


def test_an_expired_lease_of_another_host_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text(json.dumps(_other_host_lock(renewed_ago=2 * 30 + 6)))
    with RunLock(tmp_path) as lock:
        owner = json.loads((tmp_path / ".lock").read_text())
        assert owner["token"] == lock.token and owner["boot_id"] != "another-boot"
    assert not (tmp_path / ".lock").exists()


def test_a_reused_pid_or_namespace_number_is_not_taken_for_the_lock_owner(tmp_path: Path) -> None:
    from dltrain.rundir.lock import machine_identity, owner_alive

    parent = os.getppid()  # alive here, but the lock's owner started at another time: a reused pid, so dead
    here = {**machine_identity(), "renewed_unix": time.time(), "lease_seconds": 30.0}
    alive, why = owner_alive({**here, "pid": parent, "pid_started": 1})
    assert not alive and "gone" in why
    lock = RunLock(tmp_path)
    lock.acquire()
    try:
        assert owner_alive(json.loads((tmp_path / ".lock").read_text()))[1] == "it is this process's own lock"
    finally:
        lock.release()
    # The same kernel and pid namespace number but another hostname (a container whose namespace number was
    # reused): the pid proves nothing, the lease decides.
    alive, why = owner_alive({**here, "host": "pod-b", "pid": os.getpid()})
    assert alive and "lease renewed" in why


def test_the_holder_renews_its_lease_and_notices_a_takeover(tmp_path: Path) -> None:
    lock = RunLock(tmp_path, lease=0.3)
    lock.acquire()
    try:
        first = json.loads((tmp_path / ".lock").read_text())["renewed_unix"]
        time.sleep(0.5)
        assert json.loads((tmp_path / ".lock").read_text())["renewed_unix"] > first  # the thread renewed it
        (tmp_path / ".lock").write_text(json.dumps(_other_host_lock(renewed_ago=0)))  # another took it over
        time.sleep(0.5)
        assert lock.lost
        assert json.loads((tmp_path / ".lock").read_text())["token"] == "theirs"  # never overwritten back
    finally:
        lock.release()
    assert (tmp_path / ".lock").exists()  # the new owner's lock is left alone


def test_garbled_lock_is_treated_as_stale(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text("{garbage")
    lock = RunLock(tmp_path)
    lock.acquire()
    assert lock.held
    lock.release()


def test_run_json_records_and_finishes(tmp_path: Path) -> None:
    record = RunRecord(tmp_path, "fit", seed=3)
    assert read_run_json(tmp_path)["status"] == "running"
    record.update(extra={"a": 1})
    record.finish("failed", "why")
    data = read_run_json(tmp_path)
    assert data["status"] == "failed" and data["reason"] == "why" and data["extra"] == {"a": 1}
    assert data["seed"] == 3 and data["finished"] and data["cpu_seconds"] >= 0


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_corrupt_run_json_is_a_run_error_not_a_traceback(tmp_path: Path, content: str) -> None:
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(RunDirError, match="run.json"):
        read_run_json(tmp_path)


def test_missing_run_json(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a dltrain run directory"):
        read_run_json(tmp_path)


def test_metrics_log_appends_rows_and_reads_back(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.csv", ["epoch", "loss", "val_loss"])
    log.append({"epoch": 1, "loss": 0.5, "val_loss": float("nan")})
    log.append({"epoch": 2, "loss": 0.25})
    rows = read_metrics(tmp_path / "metrics.csv")
    assert rows[0]["epoch"] == 1 and rows[0]["loss"] == 0.5
    assert rows[0]["val_loss"] != rows[0]["val_loss"]  # nan survives the round trip
    assert "val_loss" not in rows[1]
    # re-opening an existing log keeps its rows (a resumed run appends)
    MetricsLog(tmp_path / "metrics.csv", ["epoch", "loss", "val_loss"])
    assert len(read_metrics(tmp_path / "metrics.csv")) == 2


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_write_honours_the_umask_not_mkstemps_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
