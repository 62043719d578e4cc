"""``dltrain evaluate``: score a run's best model on held-out data it never trained on."""

from __future__ import annotations

from pathlib import Path

from dltrain.console import setup_logging, stdout
from dltrain.errors import ConfigError


def run(run_dir: Path, split: str, top_k: int, verbose: bool) -> None:
    if split not in ("test", "validation"):
        raise ConfigError(f"--split must be test or validation. Received: {split!r}.")
    setup_logging(verbose)
    from dltrain.report import evaluate as evaluation

    report = evaluation.evaluate_run(run_dir, split, top_k=top_k)
    evaluation.print_report(report, stdout)
    from dltrain.experiments.tracking import log_eval
    from dltrain.rundir import read_run_config

    log_eval(run_dir, read_run_config(run_dir).tracking, split, report.summary)
