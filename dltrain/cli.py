"""The ``dltrain`` command line: parses, then dispatches to ``dltrain.commands.<command>``. Light zone.

``dltrain --help``, ``dltrain config ...`` and every config error return without loading TensorFlow: each
command's module is imported inside its function, and does its light work (config, data) before TensorFlow.
Errors become one line and an exit code here (docs/architecture.md, "Exit codes").
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dltrain import __version__
from dltrain.console import error, stdout
from dltrain.errors import EXIT_INTERRUPTED, EXIT_RUN, DltrainError

log = logging.getLogger("dltrain")

app = typer.Typer(
    name="dltrain",
    help="Train Keras / TensorFlow models from YAML experiment configs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
config_app = typer.Typer(help="Show a resolved config or the config's JSON Schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")
data_app = typer.Typer(help="Look at a config's data before training.", no_args_is_help=True)
app.add_typer(data_app, name="data")
runs_app = typer.Typer(
    help="List run directories and compare runs (reads small files only).", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a key, e.g. --set optimizer.learning_rate=3e-3 (repeatable)."),
]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Folder that holds run directories.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Debug logging, and TensorFlow's own start-up lines.")
]


def handle_errors(fn: F) -> F:
    """Turn a ``DltrainError`` into its one-line message and exit code; Ctrl-C into exit 130."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            # `dltrain fit ... | head -3`: the reader stopped reading the result lines after the work was done.
            # Quietly, with the work's success: no traceback, and no second error when Python flushes stdout.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except DltrainError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted by Ctrl-C.")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise
            where = f" while writing {exc.filename}" if exc.filename else ""
            error(
                f"no space left on the disk (or over the file-size limit){where}: {exc.strerror}. "
                "Free some space; a fit can continue with dltrain fit --resume RUN."
            )
            raise typer.Exit(EXIT_RUN) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        stdout.print(f"dltrain {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train Keras / TensorFlow models from YAML experiment configs.

    fit trains and writes runs/<name>-<time>/; lr-find suggests a learning rate; evaluate scores a run on its
    held-out test split.
    """


@app.command()
@handle_errors
def fit(
    config: Annotated[
        Path | None,
        typer.Argument(help="Experiment config (YAML); optional with --resume.", show_default=False),
    ] = None,
    set_: SetOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir", help="Exact run directory to create (multi-worker: the same on every worker)."
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            help="Multi-worker without TF_CONFIG: every worker's host:port, comma-separated, in order."
        ),
    ] = None,
    worker_index: Annotated[
        int | None, typer.Option(help="With --workers: this worker's position (0 = chief).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue this run directory from its last checkpoint (after a kill, Ctrl-C, SIGTERM)."
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Train a model from CONFIG into a new run directory, or continue one with --resume."""
    from dltrain.commands import fit as command

    command.run(config, set_ or [], runs_dir, run_dir, workers, worker_index, resume, verbose)


@app.command("lr-find")
@handle_errors
def lr_find(
    config: ConfigArg,
    set_: SetOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    unfrozen: Annotated[
        bool,
        typer.Option(
            "--unfrozen",
            help="With train.freeze_epochs: sweep the unfrozen model (head and backbone) instead of the frozen one "
            "(the same as --set lr_find.unfrozen=true).",
        ),
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Learning-rate range test: sweep the LR on a fresh model and suggest one."""
    from dltrain.commands import lr_find as command

    command.run(config, [*(set_ or []), *(["lr_find.unfrozen=true"] if unfrozen else [])], runs_dir, verbose)


@app.command()
@handle_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory written by dltrain fit.", show_default=False)],
    split: Annotated[str, typer.Option(help="Split to score: test (held out) or validation.")] = "test",
    top_k: Annotated[int, typer.Option(help="How many of the worst mistakes to keep.", min=0)] = 16,
    verbose: VerboseOpt = False,
) -> None:
    """Score a trained run on held-out data it never trained on."""
    from dltrain.commands import evaluate as command

    command.run(run, split, top_k, verbose)


@app.command()
@handle_errors
def predict(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run directory written by dltrain fit (with --model: the first input).", show_default=False
        ),
    ],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Files, folders (searched recursively) or quoted patterns: images, arrays, CSVs or texts, as the "
            "run was trained on.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="An onnx or litert folder from dltrain export: predict with it, without TensorFlow "
            "(then every argument is an input).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the rows to this file (atomically) instead of stdout."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    top_k: Annotated[int, typer.Option(help="Classes (with probabilities) per row, best first.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Examples per batch through the model.")] = 256,
    labelled: Annotated[
        bool,
        typer.Option(
            "--labelled", help="Compare with the labels: class folders, a CSV's label column, an .npz's y."
        ),
    ] = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip unreadable images (counted) instead of stopping.")
    ] = False,
    column: Annotated[
        str | None, typer.Option(help="Text runs: the CSV column that holds the texts.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Predict new data with a run's best model: one row per input (id, class, probability, top-k)."""
    from dltrain.commands import predict as command

    # With --model the first positional is an input, not a run.
    source, items = (model, [str(run), *(inputs or [])]) if model is not None else (run, inputs or [])
    command.run(
        source,
        items,
        output,
        fmt,
        top_k,
        batch_size,
        labelled,
        skip_bad,
        column,
        verbose,
        exported=model is not None,
    )


@app.command()
@handle_errors
def export(
    run: Annotated[Path, typer.Argument(help="A run directory written by dltrain fit.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="saved_model, onnx or litert.")] = "saved_model",
    quantize: Annotated[
        str, typer.Option(help="none, float16, dynamic (int8 weights) or int8 (calibrated on training data).")
    ] = "none",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The export folder (default RUN/export/FORMAT[-Q]).")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Export a run's model (SavedModel, ONNX, LiteRT), checked against model.keras on the test split."""
    from dltrain.commands import export as command

    command.run(run, fmt, quantize, output, verbose)


@data_app.command("inspect")
@handle_errors
def data_inspect(
    config: ConfigArg,
    set_: SetOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    fail_on_duplicates: Annotated[
        bool, typer.Option("--fail-on-duplicates", help="Exit 3 when an example is in two splits.")
    ] = False,
) -> None:
    """Examples per class per split, value ranges, sample images, and examples found in two splits."""
    from dltrain.commands import inspect_data as command

    command.run(config, set_ or [], runs_dir, fail_on_duplicates)


@app.command()
@handle_errors
def sweep(
    config: Annotated[
        Path | None,
        typer.Argument(help="Experiment config with a sweep: section (or use --param).", show_default=False),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="KEY=loguniform(LOW,HIGH) | uniform(LOW,HIGH) | int(LOW,HIGH) | choice(V1,V2,...).",
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Number of trials (default: sweep.trials).", min=1)
    ] = None,
    set_: SetOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    sweep_dir: Annotated[
        Path | None,
        typer.Option("--sweep-dir", help="Exact sweep directory (default: RUNS_DIR/<name>-sweep-<time>)."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL: sqlite:///..., postgresql://..., journal:/shared/study.log."),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue a stopped sweep, or join a running one, in SWEEP_DIR.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Hyper-parameter search on Optuna: each trial a run directory trained by a child dltrain fit."""
    from dltrain.commands import sweep as command

    code = command.run(config, set_ or [], param or [], trials, runs_dir, sweep_dir, storage, resume, verbose)
    if code:
        raise typer.Exit(code)


@runs_app.command("ls")
@handle_errors
def runs_ls(
    runs_dir: Annotated[Path, typer.Argument(help="Folder that holds run directories.")] = Path("runs"),
    sort: Annotated[
        str | None,
        typer.Option(help="Sort by a column (name, status, best, test, cpu_s, started, ...); -KEY reverses."),
    ] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", help="KEY OP VALUE, e.g. status=finished or 'best>0.9' (repeatable: all must hold)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list instead of the table.")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list lr-find, inspect and sweep folders.")
    ] = False,
) -> None:
    """One row per run: status (a dead run's stale 'running' detected), kinds, epochs, best and test scores."""
    from dltrain.commands import runs as command

    command.ls(runs_dir, sort, filter_ or [], as_json, show_all)


@runs_app.command("compare")
@handle_errors
def runs_compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories.", show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The overlaid learning curves (default: compare.png)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
) -> None:
    """The config keys that differ, best and test scores side by side, and their learning curves overlaid."""
    from dltrain.commands import runs as command

    command.compare(runs, output, as_json)


@config_app.command("show")
@handle_errors
def config_show(config: ConfigArg, set_: SetOpt = None) -> None:
    """Print the resolved config: every default filled in, overrides applied."""
    from dltrain.commands import config as command

    command.show(config, set_ or [])


@config_app.command("schema")
@handle_errors
def config_schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the config's JSON Schema (point your editor's YAML plugin at it)."""
    from dltrain.commands import config as command

    command.schema(output)


def main() -> None:
    from dltrain import tfquiet

    tfquiet.install()  # first: TensorFlow's C++ start-up noise off stderr (not with --verbose / DLTRAIN_TF_LOGS=1)
    # Past a file-size limit (ulimit -f) the kernel sends SIGXFSZ, which kills without a word; ignored, the
    # write fails with EFBIG instead and the run stops with a clear message and its checkpoints intact.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    app()


if __name__ == "__main__":
    main()
