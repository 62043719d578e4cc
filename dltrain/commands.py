"""Bodies of ``fit`` and ``lr-find``: imported by the CLI only after the config is valid (TF zone)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from dltrain import plots
from dltrain.config import Config, to_yaml
from dltrain.data import Splits, load_splits
from dltrain.errors import ConfigError, DltrainError, NonFiniteLossError
from dltrain.lr_finder import LrFindResult, run_lr_find, write_lr_find
from dltrain.rundir import METRICS_FILE, RunLock, RunRecord, create_run_dir, read_metrics, write_config
from dltrain.runtime import Runtime, setup_runtime
from dltrain.trainer import Fit, FitResult

log = logging.getLogger(__name__)


@dataclass
class FitOutcome:
    run_dir: Path
    result: FitResult
    learning_rate: float


def _versions() -> dict[str, str]:
    import platform

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()}


def _data_record(splits: Splits) -> dict[str, Any]:
    record = splits.describe()
    record["fingerprints"] = {split: splits.fingerprint(split) for split, n in splits.sizes().items() if n}
    record["notes"] = splits.notes
    return record


def _prepare(cfg: Config) -> tuple[Splits, Runtime]:
    """Data first (exit 3 before anything is built), then the strategy (exit 2 on a bad batch size)."""
    splits = load_splits(cfg.data, cfg.seed)
    runtime = setup_runtime(cfg.runtime, cfg.seed, cfg.data.batch_size)
    return splits, runtime


def _batch_record(cfg: Config, runtime: Runtime) -> dict[str, Any]:
    return {
        **runtime.describe(),
        "global_batch_size": cfg.data.batch_size,
        "per_replica_batch_size": cfg.data.batch_size // runtime.replicas,
    }


def _lr_find_in(cfg: Config, splits: Splits, runtime: Runtime, run_dir: Path) -> LrFindResult:
    result = run_lr_find(cfg, splits, runtime)
    write_lr_find(result, run_dir / "lr_find")
    for warning in result.suggestion.warnings:
        log.warning("lr-find: %s", warning)
    return result


def fit(cfg: Config, runs_root: Path) -> FitOutcome:
    """Train ``cfg`` into a new run directory under ``runs_root``."""
    splits, runtime = _prepare(cfg)
    run_dir = create_run_dir(runs_root, cfg.name)
    with RunLock(run_dir):
        write_config(run_dir, to_yaml(cfg))
        record = RunRecord(run_dir, "fit", cfg.seed)
        record.update(versions=_versions(), runtime=_batch_record(cfg, runtime), data=_data_record(splits))
        log.info("run directory: %s", run_dir)
        try:
            learning_rate = cfg.optimizer.learning_rate
            if learning_rate == "auto":
                found = _lr_find_in(cfg, splits, runtime, run_dir)
                if found.suggestion.lr is None:
                    raise ConfigError(
                        f"`optimizer.learning_rate: auto`: lr-find gave no suggestion ({found.suggestion.message}). "
                        "Set optimizer.learning_rate to a number."
                    )
                learning_rate = float(found.suggestion.lr)
                cfg = cfg.model_copy(
                    update={"optimizer": cfg.optimizer.model_copy(update={"learning_rate": learning_rate})}
                )
                write_config(
                    run_dir,
                    f"# optimizer.learning_rate was 'auto': {learning_rate:.4g} found by lr-find "
                    f"(rule {found.suggestion.rule}); see lr_find/\n" + to_yaml(cfg),
                )
                record.update(
                    learning_rate={"value": learning_rate, "source": "lr-find", "rule": found.suggestion.rule}
                )
                log.info("lr-find suggests %.4g (%s); training with it", learning_rate, found.suggestion.rule)
            else:
                record.update(learning_rate={"value": learning_rate, "source": "config"})
            keras.utils.set_random_seed(cfg.seed)  # the same initial weights with or without lr-find
            trainer_fit = Fit(cfg, splits, runtime, run_dir, float(learning_rate))
            record.update(
                model={
                    "kind": cfg.model.kind,
                    "parameters": trainer_fit.trainer.count_params(),
                    "input_shape": list(splits.input_shape),
                    "num_classes": splits.num_classes,
                },
                steps_per_epoch=trainer_fit.steps_per_epoch,
            )
            result = trainer_fit.run()
            trainer_fit.export_best()
            plots.plot_learning_curves(
                read_metrics(run_dir / METRICS_FILE), run_dir / "plots" / "learning_curves.png"
            )
        except NonFiniteLossError as exc:
            record.finish("failed", f"non-finite loss: {exc.message}")
            raise
        except KeyboardInterrupt:
            record.finish("interrupted", "Ctrl-C")
            raise
        except DltrainError as exc:
            record.finish("failed", exc.message)
            raise
        except BaseException as exc:
            record.finish("failed", f"{type(exc).__name__}: {exc}")
            raise
        best_row = next((r for r in result.history if r["epoch"] == result.best_epoch), None)
        record.update(
            epochs_run=result.epochs_run,
            stopped_early=result.stopped_early,
            best={
                "epoch": result.best_epoch,
                "monitor": result.monitor,
                "value": result.best_value,
                "row": best_row,
            },
        )
        record.finish("finished")
    return FitOutcome(run_dir, result, float(learning_rate))


def lr_find(cfg: Config, runs_root: Path) -> tuple[Path, LrFindResult]:
    """Run the range test into a new run directory ``<name>-lrfind-<stamp>``."""
    splits, runtime = _prepare(cfg)
    run_dir = create_run_dir(runs_root, cfg.name, suffix="lrfind")
    with RunLock(run_dir):
        write_config(run_dir, to_yaml(cfg))
        record = RunRecord(run_dir, "lr-find", cfg.seed)
        record.update(versions=_versions(), runtime=_batch_record(cfg, runtime), data=_data_record(splits))
        try:
            result = _lr_find_in(cfg, splits, runtime, run_dir)
        except KeyboardInterrupt:
            record.finish("interrupted", "Ctrl-C")
            raise
        except BaseException as exc:
            record.finish("failed", f"{type(exc).__name__}: {exc}")
            raise
        record.update(lr_find=result.as_dict())
        record.finish("finished")
    return run_dir, result


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
