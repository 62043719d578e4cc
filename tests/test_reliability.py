"""Faults of the second adversarial round (docs/reliability.md rows 23-35), each as a user meets it: the installed
``dltrain`` in a subprocess, real signals, real file damage, real namespaces for a second host."""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
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
    # At most 3 GB of address space (the old loader grew past 11 GB on this file) and 120 s (it took minutes).
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
    assert (
        run_dltrain("config", "show", "configs/digits_dense.yaml", "--set", "seed=4294967295").returncode == 0
    )


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
    return [
        "unshare",
        "--uts",
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        f"hostname {host} && exec {inner}",
    ]


def _can_unshare() -> bool:
    try:
        return (
            subprocess.run(_host_cmd("probe", "--version"), capture_output=True, timeout=60).returncode == 0
        )
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
    env = {**os.environ, "DLTRAIN_LOCK_LEASE": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
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
    lock = json.loads((run / ".lock").read_text())
    assert lock["host"] == "host-a"
    limit = 2 * lock["lease_seconds"] + 5  # lease.py: taken over this long after the last renewal
    done = len((run / "metrics.csv").read_text().splitlines()) - 1
    resume_b = _host_cmd("host-b", "fit", str(cfg), "--resume", str(run), "--set", f"train.epochs={done + 1}")
    # Right away, the dead host's lease has not run out: still refused (the look comes before TensorFlow starts).
    early = subprocess.run(resume_b, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if early.returncode == 5:
        assert "run locked by host-a" in early.stderr, early.stderr[-2000:]
        time.sleep(max(0.0, lock["renewed_unix"] + limit + 0.5 - time.time()))
        # Once the lease has expired, host-b takes the run over and continues it (one more epoch, to finish soon).
        taken = subprocess.run(resume_b, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    else:  # a machine so loaded that the early look came after the lease ran out: then it took the run over
        taken = early
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert "taking over the run lock of host-a" in taken.stderr
    age = re.search(r"lease renewed (\d+)s ago", taken.stderr)
    # only once it had expired
    assert age is not None and int(age.group(1)) >= limit - 1, taken.stderr[-2000:]
    record = json.loads((run / "run.json").read_text())
    assert record["host"] == "host-b" and record["status"] == "finished"
    assert record["restarts"][-1]["previous_status"] == "running"
    assert len((run / "metrics.csv").read_text().splitlines()) - 1 == done + 1
    assert not (run / ".lock").exists()  # released at the end


def test_a_reader_that_stops_reading_is_not_an_error() -> None:
    """`dltrain ... | head -1`: once the reader has gone, no BrokenPipe traceback and no exit 1."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before dltrain writes its first result line
    proc = subprocess.Popen(
        [*dltrain_cmd(), "config", "show", "configs/digits_cnn.yaml"], cwd=REPO, stdout=write_end,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write_end)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


# ------------------------------------------------------------------------------- helpers for run faults


def _small(tmp_path: Path, name: str = "c.yaml", **train: object) -> Path:
    """A digits MLP whose validation loss is best at epoch 3 of 4 (SGD at 0.9 overshoots in epoch 4)."""
    settings = {"epochs": 4, "keep_checkpoints": 1, **train}
    path = tmp_path / name
    path.write_text(
        "name: small\nseed: 1\n"
        "data: {kind: digits, batch_size: 32, validation_split: 0.2}\n"
        "model: {kind: dense, units: [32]}\n"
        "optimizer: {kind: sgd, learning_rate: 0.9}\n"
        f"train: {json.dumps(settings)}\n"
    )
    return path


def _one_run(runs: Path) -> Path:
    found = [p for p in runs.iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------ row 25: a damaged best checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("keep", [1, 3])
def test_a_damaged_best_checkpoint_is_never_exported_as_best(tmp_path: Path, keep: int) -> None:
    cfg = _small(tmp_path, keep_checkpoints=keep)
    killed = run_dltrain(
        "fit", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"DLTRAIN_FAULT": "kill@epoch=4,step=1"}
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = _one_run(tmp_path / "runs")
    assert [r.split(",")[0] for r in (run / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]
    _flip_a_byte(next((run / "checkpoints" / "best").glob("best-3.data-*")))
    resumed = run_dltrain("fit", "--resume", str(run))
    record = json.loads((run / "run.json").read_text())
    if keep == 1:
        # Epoch 3's own checkpoint was rotated out: nothing holds the best weights any more. Exit 5, no model.
        assert resumed.returncode == 5, resumed.stderr[-2000:]
        assert "best epoch's weights (epoch 3) cannot be restored" in resumed.stderr
        assert "best/best-3 (damaged)" in resumed.stderr
        assert not (run / "model.keras").exists()
        assert record["status"] == "failed"
    else:
        # Epoch 3's checkpoint is still kept: the best weights come from it, and run.json says so.
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert record["best"]["epoch"] == 3
        assert record["exported"]["epoch"] == 3 and record["exported"]["source"].startswith("ckpt-")
        reference = run_dltrain(
            "fit",
            str(_small(tmp_path, "ref.yaml", keep_checkpoints=keep)),
            "--runs-dir",
            str(tmp_path / "ref"),
        )
        assert reference.returncode == 0
        ref = json.loads((_one_run(tmp_path / "ref") / "run.json").read_text())
        assert ref["exported"]["epoch"] == 3
        # The same weights as an undamaged run's (the files' checksums differ: a .keras zip holds its save time).
        import keras

        ours = keras.saving.load_model(run / "model.keras").get_weights()
        theirs = keras.saving.load_model(_one_run(tmp_path / "ref") / "model.keras").get_weights()
        assert len(ours) == len(theirs) and all(
            np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True)
        )


# --------------------------------------------------------- row 27: disk full at the very first checkpoint


@pytest.mark.slow
def test_after_a_full_disk_at_the_first_checkpoint_the_advice_to_resume_works(tmp_path: Path) -> None:
    cfg = _small(tmp_path, epochs=2)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8_000, 8_000))

    proc = subprocess.run(
        [*dltrain_cmd(), "fit", str(cfg), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=600, preexec_fn=small_files, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 5 and "Free some space, then resume" in proc.stderr, proc.stderr[-2000:]
    run = _one_run(tmp_path / "runs")
    assert not list((run / "checkpoints").glob("ckpt-*.index"))
    resumed = run_dltrain("fit", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "starts again from epoch 1" in resumed.stderr
    assert [r.split(",")[0] for r in (run / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]


# --------------------------------------------------- row 33: SIGTERM while fit's lr-find phase sweeps


@pytest.mark.slow
def test_sigterm_during_the_lr_find_phase_of_fit_is_a_clean_stop(tmp_path: Path) -> None:
    cfg = _small(tmp_path, epochs=1)
    cfg.write_text(cfg.read_text().replace("learning_rate: 0.9", "learning_rate: auto"))
    proc = run_dltrain(
        "fit", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"DLTRAIN_FAULT": "sigterm@lr-find=5"}
    )
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert (
        "stopped by SIGTERM during lr-find" in proc.stderr
        and "Resume with: dltrain fit --resume" in proc.stderr
    )
    run = _one_run(tmp_path / "runs")
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert not (run / ".lock").exists()
    resumed = run_dltrain("fit", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "run.json").read_text())["learning_rate"]["source"] == "lr-find"


# --------------------------------------------------------- row 34: damaged run files on resume


@pytest.mark.slow
def test_damaged_run_files_on_resume_are_exit_5_naming_the_file(tmp_path: Path) -> None:
    cfg = _small(tmp_path, epochs=2)
    killed = run_dltrain(
        "fit", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"DLTRAIN_FAULT": "kill@epoch=2,step=3"}
    )
    assert killed.returncode == -9
    run = _one_run(tmp_path / "runs")
    good_metrics, good_record = (run / "metrics.csv").read_bytes(), (run / "run.json").read_text()

    (run / "metrics.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe binary junk")
    proc = run_dltrain("fit", "--resume", str(run))
    assert proc.returncode == 5 and "metrics.csv: corrupt" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr

    (run / "metrics.csv").write_bytes(good_metrics)
    (run / "run.json").write_text(good_record.replace('"data": {', '"data": "x", "was_data": {', 1))
    proc = run_dltrain("fit", "--resume", str(run))
    assert proc.returncode == 5 and "run.json: `data` is a string, expected an object" in proc.stderr
    assert "Traceback" not in proc.stderr

    (run / "run.json").write_text(good_record)
    assert run_dltrain("fit", "--resume", str(run)).returncode == 0  # the undamaged files resume


# ----------------------------------------------------- row 30: evaluate while a fit of the run is live


@pytest.mark.slow
def test_evaluate_refuses_a_run_being_trained_and_records_which_model_it_scored(tmp_path: Path) -> None:
    cfg = _slow_config(tmp_path)
    fit = subprocess.Popen(
        [*dltrain_cmd(), "fit", str(cfg), "--run-dir", str(tmp_path / "run")], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    run = tmp_path / "run"
    try:
        deadline = time.monotonic() + 300
        while not (run / "metrics.csv").exists() or len((run / "metrics.csv").read_text().splitlines()) < 2:
            assert fit.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        proc = run_dltrain("evaluate", str(run))
        assert proc.returncode == 5, proc.stderr[-2000:]
        assert "a fit is training this run now" in proc.stderr
        assert not (run / "eval").exists()
    finally:
        fit.kill()
        fit.wait(timeout=60)
    # A finished run: eval/metrics.json names the model it scored, by epoch and checksum.
    done = run_dltrain("fit", str(_small(tmp_path, epochs=2)), "--run-dir", str(tmp_path / "done"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert run_dltrain("evaluate", str(tmp_path / "done")).returncode == 0
    scored = json.loads((tmp_path / "done" / "eval" / "test" / "metrics.json").read_text())
    exported = json.loads((tmp_path / "done" / "run.json").read_text())["exported"]
    assert scored["model"]["sha256"] == exported["sha256"] and scored["model"]["epoch"] == exported["epoch"]
    assert scored["model"]["matches_fit"] is True and scored["schema_version"] == 1


# ------------------------------------------------- row 31: a read-only run, another user's run; row 37


def _as_nobody(*args: str) -> list[str]:
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *dltrain_cmd(), *args]


def _read_only(run: Path, *args: str) -> list[str]:
    inner = " ".join(shlex.quote(a) for a in [*dltrain_cmd(), *args])
    mount = f"mount --bind -o ro {shlex.quote(str(run))} {shlex.quote(str(run))}"
    return ["unshare", "--mount", "sh", "-c", f"{mount} && exec {inner}"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished digits run in a folder every user may read (pytest's own temp folder is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="dltrain-shared-", dir="/tmp"))
    base.chmod(0o755)
    cfg = _small(tmp_path_factory.mktemp("cfg"), epochs=2)
    proc = run_dltrain("fit", str(cfg), "--run-dir", str(base / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for path in [base / "run", *(base / "run").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield base / "run"
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to act as another user"
)
def test_another_users_run_is_exit_5_naming_the_path(finished_run: Path, tmp_path: Path) -> None:
    if subprocess.run(_as_nobody("--version"), capture_output=True, timeout=60).returncode != 0:
        pytest.skip("the virtualenv is not readable by another user here")
    env = {**os.environ, "HOME": "/tmp", "TF_CPP_MIN_LOG_LEVEL": "3"}
    before = sorted(p.name for p in finished_run.iterdir())
    for args in (("evaluate", str(finished_run)), ("fit", "--resume", str(finished_run))):
        proc = subprocess.run(
            _as_nobody(*args), capture_output=True, text=True, timeout=300, cwd="/tmp", env=env
        )
        assert proc.returncode == 5, (args, proc.stderr[-2000:])
        assert "not writable by this user" in proc.stderr and str(finished_run) in proc.stderr
        assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in finished_run.iterdir()) == before


@pytest.mark.slow
@needs_namespaces
def test_a_read_only_run_directory_is_exit_5_before_any_work(finished_run: Path) -> None:
    for args in (("evaluate", str(finished_run)), ("fit", "--resume", str(finished_run))):
        proc = subprocess.run(
            _read_only(finished_run, *args), capture_output=True, text=True, timeout=300, cwd=REPO
        )
        assert proc.returncode == 5, (args, proc.stderr[-2000:])
        assert str(finished_run) in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_resume_cannot_shrink_train_epochs_below_what_was_trained(finished_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    before = (copy / "config.yaml").read_text()
    proc = run_dltrain("fit", str(copy / "config.yaml"), "--set", "train.epochs=1", "--resume", str(copy))
    assert proc.returncode == 2 and "has finished 2 epochs" in proc.stderr, proc.stderr[-2000:]
    assert (copy / "config.yaml").read_text() == before


# ---------------------------------------- row 26: images Pillow's verify passes but TensorFlow cannot decode


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    return out


def _bad_images(folder: Path, good: np.ndarray) -> dict[str, Path]:
    """Four files that pass Pillow's cheap checks (and, for the PNGs, every CRC) but not TensorFlow."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    Image.fromarray(good > 127).save(folder / "one_bit.bmp")  # Pillow writes 1 bit per pixel
    made["one_bit"] = folder / "one_bit.bmp"
    header = Image.fromarray(good).convert("RGB")
    header.save(folder / "sixteen.bmp")
    raw = bytearray((folder / "sixteen.bmp").read_bytes())
    raw[28:30] = (16).to_bytes(2, "little")  # 16 bits per pixel: valid for Pillow's header parser
    (folder / "sixteen.bmp").write_bytes(bytes(raw))
    made["sixteen"] = folder / "sixteen.bmp"
    Image.fromarray(good).save(folder / "ok.png")
    chunks = _png_chunks((folder / "ok.png").read_bytes())
    ihdr = bytearray(chunks[0][1])
    ihdr[4:8] = (good.shape[0] * 3).to_bytes(4, "big")  # promises three times the rows the data holds
    (folder / "short.png").write_bytes(_png_bytes([(b"IHDR", bytes(ihdr)), *chunks[1:]]))
    made["short"] = folder / "short.png"
    idat = [i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT"][0]
    body = bytearray(chunks[idat][1])
    for i in range(2, len(body) - 4, 7):
        body[i] ^= 0x5A  # corrupt the deflate stream; the chunk CRC is recomputed, so verify() passes
    bad = list(chunks)
    bad[idat] = (b"IDAT", bytes(body))
    (folder / "deflate.png").write_bytes(_png_bytes(bad))
    made["deflate"] = folder / "deflate.png"
    (folder / "ok.png").unlink()
    return made


@pytest.fixture(scope="module")
def fashion_images() -> np.ndarray:
    from dltrain.data.formats import read_idx_folder

    arrays = read_idx_folder(Path("/usr/share/datasets/fashion-mnist"))
    if arrays is None:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    return arrays["x_test"]


def _image_root(tmp_path: Path, images: np.ndarray) -> Path:
    from dltrain.data.images import write_image_folder

    root = tmp_path / "pics"
    labels = np.repeat([0, 1], 20)
    write_image_folder(root, images[:40], labels, ["cat", "dog"])
    return root


def test_images_tensorflow_cannot_decode_are_found_before_training(
    tmp_path: Path, fashion_images: np.ndarray
) -> None:
    import tensorflow as tf
    from PIL import Image

    from dltrain.config.schema import ImageFolderData
    from dltrain.data import load_splits
    from dltrain.errors import DataError

    made = _bad_images(tmp_path / "bad", fashion_images[0])
    for name, path in made.items():
        with Image.open(path) as image:  # what the old pre-check did: it passed
            if path.suffix == ".png":
                image.verify()
        with pytest.raises(tf.errors.InvalidArgumentError):  # and TensorFlow cannot decode them
            tf.io.decode_image(tf.io.read_file(str(path)), channels=1, expand_animations=False)
        root = _image_root(tmp_path / name, fashion_images)
        target = root / "dog" / path.name
        shutil.copy(path, target)
        cfg = ImageFolderData(kind="image_folder", path=root, image_size=[28, 28], color_mode="grayscale")
        with pytest.raises(DataError, match=str(target)):
            load_splits(cfg, 1)
        skipping = cfg.model_copy(update={"bad_images": "skip"})
        splits = load_splits(skipping, 1)
        every = [str(p) for part in ("train", "validation", "test") for p in splits.manifest.get(part, [])]
        assert str(target) not in every and sum(splits.sizes().values()) == 40


# ------------------------------------------------------------------------- row 29: one class only


@pytest.mark.parametrize(
    "rows",
    [["name,r", "red,1", "red,2", "red,3", "red,4", "red,5", "red,6"], ["name,r", "red,1"]],
    ids=["one-label", "one-row"],
)
def test_a_classification_with_one_class_is_exit_3(tmp_path: Path, rows: list[str]) -> None:
    path = tmp_path / "one.csv"
    path.write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"name: one\ndata: {{kind: csv, path: {path}, label: name, task: classification, validation_split: 0}}\n"
        "model: {kind: dense}\ntrain: {epochs: 1, monitor: loss}\n"
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "needs at least two classes" in proc.stderr and not (tmp_path / "runs").exists()


# -------------------------------------------------------- row 35: a symlink loop inside an image folder


def test_a_symlink_loop_does_not_multiply_a_class_or_leak_across_splits(
    tmp_path: Path, fashion_images: np.ndarray
) -> None:
    from dltrain.config.schema import ImageFolderData
    from dltrain.data import load_splits
    from dltrain.errors import DataError

    root = _image_root(tmp_path, fashion_images)
    (root / "cat" / "loop").symlink_to(".")
    cfg = ImageFolderData(kind="image_folder", path=root, image_size=[28, 28], color_mode="grayscale",
                          validation_split=0.2, test_split=0.2)  # fmt: skip
    splits = load_splits(cfg, 1)
    assert sum(splits.sizes().values()) == 40  # 20 cats, not 20 x 40
    # A link that reaches the same file from another class: the file would be in two splits (or classes).
    (root / "dog" / "also_a_cat.png").symlink_to(root / "cat" / "00000.png")
    with pytest.raises(DataError, match="00000.png.*more than once"):
        load_splits(cfg, 1)
