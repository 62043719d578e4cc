"""``dltrain export``: a run's model as a SavedModel, ONNX or LiteRT folder, verified on the test split.

Light work first (the options, the extra's modules, the run), then TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from dltrain.console import setup_logging, stdout, warn
from dltrain.errors import RunDirError


def run(run_dir: Path, fmt: str, quantize: str, output: Path | None, verbose: bool) -> None:
    from dltrain.serving.runtime import NEEDS, require

    fmt = {"tflite": "litert", "savedmodel": "saved_model"}.get(fmt, fmt)
    from dltrain.export.options import check_options

    check_options(fmt, quantize)
    require(fmt, NEEDS[fmt])
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory.")
    if not (run_dir / "model.keras").is_file():
        raise RunDirError(
            f"{run_dir / 'model.keras'}: no model in this run; train it with dltrain fit first."
        )
    from dltrain.export.options import default_output

    final = output if output is not None else default_output(run_dir, fmt, quantize)
    if final.exists():
        raise RunDirError(f"{final}: already exists; remove it or pass another --output.")
    setup_logging(verbose)
    from dltrain.export.exporter import export_run

    result = export_run(run_dir, fmt, quantize, output)
    check = result.record["verification"]
    metric = "mae" if "mae" in check["keras"] else "accuracy"
    stdout.print(f"export: {result.folder}", highlight=False, soft_wrap=True)
    stdout.print(
        f"{fmt} ({result.record['precision']}): {check['size_bytes'] / 1024:.1f} KiB, "
        f"{check['latency_ms_per_example']:.3f} ms per example; test {metric} {check['export'][metric]:.4f} "
        f"(model.keras {check['keras'][metric]:.4f}), max abs difference {check['max_abs_diff']:.3g} "
        f"on {check['examples']} examples",
        highlight=False,
        soft_wrap=True,
    )
    if not check.get("within_margin", True):
        margin = next(iter(check["margin"].items()))
        warn(
            f"ACCURACY LOSS: the {quantize}-quantised export's test {metric} is {check['export'][metric]:.4f} against "
            f"model.keras's {check['keras'][metric]:.4f}, beyond the stated margin ({margin[0]} {margin[1]}). "
            "Use --quantize none or float16 if this matters."
        )
    if fmt == "saved_model":
        return
    stdout.print(f"next: dltrain predict --model {result.folder} INPUT...", highlight=False, soft_wrap=True)
