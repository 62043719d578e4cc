"""``dltrain sweep``: a hyper-parameter search on Optuna (``dltrain.experiments.sweep``). Light: no TensorFlow
here; each trial is a child ``dltrain fit``."""

from __future__ import annotations

from pathlib import Path

from dltrain.console import setup_logging
from dltrain.errors import ConfigError


def run(
    config: Path | None,
    overrides: list[str],
    params: list[str],
    trials: int | None,
    runs_dir: Path,
    sweep_dir: Path | None,
    storage: str | None,
    resume: Path | None,
    verbose: bool,
) -> int:
    from dltrain.experiments import sweep as sweeping

    setup_logging(verbose)
    if resume is not None:
        if config is not None or params or overrides or storage or sweep_dir:
            raise ConfigError(
                "--resume SWEEP_DIR continues the sweep as it was made: give no CONFIG, --param, --set, "
                "--storage or --sweep-dir with it (only --trials may change)."
            )
        opened = sweeping.reopen(resume, trials)
    else:
        if config is None:
            raise ConfigError("give a CONFIG to sweep, or --resume SWEEP_DIR to continue one.")
        opened = sweeping.create(config, overrides, params, trials, runs_dir, sweep_dir, storage)
    return sweeping.run_sweep(opened)
