"""``dltrain data inspect``: a first look at a config's data before training (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

from dltrain.config import load_config
from dltrain.console import result_line
from dltrain.data import load_splits
from dltrain.errors import DataError
from dltrain.report.inspect_data import inspect_data, print_inspect


def run(config: Path, overrides: list[str], runs_dir: Path, fail_on_duplicates: bool) -> None:
    cfg = load_config(config, overrides)
    splits = load_splits(cfg.data, cfg.seed)
    report = inspect_data(cfg, splits, runs_dir)
    print_inspect(report, result_line)
    if fail_on_duplicates and report.duplicates:
        raise DataError(
            f"{len(report.duplicates)} example(s) appear in more than one split; see "
            f"{report.run_dir / 'duplicates.csv'}. Remove them so held-out scores stay honest."
        )
