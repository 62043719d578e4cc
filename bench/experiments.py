"""Experiments bench (issue 14): a 12-trial sweep on a Fashion-MNIST subset with median pruning on vs off
(the best trial's test accuracy and the whole sweep's CPU-seconds, side by side in one run), and `runs ls` on
1,000 run directories. Writes bench/out/experiments.json and bench/EXPERIMENTS.md.

    .venv/bin/python bench/experiments.py [--trials 12] [--train 6000] [--epochs 4] [--runs 1000]

About 8-12 minutes on 2 shared cores (24 trials, each a `dltrain fit` with TensorFlow's start-up).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out" / "experiments"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _idx(name: str) -> np.ndarray:
    with gzip.open(FASHION / f"{name}.gz", "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def subset(n_train: int, n_test: int) -> Path:
    path = OUT / f"fashion_{n_train}_{n_test}.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        x, y = _idx("train-images-idx3-ubyte"), _idx("train-labels-idx1-ubyte")
        xt, yt = _idx("t10k-images-idx3-ubyte"), _idx("t10k-labels-idx1-ubyte")
        i, j = rng.permutation(len(x))[:n_train], rng.permutation(len(xt))[:n_test]
        np.savez(path, x_train=x[i], y_train=y[i], x_test=xt[j], y_test=yt[j])
    return path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dltrain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dltrain", *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        check=False,
    )


def sweep(label: str, data: Path, trials: int, epochs: int, pruner: str) -> dict:
    config = {
        "name": f"fashion-{label}",
        "data": {"kind": "npz", "path": str(data), "batch_size": 128},
        "model": {"kind": "dense", "units": [64]},
        "optimizer": {"kind": "adam", "learning_rate": 1e-3},
        "train": {"epochs": epochs, "monitor": "val_accuracy"},
        "sweep": {
            "trials": trials,
            "sampler": "tpe",
            "pruner": pruner,
            "startup_trials": 3,
            "warmup_epochs": 0,
            "params": {
                "optimizer.learning_rate": {"loguniform": [1e-5, 1e-1]},
                "model.units": {"choice": [[16], [64], [256]]},
            },
        },
    }
    cfg_path = OUT / f"{label}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    sweep_dir = OUT / f"sweep-{label}"
    shutil.rmtree(sweep_dir, ignore_errors=True)
    cpu0, t0 = children_cpu(), time.monotonic()
    out = dltrain("sweep", str(cfg_path), "--sweep-dir", str(sweep_dir))
    cpu, wall = children_cpu() - cpu0, time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"sweep {label} failed:\n{out.stdout}\n{out.stderr}")
    import optuna

    info = json.loads((sweep_dir / "sweep.json").read_text())
    study = optuna.load_study(study_name=info["study_name"], storage=info["storage"])
    best = study.best_trial
    evaluated = dltrain("evaluate", best.user_attrs["run_dir"])
    if evaluated.returncode != 0:
        raise SystemExit(evaluated.stderr)
    test = json.loads((Path(best.user_attrs["run_dir"]) / "eval" / "test" / "metrics.json").read_text())
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "pruner": pruner,
        "trials": len(study.trials),
        "states": states,
        "epochs_trained": sum(int(t.user_attrs.get("epochs", 0)) for t in study.trials),
        "best_val_accuracy": best.value,
        "best_params": best.params,
        "best_test_accuracy": test["accuracy"],
        "cpu_seconds": round(cpu, 1),
        "wall_seconds": round(wall, 1),
    }


def runs_ls(n: int, data: Path) -> dict:
    """`runs ls` on n copies of one real run's small files (run.json, config.yaml, metrics.csv, eval/)."""
    root = OUT / "ls"
    shutil.rmtree(root, ignore_errors=True)
    cfg = OUT / "one.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "one",
                "data": {"kind": "npz", "path": str(data)},
                "model": {"kind": "dense"},
                "train": {"epochs": 2},
            }
        )
    )
    made = dltrain("fit", str(cfg), "--runs-dir", str(root / "src"))
    if made.returncode != 0:
        raise SystemExit(made.stderr)
    run = next((root / "src").iterdir())
    if dltrain("evaluate", str(run)).returncode != 0:
        raise SystemExit("evaluate failed")
    many = root / "many"
    for i in range(n):
        dst = many / f"one-{i:04d}"
        (dst / "eval" / "test").mkdir(parents=True)
        for name in ("run.json", "config.yaml", "metrics.csv"):
            shutil.copy(run / name, dst / name)
        shutil.copy(run / "eval" / "test" / "metrics.json", dst / "eval" / "test" / "metrics.json")
    timings = []
    for _ in range(3):
        cpu0, t0 = children_cpu(), time.monotonic()
        out = dltrain("runs", "ls", str(many), "--json")
        timings.append((time.monotonic() - t0, children_cpu() - cpu0))
        assert out.returncode == 0 and len(json.loads(out.stdout)) == n, out.stderr
    sys.path.insert(0, str(REPO))
    from dltrain.experiments.runs import list_runs

    t0 = time.process_time()
    rows = list_runs(many)
    inproc = time.process_time() - t0
    assert len(rows) == n
    wall, cpu = sorted(timings)[1]
    return {
        "runs": n,
        "command_wall_seconds": round(wall, 3),
        "command_cpu_seconds": round(cpu, 3),
        "listing_cpu_seconds": round(inproc, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data = subset(args.train, args.test)
    results = {
        "setup": vars(args) | {"cpus": os.cpu_count()},
        "runs_ls": runs_ls(args.runs, data),
        "sweep_pruning": sweep("pruned", data, args.trials, args.epochs, "median"),
        "sweep_no_pruning": sweep("unpruned", data, args.trials, args.epochs, "none"),
    }
    on, off = results["sweep_pruning"], results["sweep_no_pruning"]
    results["cpu_ratio_pruning_vs_not"] = round(on["cpu_seconds"] / off["cpu_seconds"], 3)
    (OUT / "experiments.json").write_text(json.dumps(results, indent=1))
    ls = results["runs_ls"]
    report = f"""# Experiments bench (generated by bench/experiments.py; do not edit)

Machine: {os.cpu_count()} CPUs (shared). Fashion-MNIST subset: {args.train} training images (10% carved for
validation), {args.test} test images; dense network; {args.trials} trials of up to {args.epochs} epochs; TPE
(seed 42) over `optimizer.learning_rate` loguniform[1e-5, 1e-1] and `model.units` choice [16]/[64]/[256];
the two sweeps run one after the other in this run. CPU-seconds: the sweep process and all its trials.

| sweep | trials (states) | epochs trained | best val acc | best trial's test acc | CPU-s | wall s |
|---|---|---|---|---|---|---|
| median pruning | {on["trials"]} ({on["states"]}) | {on["epochs_trained"]} | {on["best_val_accuracy"]:.4f} | {on["best_test_accuracy"]:.4f} | {on["cpu_seconds"]} | {on["wall_seconds"]} |
| no pruning | {off["trials"]} ({off["states"]}) | {off["epochs_trained"]} | {off["best_val_accuracy"]:.4f} | {off["best_test_accuracy"]:.4f} | {off["cpu_seconds"]} | {off["wall_seconds"]} |

Pruning / no pruning CPU-seconds: {results["cpu_ratio_pruning_vs_not"]}.

`dltrain runs ls --json` on {ls["runs"]} run directories (copies of one real run's run.json, config.yaml,
metrics.csv, eval/test/metrics.json): {ls["command_wall_seconds"]} s wall, {ls["command_cpu_seconds"]} CPU-s for the
whole command (Python start-up included; median of 3); the listing itself {ls["listing_cpu_seconds"]} CPU-s.
"""
    (HERE / "EXPERIMENTS.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
