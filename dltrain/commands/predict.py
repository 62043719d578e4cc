"""``dltrain predict``: a run's best model (or, with ``--model``, an onnx / litert export folder) on new data;
rows to stdout or atomically to ``--output``.

Light work first (the record, the output's folder, every input found and checked), then the model: TensorFlow
for a run, onnxruntime or LiteRT for an export folder (TensorFlow is never imported there; tests/test_export.py
asserts it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dltrain.console import setup_logging, warn
from dltrain.errors import ConfigError


def check_arguments(inputs: list[str], top_k: int, batch_size: int) -> None:
    """The checks every predict makes before reading anything."""
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1. Received: {top_k}.")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1. Received: {batch_size}.")
    if not inputs:
        raise ConfigError("name at least one INPUT: files, folders or patterns to predict.")


def run(
    source: Path,
    inputs: list[str],
    output: Path | None = None,
    fmt: str = "csv",
    top_k: int = 1,
    batch_size: int = 256,
    labelled: bool = False,
    skip_bad: bool = False,
    column: str | None = None,
    verbose: bool = False,
    exported: bool = False,
) -> None:
    """``source`` is a run directory, or with ``exported`` an export folder (``dltrain predict --model``)."""
    check_arguments(inputs, top_k, batch_size)
    setup_logging(verbose)
    from dltrain.predict import engine
    from dltrain.predict.output import PredictionWriter, check_output

    check_output(output, fmt)
    predict: Callable[..., Any]
    if exported:
        from dltrain.serving import folder as serving

        export = serving.open_export(source)
        info = export.run_info()
        found = engine.read_inputs(info, inputs, labelled=labelled, skip_bad=skip_bad, column=column)

        def predict(spec: Any, sink: Any) -> Any:
            return serving.predict(export, found, spec, sink, batch_size)
    else:
        info = engine.open_run(source)
        found = engine.read_inputs(info, inputs, labelled=labelled, skip_bad=skip_bad, column=column)
        model = engine.load_model(info)
        engine.check_model(model, info, found)  # before the output is opened: a refusal writes nothing

        def predict(spec: Any, sink: Any) -> Any:
            return engine.predict(model, info, found, spec, sink, batch_size)

    for note in found.notes:
        warn(note)
    spec = info.spec(top_k)
    with PredictionWriter(spec, output, fmt, labelled) as writer:
        predict(spec, writer.write)
    from dltrain.console import stderr

    if found.skipped:  # named before the model ran, or as the files streamed
        warn(f"skipped {len(found.skipped)} unreadable file(s) (--skip-bad), first: {found.skipped[0]}")
    skipped = f" ({len(found.skipped)} skipped)" if found.skipped else ""
    stderr.print(writer.summary() + skipped, highlight=False, soft_wrap=True, markup=False)
