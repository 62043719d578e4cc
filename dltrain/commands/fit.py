"""``dltrain fit``: train a config into a new run directory, or continue one with ``--resume``."""

from __future__ import annotations

from pathlib import Path

from dltrain.cluster import set_tf_config_from_flags, tf_config_workers
from dltrain.config import load_config
from dltrain.console import result_line, setup_logging
from dltrain.data import load_splits
from dltrain.errors import ConfigError
from dltrain.rundir.lock import check_unlocked


def run(
    config: Path | None,
    overrides: list[str],
    runs_dir: Path,
    run_dir: Path | None,
    workers: str | None,
    worker_index: int | None,
    resume: Path | None,
    verbose: bool,
) -> None:
    if config is None and resume is None:
        raise ConfigError("give a CONFIG to train, or --resume RUN to continue a run.")
    if config is None and overrides:
        raise ConfigError(
            "--set needs CONFIG: pass the run's config (RUN/config.yaml) with the changed keys."
        )
    cfg = load_config(config, overrides) if config is not None else None
    if cfg is not None and cfg.tracking is not None:
        from dltrain.experiments.tracking import require_mlflow

        require_mlflow()  # exit 2 naming the extra, before TensorFlow and before any run directory
    set_tf_config_from_flags(workers, worker_index)
    setup_logging(verbose)
    if resume is not None:
        if tf_config_workers() <= 1 and resume.is_dir():
            check_unlocked(resume)  # a live run is refused in a second, not after TensorFlow has started
        from dltrain.train import fit as training  # TensorFlow starts here

        outcome = training.resume(resume, cfg)
    else:
        assert cfg is not None
        splits = load_splits(cfg.data, cfg.seed)  # a data error costs no TensorFlow start-up
        from dltrain.train import fit as training  # TensorFlow starts here

        outcome = training.fit(cfg, runs_dir, run_dir, splits)
    result = outcome.result
    if not outcome.chief:
        result_line(f"worker done; the chief wrote the run: {outcome.run_dir}")
        return
    best = (
        f"{result.monitor} {result.best_value:.4f} at epoch {result.best_epoch}"
        if result.best_epoch
        else "none"
    )
    stopped = f" (stopped early: {result.stop_reason})" if result.stop_reason else ""
    result_line(f"run: {outcome.run_dir}")
    result_line(
        f"trained {result.epochs_run} epoch(s){stopped}; best {best}; model: {outcome.run_dir / 'model.keras'}"
    )
    result_line(f"next: dltrain evaluate {outcome.run_dir}")
