"""Export benchmark: artefact size, per-example latency and test accuracy per format, float and quantised; and the
start-up of ``dltrain predict --model model.tflite one.png`` against ``dltrain predict RUN one.png`` and against
``python -c "import tensorflow"``.

    .venv/bin/python bench/export_bench.py            # about 10 minutes on 2 loaded cores
    .venv/bin/python bench/export_bench.py --rounds 3 # fewer start-up rounds
    .venv/bin/python bench/export_bench.py --render   # the report again from the last JSON

The model: a small CNN (filters [16, 32], dense [64]) trained 3 epochs on 2,000 real Fashion-MNIST PNGs in class
folders (image_folder, test split 20% = 400 images), with augmentation (flip, zoom), so the twin's removal of it
is exercised. Sizes, latencies and accuracies are what each export's own check recorded in export.json (latency:
the median of 200 single-example calls, one thread). Start-up: each command is its own process, rounds
alternate the three commands, wall and CPU seconds from ``os.wait4``; medians with (min-max).
Writes bench/out/export.json and its section of bench/EXPORT.md.
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

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "export"
JSON_OUT = REPO / "bench" / "out" / "export.json"
REPORT = REPO / "bench" / "EXPORT.md"
START = "<!-- export_bench: start (written by bench/export_bench.py) -->"
END = "<!-- export_bench: end -->"
CELLS = [("saved_model", "none")] + [
    (f, q) for f in ("onnx", "litert") for q in ("none", "float16", "dynamic", "int8")
]


def dltrain() -> list[str]:
    exe = Path(sys.executable).with_name("dltrain")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dltrain"]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("DLTRAIN_")}
    out.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    return out


def measure(cmd: list[str]) -> dict[str, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=env())
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise SystemExit(
            f"{' '.join(cmd)} exited {rc}: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
        )
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}


def prepare() -> tuple[Path, Path]:
    """The Fashion-MNIST PNG folder, the fitted run and one test PNG."""
    sys.path.insert(0, str(REPO))
    from dltrain.data.builtin import DEBIAN_FASHION_DIR, FASHION_CLASSES
    from dltrain.data.formats import read_idx_folder
    from dltrain.data.images import write_image_folder

    arrays = read_idx_folder(DEBIAN_FASHION_DIR)
    if arrays is None:
        raise SystemExit(
            f"Fashion-MNIST not found in {DEBIAN_FASHION_DIR} (apt-get install dataset-fashion-mnist)"
        )
    folder = OUT / "fashion"
    if not folder.is_dir():
        write_image_folder(folder, arrays["x_train"][:2000], arrays["y_train"][:2000], FASHION_CLASSES)
    one = OUT / "one.png"
    from PIL import Image

    Image.fromarray(arrays["x_test"][0]).save(one)
    config = OUT / "fashion.yaml"
    config.write_text(
        json.dumps(
            {
                "name": "export_bench",
                "seed": 7,
                "data": {
                    "kind": "image_folder",
                    "path": str(folder),
                    "image_size": [28, 28],
                    "color_mode": "grayscale",
                    "validation_split": 0.1,
                    "test_split": 0.2,
                    "batch_size": 64,
                    "augment": {"flip": "horizontal", "zoom": 0.05},
                },
                "model": {"kind": "cnn", "filters": [16, 32], "dense": [64]},
                "train": {"epochs": 3},
            }
        )
    )
    proc = subprocess.run(
        [*dltrain(), "fit", str(config), "--runs-dir", str(OUT / "runs")],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    run = Path(next(line[5:] for line in proc.stdout.splitlines() if line.startswith("run: ")))
    return run, one


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    if args.render:
        render(json.loads(JSON_OUT.read_text()))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    run, one = prepare()
    exports: list[dict[str, Any]] = []
    for fmt, quantize in CELLS:
        target = OUT / "exports" / f"{fmt}-{quantize}"
        if not target.is_dir():
            cmd = [
                *dltrain(),
                "export",
                str(run),
                "--format",
                fmt,
                "--quantize",
                quantize,
                "--output",
                str(target),
            ]
            print(" ".join(cmd[1:]), flush=True)
            took = measure(cmd)
        else:
            took = {"wall": float("nan"), "cpu": float("nan")}
        record = json.loads((target / "export.json").read_text())
        exports.append(
            {"format": fmt, "quantize": quantize, "export_seconds": took, **record["verification"]}
        )
    litert = OUT / "exports" / "litert-none" / "model.tflite"
    commands = {
        "predict --model model.tflite one.png": [*dltrain(), "predict", "--model", str(litert), str(one)],
        "predict RUN one.png": [*dltrain(), "predict", str(run), str(one)],
        'python -c "import tensorflow"': [sys.executable, "-c", "import tensorflow"],
    }
    startup: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for r in range(args.rounds):
        for name, cmd in commands.items():
            startup[name].append(measure(cmd))
            print(f"round {r + 1} {name}: {startup[name][-1]}", flush=True)
    load = os.getloadavg()[0]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f} at the end",
        "run": str(run),
        "exports": exports,
        "startup": startup,
    }
    JSON_OUT.write_text(json.dumps(result, indent=2) + "\n")
    render(result)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def render(result: dict[str, Any]) -> None:
    lines = [
        START,
        "",
        f"Measured {result['date']} on {result['machine']} by `bench/export_bench.py`: a small CNN (filters [16, 32], "
        "dense [64], augmentation) trained 3 epochs on 2,000 real Fashion-MNIST PNGs; the test split is 400 images.",
        "",
        "| format | quantize | size (KiB) | latency, 1 example (ms) | test accuracy | model.keras | max abs diff | within margin |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in result["exports"]:
        lines.append(
            f"| {e['format']} | {e['quantize']} | {e['size_bytes'] / 1024:.1f} | {e['latency_ms_per_example']:.3f} "
            f"| {e['export']['accuracy']:.4f} | {e['keras']['accuracy']:.4f} | {e['max_abs_diff']:.2g} "
            f"| {'yes' if e.get('within_margin', True) else '**no**'} |"
        )
    keras_ms = statistics.median(e["keras_latency_ms_per_example"] for e in result["exports"])
    lines += [
        "",
        f"model.keras called on one example (`model(x, training=False)`): {keras_ms:.3f} ms (median of the exports' checks).",
        "",
        "Start-up and one prediction, each its own process (median (min-max) over "
        f"{len(next(iter(result['startup'].values())))} alternating rounds):",
        "",
        "| command | wall (s) | CPU (s) | CPU vs `import tensorflow` |",
        "|---|---|---|---|",
    ]
    tf_cpu = statistics.median(m["cpu"] for m in result["startup"]['python -c "import tensorflow"'])
    for name, runs in result["startup"].items():
        cpu = [m["cpu"] for m in runs]
        lines.append(
            f"| `{name}` | {_median([m['wall'] for m in runs])} | {_median(cpu)} | "
            f"{statistics.median(cpu) / tf_cpu:.0%} |"
        )
    lines += ["", END]
    text = REPORT.read_text() if REPORT.exists() else "# Export benchmark\n\n" + START + "\n" + END + "\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    REPORT.write_text(head + "\n".join(lines) + tail)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
