"""MultiWorkerMirroredStrategy as two real `dltrain fit` processes on 127.0.0.1 (docs/architecture.md, "Strategies")."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import dltrain_cmd, run_dir_from, run_dltrain

# Several TensorFlow processes talking over loopback: 20-100 s each. CI runs them (make test-all).
pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _config(path: Path, epochs: int = 2, precision: str = "auto") -> Path:
    cfg = {
        "name": "mw",
        "seed": 5,
        "data": {"kind": "digits", "batch_size": 64, "validation_split": 0.15},
        "model": {"kind": "dense", "units": [32]},  # no dropout/BN: those are per replica by design
        "optimizer": {"kind": "adam", "learning_rate": 3e-3},
        "train": {"epochs": epochs},
        "runtime": {"mixed_precision": precision},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start_workers(
    args: list[str], scratch: Path, faults: dict[int, str] | None = None
) -> list[subprocess.Popen[str]]:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TMPDIR": str(scratch),
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        if faults and index in faults:
            env["DLTRAIN_FAULT"] = faults[index]
        procs.append(subprocess.Popen([*dltrain_cmd(), *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    return procs


def test_a_lost_worker_stops_the_other_and_a_restart_of_both_resumes(tmp_path: Path) -> None:
    import keras

    # float32: the resumed two-worker run is compared with one process; bfloat16 rounds with the summation order
    cfg = _config(tmp_path / "c.yaml", epochs=3, precision="off")
    single = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    reference = keras.models.load_model(run_dir_from(single.stdout) / "model.keras").get_weights()

    run_dir = tmp_path / "shared" / "run"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    chief, other = _start_workers(
        ["fit", str(cfg), "--run-dir", str(run_dir)], scratch, {1: "kill@epoch=2,step=5"}
    )
    other.communicate(timeout=600)
    assert other.returncode == -9
    _, err = chief.communicate(timeout=120)  # the survivor notices (heartbeat timeout), it does not hang
    assert chief.returncode == 6, err[-3000:]
    assert "Restart every worker" in err and f"dltrain fit --resume {run_dir}" in err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"

    procs = _start_workers(["fit", "--resume", str(run_dir)], scratch)
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["restarts"][0]["from"]["epoch"] == 1
    weights = keras.models.load_model(run_dir / "model.keras").get_weights()
    for a, b in zip(weights, reference, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # the killed worker's scratch run was removed by its restart, the restart's own at its end
    assert not list(scratch.glob("dltrain-worker*"))


def test_two_workers_on_loopback_match_one_process_and_only_the_chief_writes(tmp_path: Path) -> None:
    import keras

    # float32: the comparison is of strategies; bfloat16 rounds differently with the summation order
    cfg = _config(tmp_path / "c.yaml", precision="off")
    single = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    reference = keras.models.load_model(run_dir_from(single.stdout) / "model.keras").get_weights()

    ports = _free_ports(2)
    hosts = [f"127.0.0.1:{p}" for p in ports]
    run_dir = tmp_path / "shared" / "run"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    procs = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(scratch)}
    env.pop("TF_CONFIG", None)
    for index in range(2):
        # the chief gets the cluster from the command line, the other worker from TF_CONFIG: both paths
        if index == 0:
            args, worker_env = ["--workers", ",".join(hosts), "--worker-index", "0"], env
        else:
            tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
            args, worker_env = [], {**env, "TF_CONFIG": json.dumps(tf_config)}
        procs.append(subprocess.Popen(
            [*dltrain_cmd(), "fit", str(cfg), "--run-dir", str(run_dir), *args],
            env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    assert f"run: {run_dir}" in outs[0][0]
    assert "the chief wrote the run" in outs[1][0]

    record = json.loads((run_dir / "run.json").read_text())
    assert record["runtime"]["strategy"] == "multi_worker" and record["runtime"]["workers"] == 2
    assert record["runtime"]["replicas"] == 2 and record["runtime"]["per_replica_batch_size"] == 32
    assert "chief" in record["runtime"]["reason"]
    weights = keras.models.load_model(run_dir / "model.keras").get_weights()
    for a, b in zip(weights, reference, strict=True):
        # Same global batch, same order; float32 sums are taken in a different order across replicas.
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not list(scratch.glob("dltrain-worker*"))  # the non-chief's scratch run was removed
    assert len(list((run_dir / "checkpoints").glob("ckpt-*.index"))) == 2


def test_auto_picks_multi_worker_from_tf_config_and_two_workers_need_a_run_dir(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "c.yaml")
    ports = _free_ports(2)
    one = {"cluster": {"worker": [f"127.0.0.1:{ports[0]}"]}, "task": {"type": "worker", "index": 0}}
    proc = run_dltrain(
        "fit", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"TF_CONFIG": json.dumps(one)}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run_dir_from(proc.stdout) / "run.json").read_text())
    assert record["runtime"]["strategy"] == "multi_worker" and "TF_CONFIG" in record["runtime"]["reason"]
    assert record["runtime"]["precision_reason"].startswith("auto: ")  # agreed over the workers' collective
    two = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": 0}}
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs2"), env={"TF_CONFIG": json.dumps(two)},
                       timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "--run-dir" in proc.stderr and "2 workers" in proc.stderr
    assert not (tmp_path / "runs2").exists()


def test_mirrored_on_two_logical_cpus_sigkill_and_resume(tmp_path: Path) -> None:
    """RELIABILITY row 13: as row 1, under MirroredStrategy; the checkpoint is written once, not per replica."""
    import keras

    cfg = _config(tmp_path / "c.yaml", epochs=3)
    data = yaml.safe_load(cfg.read_text())
    data["runtime"] = {"strategy": "mirrored"}
    cfg.write_text(yaml.safe_dump(data))
    env = {"DLTRAIN_CPU_DEVICES": "2"}
    whole = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "whole"), env=env)
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference = keras.models.load_model(run_dir_from(whole.stdout) / "model.keras").get_weights()
    killed = run_dltrain(
        "fit",
        str(cfg),
        "--runs-dir",
        str(tmp_path / "killed"),
        env={**env, "DLTRAIN_FAULT": "kill@epoch=2,step=4"},
    )
    assert killed.returncode == -9
    (run,) = list((tmp_path / "killed").iterdir())
    resumed = run_dltrain("fit", "--resume", str(run), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    weights = keras.models.load_model(run / "model.keras").get_weights()
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(weights, reference, strict=True))
    assert diff == 0.0, diff
    assert len(list((run / "checkpoints").glob("ckpt-*.index"))) == 3
    assert not [p for p in run.rglob("*") if "replica" in p.name]


def test_lr_find_on_two_workers_writes_one_run(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "c.yaml")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    procs = _start_workers(["lr-find", str(cfg), "--runs-dir", str(tmp_path / "runs")], scratch)
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    (run,) = list((tmp_path / "runs").iterdir())  # the chief's only
    suggestion = json.loads((run / "lr_find" / "suggestion.json").read_text())
    assert suggestion["lr"] is not None
    assert json.loads((run / "run.json").read_text())["runtime"]["replicas"] == 2
    assert not list(scratch.glob("dltrain-worker*"))


def test_when_the_chief_dies_the_survivor_names_the_shared_run_directory(tmp_path: Path) -> None:
    """RELIABILITY row 28: the non-chief worker used to tell the user to resume its own scratch folder."""
    cfg = _config(tmp_path / "c.yaml", epochs=3)
    run_dir = tmp_path / "shared" / "run"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    chief, other = _start_workers(
        ["fit", str(cfg), "--run-dir", str(run_dir)], scratch, {0: "kill@epoch=2,step=5"}
    )
    chief.communicate(timeout=600)
    assert chief.returncode == -9
    _, err = other.communicate(timeout=180)
    assert other.returncode == 6, err[-3000:]
    assert f"dltrain fit --resume {run_dir}" in err
    assert str(scratch) not in err.split("Restart every worker", 1)[-1]


# ------------------------------------------------------------------------------------ image folders

PADDING = 48_000  # bytes of PNG text metadata per file: its reads stand out from the rest of a process's


def _digit_folder(root: Path, sizes: dict[str, int]) -> int:
    """scikit-learn's digits as 8x8 grey PNGs in root/<split>/<class>/, ``sizes[split]`` of them, each with a
    text chunk (as a camera's or an editor's metadata) that decoders skip but a read of the file reads.
    Returns the folders' bytes."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    from sklearn.datasets import load_digits

    bunch = load_digits()
    info = PngInfo()
    info.add_text("comment", "digits " * (PADDING // 7))
    splits = np.repeat(list(sizes), list(sizes.values()))
    for i, (image, label, split) in enumerate(zip(bunch.images, bunch.target, splits, strict=False)):
        path = root / split / str(label) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).round().astype(np.uint8)).save(path, pnginfo=info)
    return sum(p.stat().st_size for p in root.rglob("*.png"))


def _measured(args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[str]:
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "out", "w") as out, open(logs / "err", "w") as err:  # files: no pipe to drain meanwhile
        return subprocess.Popen([*dltrain_cmd(), *args], env=env, stdout=out, stderr=err, text=True)


def _io_at_exit(proc: subprocess.Popen[str], logs: Path) -> dict[str, float]:
    """The process's /proc/<pid>/io counters (read() bytes and calls, every thread's) when it has exited and
    before it is reaped (``waitid`` with ``WNOWAIT``), and its CPU seconds from /proc/<pid>/stat."""
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    io = dict(line.split(": ") for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines())
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    proc.wait()
    assert proc.returncode == 0, (logs / "err").read_text()[-3000:]
    return {
        "rchar": int(io["rchar"]),
        "syscr": int(io["syscr"]),
        "cpu_s": (int(fields[11]) + int(fields[12])) / ticks,
    }


def test_two_workers_on_an_image_folder_each_decode_their_share_and_match_one_process(tmp_path: Path) -> None:
    """Each worker reads only its share of every global batch's files, and the fit matches one process.

    How the reads are observed, from outside the processes and without a hook in dltrain: Linux's per-process
    I/O counters (/proc/<pid>/io ``rchar``: bytes passed to read()/pread() by every thread of the process),
    read when the process has exited but before it is reaped. Every image file carries ~48 KB of PNG text
    metadata, so the epochs' file reads (``reads``: epochs x the training and validation files' bytes) dwarf
    what else differs between processes. One process reads them all; a worker that decodes every file and
    drops the other's share (tf.data's DATA auto-shard policy) reads as much as one process, one that decodes
    only its half reads about ``reads / 2`` less (before this test's change: 8 KB more, not 78 MB less).
    """
    import keras

    from dltrain.config import ImageFolderData
    from dltrain.data import load_splits

    root = tmp_path / "digits"
    # 21 and 5 full batches of 64 and a last one of 1: the second worker's share of it is empty
    sizes = {"train": 21 * 64 + 1, "valid": 5 * 64 + 1}
    folder_bytes = _digit_folder(root, sizes)
    data = {"kind": "image_folder", "path": str(root), "image_size": [8, 8], "color_mode": "grayscale",
            "batch_size": 64}  # fmt: skip
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "mw-folder", "seed": 5, "data": data,
        "model": {"kind": "dense", "units": [32]},
        "optimizer": {"kind": "adam", "learning_rate": 3e-3},
        "train": {"epochs": 2}, "runtime": {"mixed_precision": "off"},
    }))  # fmt: skip
    # The image checks' verdicts cached now (DLTRAIN_CACHE_DIR, tests/conftest.py): no run re-reads every file.
    assert load_splits(ImageFolderData(**data), seed=5).sizes() == {
        "train": 1345,
        "validation": 321,
        "test": 0,
    }
    reads = 2 * folder_bytes

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "DLTRAIN_FAULT")}
    env = {**env, "TF_CPP_MIN_LOG_LEVEL": "3"}
    single = _measured(
        ["fit", str(cfg), "--runs-dir", str(tmp_path / "single")], env, tmp_path / "log-single"
    )
    one = _io_at_exit(single, tmp_path / "log-single")
    reference_run = run_dir_from((tmp_path / "log-single" / "out").read_text())
    reference = keras.models.load_model(reference_run / "model.keras").get_weights()

    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    run_dir = tmp_path / "shared" / "run"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        worker_env = {**env, "TMPDIR": str(scratch), "TF_CONFIG": json.dumps(tf_config)}
        logs = tmp_path / f"log-worker{index}"
        procs.append((_measured(["fit", str(cfg), "--run-dir", str(run_dir)], worker_env, logs), logs))
    workers = [_io_at_exit(proc, logs) for proc, logs in procs]
    print(f"\nimage reads {reads / 1e6:.1f} MB; one process {one}; workers {workers}")

    record = json.loads((run_dir / "run.json").read_text())
    assert record["runtime"]["workers"] == 2 and record["runtime"]["per_replica_batch_size"] == 32
    weights = keras.models.load_model(run_dir / "model.keras").get_weights()
    for a, b in zip(weights, reference, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with open(reference_run / "metrics.csv") as a, open(run_dir / "metrics.csv") as b:
        rows = [list(csv.DictReader(fh)) for fh in (a, b)]
    for mine, theirs in zip(*rows, strict=True):  # the validation pass, sharded too, over the same examples
        assert abs(float(mine["val_loss"]) - float(theirs["val_loss"])) < 1e-4
    for counters in workers:
        # half the epochs' file reads saved (measured: 80.1 of 160.4 MB; the rest differs by ~0.2 MB)
        assert one["rchar"] - counters["rchar"] > 0.4 * reads, (counters, one, reads)
