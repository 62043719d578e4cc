"""The ``dltrain`` command line. Light zone: TensorFlow is imported inside command bodies only.

``dltrain --help``, ``dltrain config ...`` and every config error return without loading TensorFlow.
"""

from __future__ import annotations

import errno
import json
import logging
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dltrain import __version__
from dltrain.cluster import set_tf_config_from_flags
from dltrain.config import Config, json_schema, load_config, to_yaml
from dltrain.console import setup_logging, stderr, stdout
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

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a key, e.g. --set optimizer.learning_rate=3e-3 (repeatable)."),
]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Folder that holds run directories.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def _fail(message: str, code: int) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn a ``DltrainError`` into its one-line message and exit code; Ctrl-C into exit 130."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DltrainError as exc:
            raise _fail(_escape(str(exc)), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _fail("interrupted by Ctrl-C.", EXIT_INTERRUPTED) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise
            where = f" while writing {exc.filename}" if exc.filename else ""
            raise _fail(
                _escape(
                    f"no space left on the disk (or over the file-size limit){where}: {exc.strerror}. "
                    "Free some space; a fit can continue with dltrain fit --resume RUN."
                ),
                EXIT_RUN,
            ) from None

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _out(text: str) -> None:
    """A result line on stdout, never wrapped (paths stay copyable)."""
    sys.stdout.write(text + "\n")


def _load(config: Path, overrides: list[str] | None) -> Config:
    return load_config(config, overrides or [])


def _load_data(cfg: Config) -> Any:
    """Load the data before TensorFlow is imported: a data error (exit 3) then costs no TF start-up."""
    from dltrain.data import load_splits

    return load_splits(cfg.data, cfg.seed)


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
    if config is None and resume is None:
        raise _fail("give a CONFIG to train, or --resume RUN to continue a run.", 2)
    if config is None and set_:
        raise _fail("--set needs CONFIG: pass the run's config (RUN/config.yaml) with the changed keys.", 2)
    cfg = _load(config, set_) if config is not None else None
    set_tf_config_from_flags(workers, worker_index)
    setup_logging(verbose)
    if resume is not None:
        from dltrain.train import fit as commands

        outcome = commands.resume(resume, cfg)
    else:
        assert cfg is not None
        splits = _load_data(cfg)
        from dltrain.train import fit as commands

        outcome = commands.fit(cfg, runs_dir, run_dir, splits)
    result = outcome.result
    if not outcome.chief:
        _out(f"worker done; the chief wrote the run: {outcome.run_dir}")
        return
    best = (
        f"{result.monitor} {result.best_value:.4f} at epoch {result.best_epoch}"
        if result.best_epoch
        else "none"
    )
    _out(f"run: {outcome.run_dir}")
    _out(
        f"trained {result.epochs_run} epoch(s){' (stopped early)' if result.stopped_early else ''}; "
        f"best {best}; model: {outcome.run_dir / 'model.keras'}"
    )
    _out(f"next: dltrain evaluate {outcome.run_dir}")


@app.command("lr-find")
@handle_errors
def lr_find(
    config: ConfigArg, set_: SetOpt = None, runs_dir: RunsDirOpt = Path("runs"), verbose: VerboseOpt = False
) -> None:
    """Learning-rate range test: sweep the LR on a fresh model and suggest one."""
    cfg = _load(config, set_)
    setup_logging(verbose)
    splits = _load_data(cfg)
    from dltrain.train import fit as commands

    run_dir, result = commands.lr_find(cfg, runs_dir, splits)
    s = result.suggestion
    _out(f"run: {run_dir}")
    if s.lr is None:
        _out(f"no suggestion: {s.message}")
    else:
        _out(f"suggested learning rate: {s.lr:.3g} (rule {s.rule}, {len(result.lrs)} steps)")
        _out(f"use it: --set optimizer.learning_rate={s.lr:.3g}  (or learning_rate: auto)")
    for warning in s.warnings:
        stderr.print(f"[yellow]warning:[/] {_escape(warning)}")
    _out(f"plot: {run_dir / 'lr_find' / 'lr_find.png'}")


@app.command()
@handle_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory written by dltrain fit.", show_default=False)],
    split: Annotated[str, typer.Option(help="Split to score: test (held out) or validation.")] = "test",
    top_k: Annotated[int, typer.Option(help="How many of the worst mistakes to keep.", min=0)] = 16,
    verbose: VerboseOpt = False,
) -> None:
    """Score a trained run on held-out data it never trained on."""
    if split not in ("test", "validation"):
        raise _fail(f"--split must be test or validation. Received: {split!r}.", 2)
    setup_logging(verbose)
    from dltrain.report import evaluate as evaluation

    report = evaluation.evaluate_run(run, split, top_k=top_k)
    evaluation.print_report(report, stdout)


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
    cfg = _load(config, set_)
    splits = _load_data(cfg)
    from dltrain.errors import DataError
    from dltrain.report.inspect_data import inspect_data, print_inspect

    report = inspect_data(cfg, splits, runs_dir)
    print_inspect(report, _out)
    if fail_on_duplicates and report.duplicates:
        raise DataError(
            f"{len(report.duplicates)} example(s) appear in more than one split; see "
            f"{report.run_dir / 'duplicates.csv'}. Remove them so held-out scores stay honest."
        )


@config_app.command("show")
@handle_errors
def config_show(config: ConfigArg, set_: SetOpt = None) -> None:
    """Print the resolved config: every default filled in, overrides applied."""
    cfg = _load(config, set_)
    sys.stdout.write(to_yaml(cfg))


@config_app.command("schema")
@handle_errors
def config_schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the config's JSON Schema (point your editor's YAML plugin at it)."""
    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        _out(f"wrote {output}")


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
