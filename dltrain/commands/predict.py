"""``dltrain predict``: a run's best model on new data; rows to stdout or atomically to ``--output``.

Light work first (the run's record, the output's folder, every input found and checked), then TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from dltrain.console import setup_logging, warn
from dltrain.errors import ConfigError


def check_arguments(inputs: list[str], top_k: int, batch_size: int) -> None:
    """The checks every predict makes before reading anything (also ``predict --model``'s)."""
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1. Received: {top_k}.")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1. Received: {batch_size}.")
    if not inputs:
        raise ConfigError("name at least one INPUT: files, folders or patterns to predict.")


def run(
    run_dir: Path,
    inputs: list[str],
    output: Path | None = None,
    fmt: str = "csv",
    top_k: int = 1,
    batch_size: int = 256,
    labelled: bool = False,
    skip_bad: bool = False,
    column: str | None = None,
    verbose: bool = False,
) -> None:
    check_arguments(inputs, top_k, batch_size)
    setup_logging(verbose)
    from dltrain.predict import engine
    from dltrain.predict.output import PredictionWriter, check_output

    check_output(output, fmt)
    info = engine.open_run(run_dir)
    found = engine.read_inputs(info, inputs, labelled=labelled, skip_bad=skip_bad, column=column)
    for note in found.notes:
        warn(note)
    model = engine.load_model(info)
    engine.check_model(model, info, found)  # before the output is opened: a refusal writes nothing
    spec = info.spec(top_k)
    with PredictionWriter(spec, output, fmt, labelled) as writer:
        engine.predict(model, info, found, spec, writer.write, batch_size)
    from dltrain.console import stderr

    if found.skipped:  # named before TensorFlow started, or as the files streamed
        warn(f"skipped {len(found.skipped)} unreadable file(s) (--skip-bad), first: {found.skipped[0]}")
    skipped = f" ({len(found.skipped)} skipped)" if found.skipped else ""
    stderr.print(writer.summary() + skipped, highlight=False, soft_wrap=True, markup=False)
