"""dltrain vs plain Keras vs PyTorch on one NVIDIA GPU: float32, mixed precision, and XLA for dltrain.

Run through ``bench/gpu.sh`` (it installs what this needs). Every run is a fresh process training the
keras.io mnist_convnet network ('same' padding, as in bench/README.md) on Fashion-MNIST for ``--epochs``
epochs; the first epoch (tracing, XLA compilation, cuDNN autotuning) is dropped. Wall time is the cost on a
GPU (CPU-s mostly measure the host waiting), so the report gives images per wall second, with CPU-s beside.

    python bench/gpu.py --out bench/out/gpu [--epochs 3] [--dry-run]

``--dry-run``: the same plumbing on the CPU in about a minute (2,048 images, 2 epochs, no GPU needed;
mixed precision becomes bfloat16): what CI runs (tests/test_bench_gpu.py). Its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CONVNET = BENCH / "configs" / "mnist_convnet.yaml"


def write_data(path: Path, limit: int | None) -> int:
    """Fashion-MNIST as an npz (the plain scripts' and dltrain's `npz` input): Debian's files, else the
    keras.datasets download."""
    import numpy as np
    from run import BenchError, find_idx, read_idx  # bench/run.py

    try:
        arrays = {
            "x_train": read_idx(find_idx("train-images-idx3-ubyte")),
            "y_train": read_idx(find_idx("train-labels-idx1-ubyte")),
            "x_test": read_idx(find_idx("t10k-images-idx3-ubyte")),
            "y_test": read_idx(find_idx("t10k-labels-idx1-ubyte")),
        }
    except BenchError:
        import keras

        (x, y), (xt, yt) = keras.datasets.fashion_mnist.load_data()
        arrays = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt}
    arrays = {k: v[:limit] for k, v in arrays.items()}
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return len(arrays["y_train"])


def runs(dry_run: bool) -> list[tuple[str, str, list[str]]]:
    """(runner, variant, command) for every measured run."""
    py = sys.executable
    mixed = "bfloat16" if dry_run else "float16"
    device = ["--device", "cpu"] if dry_run else ["--device", "cuda"]
    dl = [py, "-m", "dltrain", "fit", str(CONVNET)]
    return [
        ("dltrain", "float32", [*dl, "--set", "runtime.mixed_precision=off"]),
        ("dltrain", f"mixed {mixed}", [*dl, "--set", f"runtime.mixed_precision={mixed}"]),
        ("dltrain", f"mixed {mixed} + XLA", [*dl, "--set", f"runtime.mixed_precision={mixed}",
                                              "--set", "runtime.jit_compile=true"]),
        ("keras", "float32", [py, str(BENCH / "plain_keras.py")]),
        ("keras", f"mixed {mixed}", [py, str(BENCH / "plain_keras.py"), "--precision", f"mixed_{mixed}"]),
        ("torch", "float32", [py, str(BENCH / "plain_torch.py"), *device]),
        ("torch", f"amp {mixed}", [py, str(BENCH / "plain_torch.py"), *device, "--amp"]),
    ]  # fmt: skip


def epochs_of(runner: str, out: Path) -> list[dict[str, Any]]:
    if runner == "dltrain":
        import csv

        with open(out / "metrics.csv") as fh:
            return [
                {"epoch": int(r["epoch"]), "seconds": float(r["seconds"]), "cpu_seconds": float(r["cpu_seconds"]),
                 "accuracy": float(r["accuracy"])}
                for r in csv.DictReader(fh)
            ]  # fmt: skip
    return json.loads(out.read_text())["epochs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "gpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="the plumbing on the CPU, tiny data")
    args = parser.parse_args()
    epochs = 2 if args.dry_run else args.epochs
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "fashion_mnist.npz"
    images = write_data(data, 2048 if args.dry_run else None)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    if args.dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""
    results: list[dict[str, Any]] = []
    for runner, variant, cmd in runs(args.dry_run):
        tag = f"{runner}-{variant.replace(' ', '_').replace('+', 'plus')}"
        target = args.out / tag
        if runner == "dltrain":
            cmd = [*cmd, "--run-dir", str(target), "--set", f"train.epochs={epochs}",
                   "--set", "data.kind=npz", "--set", f"data.path={data}"]  # fmt: skip
        else:
            target = target.with_suffix(".json")
            cmd = [*cmd, "--data", str(data), "--epochs", str(epochs), "--out", str(target)]
        print(f"== {runner} {variant}", flush=True)
        t0 = time.monotonic()
        with open(args.out / f"{tag}.log", "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        entry: dict[str, Any] = {"runner": runner, "variant": variant, "returncode": proc.returncode,
                                 "process_wall": round(time.monotonic() - t0, 1)}  # fmt: skip
        if proc.returncode == 0:
            rows = epochs_of(runner, target)
            kept = [r for r in rows if r["epoch"] > 1] or rows
            wall = statistics.median(r["seconds"] for r in kept)
            entry.update(epochs=rows, wall_per_epoch=wall, images_per_wall_second=round(images / wall, 1),
                         cpu_per_epoch=statistics.median(r["cpu_seconds"] for r in kept))  # fmt: skip
        results.append(entry)
    report = {"dry_run": args.dry_run, "images": images, "epochs": epochs, "runs": results}
    (args.out / "gpu-results.json").write_text(json.dumps(report, indent=1))
    lines = ["# GPU benchmark" + (" (dry run on the CPU: plumbing only)" if args.dry_run else ""), "",
             f"{images:,} training images, {epochs} epochs per run, the first dropped.", "",
             "| runner | variant | images/wall-s | wall-s/epoch | CPU-s/epoch | exit |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        ok = r["returncode"] == 0
        lines.append(
            f"| {r['runner']} | {r['variant']} | {r.get('images_per_wall_second', 'n/a')} | "
            f"{r.get('wall_per_epoch', float('nan')):.2f} | {r.get('cpu_per_epoch', float('nan')):.2f} | "
            f"{r['returncode'] if not ok else 0} |"
        )
    (args.out / "GPU-RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'GPU-RESULTS.md'}")
    sys.exit(0 if all(r["returncode"] == 0 for r in results) else 1)


if __name__ == "__main__":
    main()
