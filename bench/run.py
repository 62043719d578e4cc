"""dltrain's benchmark (issue 6): dltrain vs a plain Keras script vs plain PyTorch, one alternating run.

Every measurement is a fresh process, waited for with ``os.wait4``: its user + system CPU time and its peak
resident memory (ru_maxrss) are that process's alone. Per-epoch figures come from the runners' own logs
(dltrain's metrics.csv ``cpu_seconds``; the plain scripts' JSON, both process CPU time of the epoch).
Results go to results.json (every raw figure) and RESULTS.md (rendered from it by ``report.py``).

    python bench/run.py                 # full: bench/RESULTS.md (45-75 min on 2 cores)
    python bench/run.py --mode quick    # one round, fewer runs: bench/out/RESULTS-quick.md
    python bench/run.py --mode smoke    # 2,048 images, 1-2 epochs: checks the plumbing in a few minutes
    python bench/run.py --only startup,lr_find   # re-run some sections, keep the others from results.json
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = Path(sys.executable)
DLTRAIN = PYTHON.parent / "dltrain"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CONVNET = BENCH / "configs" / "mnist_convnet.yaml"  # the keras.io mnist_convnet network, dltrain terms
RECOMMENDED = Path("configs") / "fashion_mnist_cnn.yaml"  # dltrain's recommended config, in dltrain_src()
# Its quickest config (time to 90%): run as shipped, its own epoch count.
FAST = Path("configs") / "fashion_mnist_fast.yaml"
RUNNERS = ("keras", "dltrain", "torch")  # the order of every throughput round
SECTIONS = ("startup", "throughput", "recommended", "time_to_accuracy", "lr_find", "scaling", "precision")
# Section "precision" (issue 15, goal 4): every shipped config that trains offline, under mixed_precision auto
# and off, each scored by `dltrain evaluate`. Configs that need a download (mnist_cnn: keras.datasets;
# pets_finetune: ImageNet weights), a folder the user writes first (fashion_folder_cnn: the same network and
# data as fashion_mnist_cnn, from PNG files) or that are a sweep's search space (digits_sweep) are left out.
# Each runs ``plan.precision_seeds`` seeds (0, 1, ...): one seed's difference is mostly seed noise (two
# float32 runs of fashion_mnist_cnn, seeds 0 and 42, landed 0.2 points apart; digits_cnn's two seeds 1.1).
PRECISION_CONFIGS = (
    "colors_mlp", "digits_dense", "digits_cnn", "digits_rnn", "books_rnn", "sunspots_gru",
    "fashion_mnist_fast", "fashion_mnist_cnn",
)  # fmt: skip
# Section "startup" also times `dltrain evaluate` of a small run (issue 15, goal 5): this config's.
EVALUATE_CONFIG = Path("configs") / "colors_mlp.yaml"
# Section "recommended": the recommended network (configs/fashion_mnist_cnn.yaml) as plain Keras in float32,
# dltrain with its defaults (mixed_precision auto, fused batch norm) and dltrain in float32; all on the same
# training images (no validation split), one round = the three back to back.
RECOMMENDED_RUNNERS = ("keras", "dltrain", "dltrain_float32")
RECOMMENDED_SETS = ["data.validation_split=0", "train.monitor=loss"]


@dataclass(frozen=True)
class Plan:
    """How much of everything a mode runs."""

    mode: str
    rounds: int  # throughput: rounds of (keras, dltrain, torch)
    epochs: int  # throughput: epochs per run (the first is dropped)
    train_limit: int | None  # smoke: the first N training images only
    plain_epochs: int  # time to accuracy: the plain Keras script's epochs
    dltrain_epochs: tuple[int, ...]  # time to accuracy: one one-cycle run per total epoch count
    auto_epochs: tuple[int, ...]  # ... and runs with learning_rate: auto (lr-find first)
    startup_repeats: int
    lr_find_repeats: int
    scaling_epochs: int
    scale_factors: tuple[int, ...]
    scaling_models: dict[str, list[int]] = field(default_factory=dict)
    recommended_rounds: int = 1  # section recommended: rounds of (keras, dltrain, dltrain_float32)
    precision_seeds: int = 1  # section precision: seeds per small config and precision


PLANS = {
    "full": Plan("full", 3, 3, None, 20, (3,), (3,), 5, 2, 1, (1, 2, 4), {"deeper [32,64,128]": [32, 64, 128]}, 2, 5),
    "quick": Plan("quick", 1, 3, None, 20, (), (), 3, 1, 2, (1, 2, 4), {"wider [64,128]": [64, 128]}, 1, 1),
    "smoke": Plan("smoke", 1, 2, 2048, 2, (1,), (1,), 2, 1, 2, (1, 2), {"wider [64,128]": [64, 128]}, 1, 1),
}  # fmt: skip


class BenchError(RuntimeError):
    pass


# Where the dltrain under test comes from: a snapshot of HEAD (default; other people may be editing the
# working tree during an hour-long run) or the working tree itself (--dltrain worktree).
_SOURCE: dict[str, Path] = {"root": ROOT}


def dltrain_src() -> Path:
    return _SOURCE["root"]


def snapshot_head(dest: Path) -> Path:
    """``git archive HEAD dltrain configs`` into ``dest``; children import dltrain from it (PYTHONPATH)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "HEAD", "dltrain", "configs"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


# ------------------------------------------------------------------------------------------ processes


@dataclass
class Proc:
    """One finished child process: its own wall, CPU and peak memory."""

    cmd: list[str]
    rc: int
    wall: float
    cpu: float
    max_rss_mb: float
    log: str
    # The largest RssAnon (/proc/PID/status) seen by sampling every 20 ms: the process's own memory, without
    # the pages of shared libraries it maps (TensorFlow's alone are ~500 MB of ru_maxrss). Misses spikes
    # shorter than a sample; ru_maxrss does not.
    peak_anon_mb: float = 0.0


# PyTorch's OpenMP threads busy-wait at every barrier by default. On this shared 2-core machine, with other
# tenants' processes on the cores, that spinning tripled its CPU time per step (measured by hand: 0.26-0.32
# CPU-s per step with the default, 0.095 with PASSIVE, 0.079 with one thread), which would measure the
# neighbours, not PyTorch. The torch runner therefore gets OMP_WAIT_POLICY=PASSIVE (unless already set).
TORCH_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLTRAIN_")}
    for key, value in (extra or {}).items():
        env.setdefault(key, value)
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", COLUMNS="200")
    if dltrain_src() != ROOT:  # the console script's sys.path[0] is .venv/bin: PYTHONPATH comes first
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(dltrain_src()), env.get("PYTHONPATH")]))
    return env


def measure(cmd: list[str | Path], log: Path, check: bool = True, env: dict[str, str] | None = None) -> Proc:
    """Run ``cmd`` to its end; rusage of exactly that process from ``os.wait4``."""
    args = [str(c) for c in cmd]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env(env))
        anon = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            anon = max(anon, _rss_anon_kb(proc.pid))
            time.sleep(0.02)
        wall = time.monotonic() - t0
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    result = Proc(
        args, rc, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, str(log), anon / 1024
    )
    print(f"  {wall:7.1f}s wall {result.cpu:7.1f} CPU-s {result.max_rss_mb:6.0f} MB  {' '.join(args[1:4])}")
    if check and rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise BenchError(f"{' '.join(args)} exited {rc}; log {log}:\n{tail}")
    return result


def _rss_anon_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("RssAnon:")), 0)
    except OSError:  # exited between wait4 and open
        return 0


# ----------------------------------------------------------------------------------------------- data


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find_idx(stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (FASHION_DIR / name).is_file():
            return FASHION_DIR / name
    raise BenchError(
        f"Fashion-MNIST is not in {FASHION_DIR}: apt-get install dataset-fashion-mnist (Debian/Ubuntu)."
    )


@dataclass
class DataFiles:
    """The npz files every runner reads: the real data (or its smoke subset), and repeated copies."""

    base: Path
    repeated: dict[int, Path]
    train_images: int


def prepare_data(work: Path, plan: Plan) -> DataFiles:
    """Writes the npz files in a child process and returns their paths.

    A child: on Linux a process's ru_maxrss starts at its parent's peak RSS when it is spawned (vfork +
    exec), so the driver never holds the arrays itself and keeps its own peak far below any runner's.
    """
    cmd = [str(PYTHON), __file__, "--mode", plan.mode, "--prepare-data", str(work)]
    subprocess.run(cmd, check=True, cwd=ROOT, env=child_env())
    info = json.loads((work / "data.json").read_text())
    return DataFiles(
        Path(info["base"]), {int(k): Path(v) for k, v in info["repeated"].items()}, info["train_images"]
    )


def write_data(work: Path, plan: Plan) -> None:
    """The body of ``prepare_data``, run in the child."""
    arrays = {
        "x_train": read_idx(find_idx("train-images-idx3-ubyte")),
        "y_train": read_idx(find_idx("train-labels-idx1-ubyte")),
        "x_test": read_idx(find_idx("t10k-images-idx3-ubyte")),
        "y_test": read_idx(find_idx("t10k-labels-idx1-ubyte")),
    }
    if plan.train_limit:
        arrays["x_train"] = arrays["x_train"][: plan.train_limit]
        arrays["y_train"] = arrays["y_train"][: plan.train_limit]
    work.mkdir(parents=True, exist_ok=True)
    base = work / "fashion_mnist.npz"
    np.savez(base, **arrays)  # type: ignore[arg-type]  # numpy's stub types the first ** as allow_pickle
    repeated = {1: base}
    for k in plan.scale_factors:
        if k > 1:
            path = work / f"fashion_mnist_x{k}.npz"
            tiled = {
                **arrays,
                "x_train": np.tile(arrays["x_train"], (k, 1, 1)),
                "y_train": np.tile(arrays["y_train"], k),
            }
            np.savez(path, **tiled)  # type: ignore[arg-type]
            repeated[k] = path
    info = {
        "base": str(base),
        "repeated": {k: str(v) for k, v in repeated.items()},
        "train_images": len(arrays["y_train"]),
    }
    (work / "data.json").write_text(json.dumps(info))


# -------------------------------------------------------------------------------------------- runners


def npz_sets(path: Path) -> list[str]:
    return ["data.kind=npz", f"data.path={path}"]


def read_csv(path: Path) -> list[dict[str, float]]:
    with open(path) as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def dltrain_fit(config: Path, run_dir: Path, sets: list[str], log: Path) -> dict[str, Any]:
    cmd: list[str | Path] = [DLTRAIN, "fit", config, "--run-dir", run_dir]
    for item in sets:
        cmd += ["--set", item]
    proc = measure(cmd, log)
    run_json = json.loads((run_dir / "run.json").read_text())
    rows = read_csv(run_dir / "metrics.csv")
    return {
        "runner": "dltrain",
        "process": asdict(proc),
        "parameters": run_json["model"]["parameters"],
        "train_images": run_json["data"].get("sizes", {}).get("train") or run_json["data"].get("train"),
        "learning_rate": run_json.get("learning_rate"),
        "epochs": [
            {"epoch": int(r["epoch"]), "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"],
             "loss": r["loss"], "accuracy": r.get("accuracy"), "val_accuracy": r.get("val_accuracy")}
            for r in rows
        ],
    }  # fmt: skip


def dltrain_evaluate(run_dir: Path, log: Path) -> dict[str, Any]:
    proc = measure([DLTRAIN, "evaluate", run_dir], log)
    metrics = json.loads((run_dir / "eval" / "test" / "metrics.json").read_text())
    scores = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}  # accuracy, or mae / r2 ...
    return {"process": asdict(proc), "test_accuracy": metrics.get("accuracy"), "test": scores}


def plain(
    runner: str,
    data: Path,
    epochs: int,
    out: Path,
    log: Path,
    test_each_epoch: bool = False,
    network: str = "convnet",
) -> dict[str, Any]:
    script = BENCH / ("plain_keras.py" if runner == "keras" else "plain_torch.py")
    cmd: list[str | Path] = [PYTHON, script, "--data", data, "--epochs", str(epochs), "--out", out]
    if test_each_epoch:
        cmd.append("--test-each-epoch")
    if network != "convnet":
        cmd += ["--network", network]
    proc = measure(cmd, log, env=TORCH_ENV if runner == "torch" else None)
    run_log = json.loads(out.read_text())
    return {**run_log, "process": asdict(proc)}


# ------------------------------------------------------------------------------------------- sections


def section_startup(plan: Plan, work: Path) -> dict[str, Any]:
    """``dltrain --help``, ``python -c 'import tensorflow'`` and ``dltrain evaluate`` of a small run
    (the colours CSV, trained first and not timed), alternating."""
    small_run = work / "runs" / "startup-colors"
    measure(
        [DLTRAIN, "fit", dltrain_src() / EVALUATE_CONFIG, "--run-dir", small_run],
        work / "logs" / "startup-fit.log",
    )
    commands: dict[str, list[str | Path]] = {
        "dltrain --help": [DLTRAIN, "--help"],
        "import tensorflow": [PYTHON, "-c", "import tensorflow"],
        "dltrain evaluate": [DLTRAIN, "evaluate", small_run],
    }
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
    for i in range(plan.startup_repeats):
        for name, cmd in commands.items():
            slug = name.replace(" ", "-")
            out[name].append(asdict(measure(cmd, work / "logs" / f"startup-{i}-{slug}.log")))
    return {"runs": out}


def section_throughput(plan: Plan, work: Path, data: DataFiles) -> dict[str, Any]:
    """Rounds of keras, dltrain, torch on the same data and network; every run a fresh process."""
    sets = [f"train.epochs={plan.epochs}"] + (npz_sets(data.base) if plan.train_limit else [])
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in RUNNERS}
    for rnd in range(plan.rounds):
        print(f"throughput round {rnd + 1}/{plan.rounds}")
        for runner in RUNNERS:
            tag = f"throughput-{rnd}-{runner}"
            if runner == "dltrain":
                result = dltrain_fit(CONVNET, work / "runs" / tag, sets, work / "logs" / f"{tag}.log")
            else:
                result = plain(
                    runner, data.base, plan.epochs, work / f"{tag}.json", work / "logs" / f"{tag}.log"
                )
            runs[runner].append({"round": rnd, **result})
    return {
        "epochs_per_run": plan.epochs,
        "data": "fashion_mnist" if not plan.train_limit else str(data.base),
        "runs": runs,
    }


def section_recommended(plan: Plan, work: Path, data: DataFiles) -> dict[str, Any]:
    """Rounds of plain Keras (float32), dltrain defaults and dltrain float32 on the recommended network."""
    sets = [f"train.epochs={plan.epochs}", *RECOMMENDED_SETS] + (
        npz_sets(data.base) if plan.train_limit else []
    )
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in RECOMMENDED_RUNNERS}
    for rnd in range(plan.recommended_rounds):
        print(f"recommended round {rnd + 1}/{plan.recommended_rounds}")
        for runner in RECOMMENDED_RUNNERS:
            tag = f"recommended-{rnd}-{runner}"
            log = work / "logs" / f"{tag}.log"
            if runner == "keras":
                result = plain(
                    "keras", data.base, plan.epochs, work / f"{tag}.json", log, True, "recommended"
                )
                result["test_accuracy"] = result["epochs"][-1].get("test_accuracy")
            else:
                extra = ["runtime.mixed_precision=off"] if runner == "dltrain_float32" else []
                run_dir = work / "runs" / tag
                result = dltrain_fit(dltrain_src() / RECOMMENDED, run_dir, sets + extra, log)
                result["precision"] = json.loads((run_dir / "run.json").read_text())["runtime"]["precision"]
                result["test_accuracy"] = dltrain_evaluate(run_dir, work / "logs" / f"{tag}-eval.log")[
                    "test_accuracy"
                ]
            runs[runner].append({"round": rnd, **result})
    return {
        "epochs_per_run": plan.epochs,
        "sets": sets,
        "data": "fashion_mnist" if not plan.train_limit else str(data.base),
        "runs": runs,
    }


def section_time_to_accuracy(plan: Plan, work: Path, data: DataFiles) -> dict[str, Any]:
    """Plain Keras (constant Adam 1e-3, test accuracy after every epoch) vs dltrain's recommended config."""
    data_sets = npz_sets(data.base) if plan.train_limit else []
    print("time to accuracy: plain keras")
    plain_run = plain(
        "keras", data.base, plan.plain_epochs, work / "tta-keras.json", work / "logs" / "tta-keras.log", True
    )
    dltrain_runs = []
    variants = [(n, False) for n in plan.dltrain_epochs] + [(n, True) for n in plan.auto_epochs]
    for epochs, auto in variants:
        tag = f"tta-dltrain-{epochs}{'-auto' if auto else ''}"
        print(f"time to accuracy: {tag}")
        sets = [f"train.epochs={epochs}", *data_sets] + (["optimizer.learning_rate=auto"] if auto else [])
        run_dir = work / "runs" / tag
        fit = dltrain_fit(dltrain_src() / RECOMMENDED, run_dir, sets, work / "logs" / f"{tag}.log")
        evaluation = dltrain_evaluate(run_dir, work / "logs" / f"{tag}-evaluate.log")
        dltrain_runs.append({"total_epochs": epochs, "lr_auto": auto, **fit, "evaluate": evaluation})
    # Both shipped Fashion-MNIST configs exactly as shipped (their own epochs): goals 2a and 2b of issue 15.
    for tag, config in (("tta-dltrain-shipped", RECOMMENDED), ("tta-dltrain-fast", FAST)):
        print(f"time to accuracy: {tag}")
        run_dir = work / "runs" / tag
        fit = dltrain_fit(dltrain_src() / config, run_dir, list(data_sets), work / "logs" / f"{tag}.log")
        evaluation = dltrain_evaluate(run_dir, work / "logs" / f"{tag}-evaluate.log")
        total = len(fit["epochs"])
        dltrain_runs.append(
            {"total_epochs": total, "lr_auto": False, "config": str(config), "shipped": True, **fit,
             "evaluate": evaluation}
        )  # fmt: skip
    return {"plain": plain_run, "dltrain": dltrain_runs}


def section_lr_find(plan: Plan, work: Path, data: DataFiles) -> dict[str, Any]:
    """The sweep's CPU: a default lr-find minus one of 10 steps (same start-up, data, model, tracing, plot)."""
    data_sets = npz_sets(data.base) if plan.train_limit else []
    out: dict[str, list[dict[str, Any]]] = {"default": [], "short": []}
    for i in range(plan.lr_find_repeats):
        for name, extra in (("default", []), ("short", ["lr_find.num_steps=10"])):
            runs_dir = work / "runs" / f"lrfind-{i}-{name}"
            shutil.rmtree(runs_dir, ignore_errors=True)
            cmd: list[str | Path] = [DLTRAIN, "lr-find", dltrain_src() / RECOMMENDED, "--runs-dir", runs_dir]
            for item in [*data_sets, *extra]:
                cmd += ["--set", item]
            proc = measure(cmd, work / "logs" / f"lrfind-{i}-{name}.log")
            (run_dir,) = runs_dir.iterdir()
            found = json.loads((run_dir / "run.json").read_text())["lr_find"]
            out[name].append({"process": asdict(proc), "points": found["points"], "suggestion": found.get("lr"),
                              "steps_per_epoch": found["steps_per_epoch"], "rule": found.get("rule")})  # fmt: skip
    return out


def section_scaling(plan: Plan, work: Path, data: DataFiles) -> dict[str, Any]:
    """dltrain's CPU and memory for 1x, 2x, 4x the training set, and for bigger networks on 1x."""
    cases: list[tuple[str, Path, list[str]]] = [
        (f"{k}x data", data.repeated[k], []) for k in plan.scale_factors
    ]
    cases += [
        (name, data.base, [f"model.filters={filters}"]) for name, filters in plan.scaling_models.items()
    ]
    out = []
    for i, (name, path, extra) in enumerate(cases):
        print(f"scaling: {name}")
        tag = f"scaling-{i}"
        sets = [f"train.epochs={plan.scaling_epochs}", *npz_sets(path), *extra]
        out.append(
            {"case": name, **dltrain_fit(CONVNET, work / "runs" / tag, sets, work / "logs" / f"{tag}.log")}
        )
    return {"epochs_per_run": plan.scaling_epochs, "cases": out}


# ---------------------------------------------------------------------------------------- environment


def section_precision(plan: Plan, work: Path, data: DataFiles) -> dict[str, Any]:
    """Each shipped config under ``mixed_precision`` auto and off (float32), scored by ``dltrain evaluate``."""
    out = []
    for name in PRECISION_CONFIGS:
        config = dltrain_src() / "configs" / f"{name}.yaml"
        fashion = name.startswith("fashion_mnist")
        sets = npz_sets(data.base) if plan.train_limit and fashion else []
        for seed in range(plan.precision_seeds):
            for precision in ("auto", "off"):
                tag = f"precision-{name}-{precision}-{seed}"
                print(f"precision: {tag}")
                run_dir = work / "runs" / tag
                extra = [f"runtime.mixed_precision={precision}", f"seed={seed}"]
                fit = dltrain_fit(config, run_dir, [*sets, *extra], work / "logs" / f"{tag}.log")
                run_json = json.loads((run_dir / "run.json").read_text())
                evaluation = dltrain_evaluate(run_dir, work / "logs" / f"{tag}-eval.log")
                out.append({
                    "config": name, "setting": precision, "seed": seed,
                    "precision": run_json["runtime"]["precision"],
                    "reason": run_json["runtime"].get("precision_reason", ""),
                    "train_cpu": sum(e["cpu_seconds"] for e in fit["epochs"]),
                    "epochs": len(fit["epochs"]), "fit_process": fit["process"],
                    "evaluate_process": evaluation["process"], "test": evaluation["test"],
                })  # fmt: skip
    return {"runs": out}


def _sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False).stdout.strip()
    except OSError:
        return ""


def environment(source: str) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _sh(["lscpu"]).splitlines()
            if line.startswith("Model name")
        ),
        "unknown",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    dirty = _sh(["git", "status", "--porcelain", "--", "dltrain", "configs"])
    commit = _sh(["git", "rev-parse", "--short=12", "HEAD"])
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "tensorflow": ver("tensorflow"),
        "keras": ver("keras"),
        "torch": ver("torch"),
        "numpy": ver("numpy"),
        "dltrain_commit": f"{commit} (snapshot of HEAD)"
        if source == "head"
        else commit + (" + uncommitted changes" if dirty else ""),
        "load_average_start": os.getloadavg(),
    }


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description="dltrain benchmark (issue 6).")
    default_mode = (
        "smoke" if os.environ.get("BENCH_SMOKE") else "quick" if os.environ.get("BENCH_QUICK") else "full"
    )
    parser.add_argument("--mode", choices=sorted(PLANS), default=default_mode)
    parser.add_argument("--only", help=f"comma-separated sections to (re)run: {', '.join(SECTIONS)}")
    parser.add_argument("--render", action="store_true", help="only re-render the report from results.json")
    parser.add_argument("--prepare-data", type=Path, help=argparse.SUPPRESS)  # internal: prepare_data's child
    parser.add_argument(
        "--dltrain", choices=["head", "worktree"], default="head",
        help="measure a snapshot of the last commit (default) or the working tree as it is",
    )  # fmt: skip
    args = parser.parse_args()
    plan = PLANS[args.mode]
    if args.prepare_data:
        write_data(args.prepare_data, plan)
        return
    out_dir = BENCH if plan.mode == "full" else BENCH / "out"
    suffix = "" if plan.mode == "full" else f"-{plan.mode}"
    results_path, report_path = out_dir / f"results{suffix}.json", out_dir / f"RESULTS{suffix}.md"
    out_dir.mkdir(parents=True, exist_ok=True)

    from report import render  # bench/report.py

    if args.render:
        report_path.write_text(render(json.loads(results_path.read_text())))
        print(f"wrote {report_path}")
        return
    wanted = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    results: dict[str, Any] = (
        json.loads(results_path.read_text()) if args.only and results_path.exists() else {}
    )
    results.setdefault("sections", {})
    work = BENCH / "out" / f"work-{plan.mode}"
    shutil.rmtree(work, ignore_errors=True)
    if args.dltrain == "head":
        _SOURCE["root"] = snapshot_head(BENCH / "out" / "dltrain-head")
    started = time.monotonic()
    # With --only, the earlier invocation's command, date and time are kept beside this one's.
    command = " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    previous_wall = results.get("bench_wall_seconds", 0.0)
    for kept in results["sections"].values():
        kept.setdefault("dltrain_commit", results.get("environment", {}).get("dltrain_commit"))
    results.update(
        plan=asdict(plan),
        command=f"{results['command']}`, then `{command}" if "command" in results else command,
        date=results.get("date") or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        environment=environment(args.dltrain),
    )
    data = prepare_data(work, plan)
    results["train_images"] = data.train_images
    steps = {
        "startup": lambda: section_startup(plan, work),
        "throughput": lambda: section_throughput(plan, work, data),
        "recommended": lambda: section_recommended(plan, work, data),
        "lr_find": lambda: section_lr_find(plan, work, data),
        "time_to_accuracy": lambda: section_time_to_accuracy(plan, work, data),
        "scaling": lambda: section_scaling(plan, work, data),
        "precision": lambda: section_precision(plan, work, data),
    }
    for name in SECTIONS:
        if name not in wanted:
            continue
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        results["sections"][name] = {
            **steps[name](),
            "wall_seconds": round(time.monotonic() - t0, 1),
            "dltrain_commit": results["environment"]["dltrain_commit"],
            "machine": f"{results['environment']['cpu']}, {results['environment']['cores']} cores",
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        results["environment"]["load_average_end"] = os.getloadavg()
        results["bench_wall_seconds"] = round(previous_wall + time.monotonic() - started, 1)
        results_path.write_text(json.dumps(results, indent=1))  # after every section: a crash keeps the rest
        report_path.write_text(render(results))
    print(f"wrote {results_path} and {report_path} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
