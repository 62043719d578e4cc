"""``dltrain lr-find``: the learning-rate range test on a fresh model; prints the suggestion."""

from __future__ import annotations

from pathlib import Path

from dltrain.config import load_config
from dltrain.console import result_line, setup_logging, warn
from dltrain.data import load_splits


def run(config: Path, overrides: list[str], runs_dir: Path, verbose: bool) -> None:
    cfg = load_config(config, overrides)
    setup_logging(verbose)
    splits = load_splits(cfg.data, cfg.seed)
    from dltrain.train import fit as training  # TensorFlow starts here

    run_dir, result = training.lr_find(cfg, runs_dir, splits)
    s = result.suggestion
    result_line(f"run: {run_dir}")
    if s.lr is None:
        result_line(f"no suggestion: {s.message}")
    else:
        result_line(f"suggested learning rate: {s.lr:.3g} (rule {s.rule}, {len(result.lrs)} steps)")
        result_line(f"use it: --set optimizer.learning_rate={s.lr:.3g}  (or learning_rate: auto)")
    for warning in s.warnings:
        warn(warning)
    result_line(f"plot: {run_dir / 'lr_find' / 'lr_find.png'}")
