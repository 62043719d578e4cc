"""Faults of the second adversarial round (docs/reliability.md rows 23-35), each as a user meets it: the installed
``dltrain`` in a subprocess, real signals, real file damage, real namespaces for a second host."""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, dltrain_cmd, run_dltrain

# ------------------------------------------------------------------------------ row 24: hostile YAML


def _bomb(levels: int = 9) -> str:
    lines = ["name: bomb", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines += ["data: {kind: digits}", "model: {kind: dense}"]
    return "\n".join(lines) + "\n"


def _limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_bomb(), "expands to more than 100,000 values"),
        ("name: x\ndata: &x {kind: digits, self: *x}\nmodel: {kind: dense}\n", "refers to itself"),
    ],
    ids=["alias-bomb", "recursive-alias"],
)
def test_hostile_yaml_is_exit_2_fast_with_bounded_memory(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert len(text) < 600
    start = time.monotonic()
    # At most 3 GB of address space: the old loader grew past 11 GB on this file.
    proc = subprocess.run(
        [*dltrain_cmd(), "config", "show", str(path)],
        preexec_fn=_limited_memory,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - start < 30  # generous on a loaded machine; it was minutes (and 11 GB) before


def test_a_50_mb_config_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "w") as fh:
        fh.write("name: huge\ndata: {kind: digits}\nmodel: {kind: dense}\nx: [")
        fh.write("1, " * 17_000_000)
        fh.write("1]\n")
    assert path.stat().st_size > 50_000_000
    proc = run_dltrain("config", "show", str(path), timeout=60)
    assert proc.returncode == 2
    assert "too large for a config" in proc.stderr and "Traceback" not in proc.stderr


def test_a_long_list_under_the_size_limit_is_still_bounded(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text("name: x\ndata: {kind: digits}\nmodel: {kind: dense, units: [" + "1," * 200_000 + "1]}\n")
    proc = run_dltrain("config", "show", str(path), timeout=60)
    assert proc.returncode == 2 and "more than 100,000 values" in proc.stderr


def test_a_binary_file_as_config_says_it_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe\x00binary")
    proc = run_dltrain("config", "show", str(path))
    assert proc.returncode == 2
    assert "not a text file" in proc.stderr and "codec" not in proc.stderr


# -------------------------------------------------------------------------- row 32, row 14: config values


@pytest.mark.parametrize("seed", ["4294967296", "-1", "99999999999999999999"])
def test_a_seed_outside_the_32_bit_range_is_exit_2_at_config_time(seed: str) -> None:
    proc = run_dltrain("config", "show", "configs/digits_dense.yaml", "--set", f"seed={seed}")
    assert proc.returncode == 2 and "`seed`" in proc.stderr
    assert run_dltrain("config", "show", "configs/digits_dense.yaml", "--set", "seed=4294967295").returncode == 0


def test_a_set_error_names_the_flag_not_a_line_of_the_file() -> None:
    proc = run_dltrain("config", "show", "configs/digits_cnn.yaml", "--set", "train.epochs=ten")
    assert proc.returncode == 2
    assert "--set train.epochs=ten: `train.epochs`" in proc.stderr
    assert "digits_cnn.yaml:2" not in proc.stderr.replace("digits_cnn.yaml: ", "")


# ------------------------------------------------------------------- row 23: two machines, one run folder


def _host_cmd(host: str, *args: str) -> list[str]:
    """``dltrain ARGS`` as another machine would run it: its own hostname and its own pid namespace, so neither
    the host name nor "is that pid alive" can stand in for the cross-host check."""
    inner = " ".join(shlex.quote(a) for a in [*dltrain_cmd(), *args])
    return ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", f"hostname {host} && exec {inner}"]


def _can_unshare() -> bool:
    try:
        return subprocess.run(_host_cmd("probe", "--version"), capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_namespaces = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("unshare") or not _can_unshare(),
    reason="separate hostname and pid namespaces need unshare as root (Linux)",
)


def _slow_config(tmp_path: Path) -> Path:
    path = tmp_path / "slow.yaml"
    path.write_text(
        "name: shared\nseed: 1\n"
        "data: {kind: digits, batch_size: 16, validation_split: 0.1}\n"
        "model: {kind: dense, units: [64]}\n"
        "train: {epochs: 40, steps_per_execution: 1}\n"
    )
    return path


@pytest.mark.slow
@needs_namespaces
def test_a_live_run_on_another_host_is_not_taken_over_and_a_dead_ones_lease_expires(tmp_path: Path) -> None:
    env = {**os.environ, "DLTRAIN_LOCK_LEASE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("DLTRAIN_FAULT", None)
    run = tmp_path / "shared-run"
    cfg = _slow_config(tmp_path)
    first = subprocess.Popen(
        _host_cmd("host-a", "fit", str(cfg), "--run-dir", str(run)),
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (run / "metrics.csv").exists() or len((run / "metrics.csv").read_text().splitlines()) < 2:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "host-a never finished an epoch"
            time.sleep(0.5)
        owner = json.loads((run / ".lock").read_text())
        assert owner["host"] == "host-a"
        # host-b resumes the live run: refused, and nothing of host-a's run is touched.
        before = (run / "metrics.csv").read_text()
        second = subprocess.run(
            _host_cmd("host-b", "fit", "--resume", str(run)), env=env, cwd=REPO, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert second.returncode == 5, second.stderr[-2000:]
        assert "run locked by host-a" in second.stderr and "lease renewed" in second.stderr
        assert first.poll() is None  # still training
        assert (run / "metrics.csv").read_text().startswith(before)
        assert json.loads((run / "run.json").read_text()).get("restarts") is None
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # host-a dies without a word (its lock stays behind)
        first.wait(timeout=60)
    assert json.loads((run / ".lock").read_text())["host"] == "host-a"
    # Right away, the dead host's lease has not run out: still refused.
    early = subprocess.run(
        _host_cmd("host-b", "fit", "--resume", str(run)), env=env, cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    renewed = json.loads((run / ".lock").read_text())["renewed_unix"]
    if time.time() - renewed < 2 * 1 + 5 - 1:  # still inside the lease when it looked
        assert early.returncode == 5, early.stderr[-2000:]
    time.sleep(max(0.0, renewed + 2 * 1 + 5 + 0.5 - time.time()))
    # Once the lease has expired, host-b takes the run over and continues it (one more epoch, to finish soon).
    done = len((run / "metrics.csv").read_text().splitlines()) - 1
    taken = subprocess.run(
        _host_cmd("host-b", "fit", str(cfg), "--resume", str(run), "--set", f"train.epochs={done + 1}"),
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert "taking over the run lock of host-a" in taken.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["host"] == "host-b" and record["status"] == "finished"
    assert record["restarts"][-1]["previous_status"] == "running"
    assert len((run / "metrics.csv").read_text().splitlines()) - 1 == done + 1
    assert not (run / ".lock").exists()  # released at the end
