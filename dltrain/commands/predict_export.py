"""``dltrain predict --model EXPORT_DIR``: an onnx or litert export folder on new data, without TensorFlow.

Reads only the export folder; TensorFlow is never imported (tests/test_export.py asserts it).
"""

from __future__ import annotations

from pathlib import Path

from dltrain.commands.predict import check_arguments
from dltrain.console import setup_logging, warn


def run(
    model_dir: Path,
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
    from dltrain.serving import folder as serving

    check_output(output, fmt)
    export = serving.open_export(model_dir)
    info = export.run_info()
    found = engine.read_inputs(info, inputs, labelled=labelled, skip_bad=skip_bad, column=column)
    for note in found.notes:
        warn(note)
    if found.skipped:
        warn(f"skipped {len(found.skipped)} unreadable file(s) (--skip-bad), first: {found.skipped[0]}")
    spec = info.spec(top_k)
    with PredictionWriter(spec, output, fmt, labelled) as writer:
        serving.predict(export, found, spec, writer.write, batch_size)
    from dltrain.console import stderr

    skipped = f" ({len(found.skipped)} skipped)" if found.skipped else ""
    stderr.print(writer.summary() + skipped, highlight=False, soft_wrap=True, markup=False)
