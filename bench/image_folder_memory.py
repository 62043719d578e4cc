"""image_folder at scale: peak memory and throughput of ``dltrain fit`` on 10k vs 50k PNG files.

The claim under test (issue 3): the folder streams from disk, so memory stays flat as it grows. Real
Fashion-MNIST training images are written as PNGs under /tmp (never in the repository): the 50k folder,
and a 10k folder of hard links to its first 10,000 files. Every measurement is its own ``dltrain fit``
process, waited for with ``os.wait4`` so its peak RSS (``ru_maxrss``) is that process's alone. Per-epoch
cost comes from the run's metrics.csv (``cpu_seconds``, ``seconds``); the first epoch (tracing) is dropped.

Beside the two streamed folders: the 50k folder with ``data.cache: true`` (decoded once into memory) and
the same 50k images from an .npz (dltrain's in-memory array pipeline), to show what streaming costs. And
the loader alone (scan + Pillow check of every file, no TensorFlow), in this process.

    .venv/bin/python bench/image_folder_memory.py            # about 10 minutes on 2 cores
    .venv/bin/python bench/image_folder_memory.py --quick    # 2,000 vs 6,000 images, plumbing only
    .venv/bin/python bench/image_folder_memory.py --render   # the report again from the last JSON

Writes bench/out/image_folder_memory.json and its section of bench/IMAGE_FOLDER.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dltrain.data.builtin import DEBIAN_FASHION_DIR, FASHION_CLASSES  # noqa: E402
from dltrain.data.formats import read_idx_folder  # noqa: E402
from dltrain.data.images import load_image_folder, write_image_folder  # noqa: E402

JSON_OUT = REPO / "bench" / "out" / "image_folder_memory.json"
SECTION_START = "<!-- image_folder_memory: start (written by bench/image_folder_memory.py) -->"
SECTION_END = "<!-- image_folder_memory: end -->"
# keras.io's mnist_convnet, as bench/configs/mnist_convnet.yaml: the same network as the main bench.
MODEL = {"kind": "cnn", "filters": [32, 64], "kernel_size": 3, "pool": "max", "dropout": 0.5, "dense": []}


def cpu_now() -> float:
    times = os.times()
    return times.user + times.system


def prepare_folders(work: Path, sizes: list[int]) -> dict[int, Path]:
    """``work/n<size>/<class>/*.png`` for each size; smaller folders hard-link the largest one's files."""
    arrays = read_idx_folder(DEBIAN_FASHION_DIR)
    if arrays is None:
        sys.exit(f"Fashion-MNIST not found in {DEBIAN_FASHION_DIR} (apt-get install dataset-fashion-mnist)")
    largest = max(sizes)
    images, labels = arrays["x_train"][:largest], arrays["y_train"][:largest]
    folders = {n: work / f"n{n}" for n in sizes}
    done = work / f"n{largest}.done"
    if not done.exists():
        print(f"writing {largest} PNGs to {folders[largest]} ...", flush=True)
        write_image_folder(folders[largest], images, labels, FASHION_CLASSES)
        done.write_text("ok\n")
    source = sorted(folders[largest].rglob("*.png"), key=lambda p: p.name)  # numbered in dataset order
    for n in sizes:
        if n == largest or (work / f"n{n}.done").exists():
            continue
        for path in source[:n]:
            target = folders[n] / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                target.write_bytes(path.read_bytes())
        (work / f"n{n}.done").write_text("ok\n")
    npz = work / f"n{largest}.npz"
    if not npz.exists():
        np.savez(npz, x_train=images, y_train=labels)
    return folders


def measure_loader(folder: Path) -> dict[str, float]:
    """The light-zone loader alone: scan the folder and check every file with Pillow."""
    from dltrain.config import ImageFolderData

    cfg = ImageFolderData(kind="image_folder", path=folder, image_size=[28, 28], color_mode="grayscale")
    t0, c0 = time.monotonic(), cpu_now()
    raw = load_image_folder(cfg, 0)
    wall, cpu = time.monotonic() - t0, cpu_now() - c0
    n = len(raw.y_train)
    return {"files": n, "wall_s": wall, "cpu_s": cpu, "us_per_file_cpu": 1e6 * cpu / n}


def fit_once(name: str, data: dict[str, Any], epochs: int, work: Path) -> dict[str, Any]:
    """One ``dltrain fit`` in a fresh process: peak RSS, per-epoch CPU and wall time."""
    cfg = {
        "name": name,
        "seed": 42,
        "data": {"batch_size": 128, "validation_split": 0.0, **data},
        "model": MODEL,
        "optimizer": {"kind": "adam", "learning_rate": 1e-3},
        "train": {"epochs": epochs, "monitor": "loss"},
    }
    cfg_path = work / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    exe = Path(sys.executable).with_name("dltrain")
    cmd = [str(exe), "fit", str(cfg_path), "--runs-dir", str(work / "runs")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.monotonic()
    with open(work / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"{name}: dltrain fit exited {proc.returncode}; see {work / f'{name}.log'}")
    run_dir = Path(next(line[5:].strip() for line in stdout.splitlines() if line.startswith("run: ")))
    with open(run_dir / "metrics.csv") as fh:
        header, *rows = [line.strip().split(",") for line in fh if line.strip()]
    epochs_rows = [dict(zip(header, row, strict=True)) for row in rows]
    record = json.loads((run_dir / "run.json").read_text())
    n = int(record["data"]["sizes"]["train"])
    measured = epochs_rows[1:] or epochs_rows
    cpu = statistics.median(float(r["cpu_seconds"]) for r in measured)
    secs = statistics.median(float(r["seconds"]) for r in measured)
    return {
        "name": name,
        "images": n,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "process_wall_s": wall,
        "process_cpu_s": usage.ru_utime + usage.ru_stime,
        "epoch_cpu_s": cpu,
        "epoch_wall_s": secs,
        "images_per_cpu_s": n / cpu,
        "images_per_wall_s": n / secs,
        "epochs_measured": len(measured),
        "first_epoch_cpu_s": float(epochs_rows[0]["cpu_seconds"]),
        "final_loss": float(epochs_rows[-1]["loss"]),
        "run_dir": str(run_dir),
    }


def render(result: dict[str, Any]) -> str:
    runs = result["runs"]
    lines = [
        SECTION_START,
        "## Memory and throughput of `fit` on an image folder (10k vs 50k files)",
        "",
        f"Measured {result['date']} on {result['machine']} by `bench/image_folder_memory.py` "
        f"({result['epochs']} epochs per run, the first dropped; batch 128; keras.io mnist_convnet, "
        "the main bench's network; 28x28 grayscale PNGs of real Fashion-MNIST, no validation split). "
        "Each row is one `dltrain fit` process; peak RSS is that process's `ru_maxrss`.",
        "",
        "| run | images | peak RSS (MB) | CPU-s / epoch | images / CPU-s | images / wall-s | wall-s / epoch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['label']} | {r['images']:,} | {r['peak_rss_mb']:.0f} | {r['epoch_cpu_s']:.1f} | "
            f"{r['images_per_cpu_s']:.0f} | {r['images_per_wall_s']:.0f} | {r['epoch_wall_s']:.1f} |"
        )
    lines += ["", "Loader alone (scan + Pillow check of every file, before TensorFlow starts):", ""]
    lines += ["| files | wall-s | CPU-s | CPU µs / file |", "|---:|---:|---:|---:|"]
    for r in result["loader"]:
        lines.append(
            f"| {r['files']:,} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['us_per_file_cpu']:.0f} |"
        )
    lines += ["", *result["findings"], SECTION_END]
    return "\n".join(lines) + "\n"


def findings(runs: list[dict[str, Any]]) -> list[str]:
    by = {r["key"]: r for r in runs}
    small, large = by["stream_small"], by["stream_large"]
    grow = large["peak_rss_mb"] - small["peak_rss_mb"]
    decoded_mb = (large["images"] - small["images"]) * 28 * 28 * 4 / 2**20
    out = [
        f"- Streaming: {large['images'] // small['images']}x the files, peak RSS "
        f"{small['peak_rss_mb']:.0f} -> {large['peak_rss_mb']:.0f} MB ({grow:+.0f} MB); the extra "
        f"{large['images'] - small['images']:,} images decoded as float32 would be {decoded_mb:.0f} MB "
        f"(at 224x224 RGB: {decoded_mb * (224 * 224 * 3) / (28 * 28) / 1024:.0f} GB). What grows is about "
        f"{grow * 2**20 / (large['images'] - small['images']):.0f} bytes per file (its path, label and "
        "manifest entry). "
        f"Throughput {small['images_per_cpu_s']:.0f} vs {large['images_per_cpu_s']:.0f} images per CPU-second.",
    ]
    if "cache_large" in by:
        c = by["cache_large"]
        out.append(
            f"- `data.cache: true` on the large folder: peak RSS {c['peak_rss_mb']:.0f} MB, "
            f"{c['images_per_cpu_s']:.0f} images per CPU-second (decoded once, before the first epoch)."
        )
    if "npz_large" in by:
        a = by["npz_large"]
        ratio = large["epoch_cpu_s"] / a["epoch_cpu_s"]
        out.append(
            f"- The same images from an .npz (in-memory array pipeline): peak RSS {a['peak_rss_mb']:.0f} MB, "
            f"{a['images_per_cpu_s']:.0f} images per CPU-second; streaming PNGs costs {ratio:.2f}x its "
            "CPU-seconds per epoch (read + PNG decode per image, every epoch)."
        )
    return out


def write_section(path: Path, section: str) -> None:
    """Replace this script's section of ``path`` (between its markers), or append it; other sections stay."""
    text = path.read_text() if path.exists() else "# image_folder benchmarks\n\n"
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        _, tail = rest.split(SECTION_END, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/dltrain-bench-image-folder"))
    parser.add_argument("--quick", action="store_true", help="2,000 vs 6,000 images, 2 epochs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-baselines", action="store_true", help="skip the cache and .npz runs")
    parser.add_argument("--report", type=Path, default=REPO / "bench" / "IMAGE_FOLDER.md")
    parser.add_argument("--render", action="store_true", help="rewrite the report from the last JSON only")
    args = parser.parse_args()
    if args.render:
        out = json.loads(JSON_OUT.read_text())
        out["findings"] = findings(out["runs"])
        write_section(args.report, render(out))
        return
    small, large = (2000, 6000) if args.quick else (10_000, 50_000)
    epochs = 2 if args.quick else args.epochs
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    folders = prepare_folders(work, [small, large])

    loader = [measure_loader(folders[n]) for n in (small, large)]
    print("loader:", loader, flush=True)
    plan: list[tuple[str, str, dict[str, Any]]] = [
        ("stream_small", f"folder, streamed ({small // 1000}k)", {"path": str(folders[small])}),
        ("stream_large", f"folder, streamed ({large // 1000}k)", {"path": str(folders[large])}),
    ]
    if not args.no_baselines:
        plan += [
            (
                "cache_large",
                f"folder, `cache: true` ({large // 1000}k)",
                {"path": str(folders[large]), "cache": True},
            ),
            (
                "npz_large",
                f".npz in memory ({large // 1000}k)",
                {"kind": "npz", "path": str(work / f"n{large}.npz")},
            ),
        ]
    runs = []
    for key, label, data in plan:
        if data.get("kind") != "npz":
            data = {"kind": "image_folder", "image_size": [28, 28], "color_mode": "grayscale", **data}
        result = fit_once(key, data, epochs, work)
        result.update(key=key, label=label)
        print(json.dumps(result), flush=True)
        runs.append(result)
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end",
        "epochs": epochs,
        "loader": loader,
        "runs": runs,
        "findings": findings(runs),
    }
    JSON_OUT.parent.mkdir(exist_ok=True)
    json_path = JSON_OUT.with_name("image_folder_memory-quick.json") if args.quick else JSON_OUT
    json_path.write_text(json.dumps(out, indent=1))
    section = render(out)
    if args.quick:
        print(section)
    else:
        write_section(args.report, section)
        print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
