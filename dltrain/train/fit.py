"""Bodies of ``fit`` and ``lr-find``: imported by the CLI only after the config is valid (TF zone)."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from dltrain.cluster import tf_config_workers
from dltrain.config import Config, diff_configs, to_dict, to_yaml
from dltrain.data import Splits, load_splits
from dltrain.data.state import write_data_files
from dltrain.errors import ConfigError, DataError, RunDirError, WorkerLostError
from dltrain.lrfind.result import LrFindResult, write_lr_find
from dltrain.models.cnn import check_input_shape
from dltrain.report import plots
from dltrain.rundir import (
    METRICS_FILE,
    RunLock,
    RunRecord,
    create_named_run_dir,
    create_run_dir,
    read_metrics,
    read_run_config,
    read_run_json,
    write_config,
)
from dltrain.train.checkpoints import clean_leftovers
from dltrain.train.loop import Fit, FitResult
from dltrain.train.lr_sweep import run_lr_find
from dltrain.train.runtime import Runtime, setup_runtime
from dltrain.train.signals import stop_on_signals

log = logging.getLogger(__name__)


@dataclass
class FitOutcome:
    run_dir: Path
    result: FitResult
    learning_rate: float
    chief: bool = True


def _versions() -> dict[str, str]:
    import platform

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()}


def _data_record(splits: Splits) -> dict[str, Any]:
    record = splits.describe()
    record["fingerprints"] = {split: splits.fingerprint(split) for split, n in splits.sizes().items() if n}
    record["notes"] = splits.notes
    return record


def _prepare(cfg: Config, splits: Splits | None = None) -> tuple[Splits, Runtime]:
    """Data first (exit 3 before anything is built), then the strategy (exit 2 on a bad batch size).

    ``splits``: already loaded by the CLI, which does so before importing TensorFlow.
    """
    splits = splits if splits is not None else load_splits(cfg.data, cfg.seed)
    if cfg.model.kind == "cnn":
        check_input_shape(splits.input_shape)
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


# Keys that may differ between a run's config and the one given to --resume; anything else changes what
# the checkpoint means and is refused.
SAFE_TO_CHANGE = ("train.epochs", "train.early_stopping.patience")


def fit(
    cfg: Config, runs_root: Path, run_dir: Path | None = None, splits: Splits | None = None
) -> FitOutcome:
    """Train ``cfg`` into a new run directory under ``runs_root`` (or exactly ``run_dir``).

    Under multi-worker training every worker runs this; only the chief writes ``run_dir``, the others write
    the same files (their share of the collective checkpoint saves included) into a scratch directory that
    is removed at the end.
    """
    workers = tf_config_workers()
    multi = cfg.runtime.strategy == "multi_worker" or (cfg.runtime.strategy == "auto" and workers)
    if multi and workers > 1 and run_dir is None:
        # Checked before the strategy starts: it waits for every peer, and each worker would pick its own
        # timestamped directory name.
        raise ConfigError(
            f"multi-worker training ({workers} workers) needs --run-dir PATH, the same path on every "
            "worker (a shared folder), e.g. --run-dir runs/$SLURM_JOB_ID."
        )
    splits, runtime = _prepare(cfg, splits)
    if not runtime.is_chief:
        with _scratch(runtime) as scratch:
            outcome = _fit_into(cfg, splits, runtime, Path(scratch) / "run")
        return FitOutcome(run_dir or Path(scratch), outcome.result, outcome.learning_rate, chief=False)
    return _fit_into(
        cfg,
        splits,
        runtime,
        create_named_run_dir(run_dir) if run_dir else create_run_dir(runs_root, cfg.name),
    )


def _fit_into(cfg: Config, splits: Splits, runtime: Runtime, run_dir: Path) -> FitOutcome:
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        write_config(run_dir, to_yaml(cfg))
        record = RunRecord(run_dir, "fit", cfg.seed)
        record.update(versions=_versions(), runtime=_batch_record(cfg, runtime), data=_data_record(splits))
        log.info("run directory: %s", run_dir)
        return _train(cfg, splits, runtime, run_dir, record, resume=False)


def resume(run_dir: Path, given: Config | None) -> FitOutcome:
    """Continue a killed, interrupted or preempted run in place, to the same end as an uninterrupted one.

    Multi-worker: every worker runs this with the same TF_CONFIG; all restore the chief's checkpoint, and
    only the chief writes ``run_dir`` (the others continue in a scratch copy that is removed).
    """
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory.")
    previous = read_run_json(run_dir)
    cfg = read_run_config(run_dir)
    changed: dict[str, Any] = {}
    if given is not None:
        old, new = to_dict(cfg), to_dict(given)
        if new["optimizer"]["learning_rate"] == "auto" and old["optimizer"]["learning_rate"] != "auto":
            new["optimizer"]["learning_rate"] = old["optimizer"]["learning_rate"]  # lr-find already ran here
        differing = diff_configs(old, new)
        unsafe = [key for key in differing if key not in SAFE_TO_CHANGE]
        if unsafe:
            raise ConfigError(
                f"--resume {run_dir}: the config differs from the run's in {', '.join(unsafe)}; a checkpoint only "
                f"continues the config it was trained with. Only {', '.join(SAFE_TO_CHANGE)} may change. "
                "Start a new run for the rest."
            )
        changed = {key: {"was": _get(old, key), "now": _get(new, key)} for key in differing}
        cfg = Config.model_validate(new)
    if previous.get("status") == "finished" and not changed:
        raise RunDirError(
            f"{run_dir}: this run already finished. To train longer, pass its config with a larger train.epochs: "
            f"dltrain fit CONFIG --set train.epochs=N --resume {run_dir}"
        )
    splits, runtime = _prepare(cfg)
    if not runtime.is_chief:
        with _scratch(runtime) as scratch:
            copy = Path(scratch) / "run"
            copy.mkdir()
            for name in ("config.yaml", "run.json", "metrics.csv"):
                if (run_dir / name).exists():
                    shutil.copy2(run_dir / name, copy / name)
            record = RunRecord.reopen(copy, "fit --resume")
            outcome = _train(
                cfg, splits, runtime, copy, record, resume=True, restore_from=run_dir / "checkpoints"
            )
        return FitOutcome(run_dir, outcome.result, outcome.learning_rate, chief=False)
    with RunLock(run_dir):
        clean_leftovers(run_dir)
        record = RunRecord.reopen(run_dir, "fit --resume")
        if changed:
            record.data["restarts"][-1]["changed"] = changed
            write_config(run_dir, to_yaml(cfg))
        recorded = previous.get("data", {}).get("fingerprints", {})
        now = _data_record(splits)["fingerprints"]
        if recorded and recorded != now:
            raise DataError(
                f"{run_dir}: the data differs from what this run trained on (split fingerprints changed); "
                "restore the original data or start a new run."
            )
        log.info("resuming %s", run_dir)
        return _train(cfg, splits, runtime, run_dir, record, resume=True)


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _train(
    cfg: Config,
    splits: Splits,
    runtime: Runtime,
    run_dir: Path,
    record: RunRecord,
    *,
    resume: bool,
    restore_from: Path | None = None,
) -> FitOutcome:
    with record.finishing_on_error():
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
            learning_rate = _scaled(cfg, float(learning_rate), runtime, record, resume)
        keras.utils.set_random_seed(cfg.seed)  # the same initial weights with or without lr-find
        trainer_fit = Fit(cfg, splits, runtime, run_dir, float(learning_rate))
        if not resume:
            write_data_files(run_dir, splits, trainer_fit.trainer.stem)
        record.update(
            model={
                "kind": cfg.model.kind,
                "parameters": trainer_fit.trainer.count_params(),
                "input_shape": list(splits.input_shape),
                "num_classes": splits.num_classes,
                "task": splits.task,
                "outputs": splits.num_outputs,
            },
            steps_per_epoch=trainer_fit.steps_per_epoch,
        )
        if resume:
            restored = trainer_fit.restore(restore_from)
            record.data["restarts"][-1]["from"] = restored
            record.save()
            if restored is None:
                log.warning("no checkpoint yet: the run starts from the beginning")
            else:
                exact = "the next batch" if restored["step_in_epoch"] else "the next epoch (epoch-exact)"
                log.info("restored %s: continuing at %s", restored["checkpoint"], exact)
        with stop_on_signals() as stop, _worker_loss_is_an_error(runtime, run_dir):
            result = trainer_fit.run(stop)
        trainer_fit.export_best()
        plots.plot_learning_curves(
            read_metrics(run_dir / METRICS_FILE), run_dir / "plots" / "learning_curves.png"
        )
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


def _scaled(cfg: Config, learning_rate: float, runtime: Runtime, record: RunRecord, resume: bool) -> float:
    """Apply ``optimizer.lr_scaling`` (the config's rate is then per replica) and record what was used."""
    rule = cfg.optimizer.lr_scaling
    factor = {"none": 1.0, "linear": float(runtime.replicas), "sqrt": math.sqrt(runtime.replicas)}[rule]
    if not resume:
        entry: dict[str, Any] = {"value": learning_rate * factor, "source": "config"}
        if rule != "none":
            entry.update(configured=learning_rate, scaling=rule, replicas=runtime.replicas)
        record.update(learning_rate=entry)
    return learning_rate * factor


@contextlib.contextmanager
def _scratch(runtime: Runtime) -> Iterator[str]:
    """A non-chief worker's private run folder, removed at the end; ones left by killed workers go first."""
    prefix = f"dltrain-worker{runtime.worker_index}-"
    for old in Path(tempfile.gettempdir()).glob(prefix + "*"):
        try:
            RunLock(old / "run").acquire()  # succeeds only if its owner is dead
        except RunDirError:
            continue
        shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        yield scratch


# What TensorFlow says when a peer of a MultiWorkerMirroredStrategy cluster is gone.
_PEER_LOST = (
    "unhealthy",
    "stopped sending heartbeats",
    "Collective ops is aborted",
    "failed to connect",
    "Socket closed",
)


@contextlib.contextmanager
def _worker_loss_is_an_error(runtime: Runtime, run_dir: Path) -> Iterator[None]:
    try:
        yield
    except tf.errors.OpError as exc:
        if runtime.workers < 2 or not any(marker in str(exc) for marker in _PEER_LOST):
            raise
        first = next((line for line in str(exc).splitlines() if "task" in line or "unhealthy" in line), "")
        raise WorkerLostError(
            f"another worker of the cluster stopped ({first.strip()[:160]}). Restart every worker with the same "
            f"TF_CONFIG and: dltrain fit --resume {run_dir}"
        ) from None


def lr_find(cfg: Config, runs_root: Path, splits: Splits | None = None) -> tuple[Path, LrFindResult]:
    """Run the range test into a new run directory ``<name>-lrfind-<stamp>`` (the chief's, under multi-worker)."""
    splits, runtime = _prepare(cfg, splits)
    if not runtime.is_chief:
        with _scratch(runtime) as scratch:
            return _lr_find_into(cfg, splits, runtime, Path(scratch) / "run")
    return _lr_find_into(cfg, splits, runtime, create_run_dir(runs_root, cfg.name, suffix="lrfind"))


def _lr_find_into(cfg: Config, splits: Splits, runtime: Runtime, run_dir: Path) -> tuple[Path, LrFindResult]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        write_config(run_dir, to_yaml(cfg))
        record = RunRecord(run_dir, "lr-find", cfg.seed)
        record.update(versions=_versions(), runtime=_batch_record(cfg, runtime), data=_data_record(splits))
        with record.finishing_on_error():
            result = _lr_find_in(cfg, splits, runtime, run_dir)
        record.update(lr_find=result.as_dict())
        record.finish("finished")
    return run_dir, result
