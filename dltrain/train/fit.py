"""A fit, composed: data, runtime, train step, handlers and loop into a run directory; and its resume.

The order is the product's promise: everything that can refuse the config or the data runs before the run
directory exists (``dltrain.train.preflight``, then the strategy, the model, users' callbacks), so a refusal
leaves nothing behind. See docs/architecture.md, "The flow of one fit".
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
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
from dltrain.data.state import check_same_data, write_data_files
from dltrain.errors import ConfigError, DataError, RunDirError, WorkerLostError
from dltrain.fsutil import file_sha256
from dltrain.lrfind.result import LrFindResult, write_lr_find
from dltrain.models import portable, with_outputs
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
from dltrain.testing import faults
from dltrain.train import finetune
from dltrain.train.checkpoints import clean_leftovers
from dltrain.train.events import Handler
from dltrain.train.handlers import standard_handlers
from dltrain.train.handlers.callbacks import load_callbacks
from dltrain.train.handlers.fine_tune import FineTune
from dltrain.train.handlers.lock_guard import LockGuard
from dltrain.train.handlers.tracking import Tracking
from dltrain.train.loop import FitResult, Phase, TrainingLoop, metric_columns
from dltrain.train.lr_sweep import run_lr_find
from dltrain.train.optimizers import TableSchedule
from dltrain.train.preflight import check_fit
from dltrain.train.runtime import SETTINGS, Runtime, pinned_config, setup_runtime
from dltrain.train.saving import save_model_atomic
from dltrain.train.signals import StopRequest, stop_on_signals
from dltrain.train.step import TrainStep

log = logging.getLogger(__name__)

# Keys that may differ between a run's config and the one given to --resume; anything else changes what
# the checkpoint means and is refused. Callbacks run beside the training and keep no checkpointed state.
SAFE_TO_CHANGE = ("train.epochs", "train.early_stopping.patience", "train.callbacks", "tracking", "sweep")


@dataclass
class FitOutcome:
    run_dir: Path
    result: FitResult
    learning_rate: float
    chief: bool = True


@dataclass
class Prepared:
    """What a fit builds before its run directory exists."""

    splits: Splits
    runtime: Runtime
    step: TrainStep
    callbacks: list[Handler]
    schedule: TableSchedule


def versions() -> dict[str, str]:
    import platform

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()}


def data_record(splits: Splits) -> dict[str, Any]:
    record = splits.describe()
    present = [split for split, n in splits.sizes().items() if n]
    record["fingerprints"] = {split: splits.fingerprint(split) for split in present}
    if splits.input_kind == "image_files":
        record["file_fingerprints"] = {split: splits.fingerprint(split, mtimes=False) for split in present}
    record["notes"] = splits.notes
    return record


def batch_record(cfg: Config, runtime: Runtime) -> dict[str, Any]:
    return {
        **runtime.describe(),
        "global_batch_size": cfg.data.batch_size,
        "per_replica_batch_size": cfg.data.batch_size // runtime.replicas,
    }


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    return steps_per_epoch * (cfg.train.freeze_epochs + cfg.train.epochs)


def prepare(cfg: Config, splits: Splits | None = None) -> Prepared:
    """Every check and build that can refuse the config, before a run directory exists.

    Data first (exit 3 before anything is built; ``splits`` may come loaded already, before TensorFlow was
    imported), the config against the data (exit 2), the strategy (exit 2 on a bad batch size), then the model,
    its optimizer and the input pipelines, and users' callbacks (exit 2 for a bad class).
    """
    splits = splits if splits is not None else load_splits(cfg.data, cfg.seed)
    check_fit(cfg, splits)
    runtime = setup_runtime(cfg.runtime, cfg.seed, cfg.data.batch_size, model_kind=cfg.model.kind)
    callbacks = load_callbacks(cfg.train.callbacks)
    keras.utils.set_random_seed(cfg.seed)  # the same initial weights with or without lr-find
    steps_per_epoch = math.ceil(len(splits.y_train) / cfg.data.batch_size)
    # The table is filled in once the learning rate is known (after lr-find with `auto`), before the first step.
    schedule = TableSchedule([1.0] * total_steps(cfg, steps_per_epoch))
    step = TrainStep(cfg, splits, runtime, schedule)
    return Prepared(splits, runtime, step, callbacks, schedule)


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
    prepared = prepare(cfg, splits)
    cfg = pinned_config(cfg, prepared.runtime)  # `auto` resolved once, here; --resume reuses it
    if not prepared.runtime.is_chief:
        with _scratch(prepared.runtime) as scratch:
            outcome = _fit_into(cfg, prepared, Path(scratch) / "run", shared=run_dir)
        return FitOutcome(run_dir or Path(scratch), outcome.result, outcome.learning_rate, chief=False)
    target = create_named_run_dir(run_dir) if run_dir else create_run_dir(runs_root, cfg.name)
    return _fit_into(cfg, prepared, target)


def _fit_into(cfg: Config, prepared: Prepared, run_dir: Path, shared: Path | None = None) -> FitOutcome:
    """``shared``: for a non-chief worker writing into its scratch ``run_dir``, the run directory the chief
    writes (the one to name in messages)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir) as lock:
        write_config(run_dir, to_yaml(cfg))
        record = RunRecord(run_dir, "fit", cfg.seed, lock=lock)
        record.update(
            versions=versions(),
            runtime=batch_record(cfg, prepared.runtime),
            data=data_record(prepared.splits),
        )
        log.info("run directory: %s", run_dir)
        return _train(cfg, prepared, run_dir, record, resume=False, shared=shared, lock=lock)


def resume(run_dir: Path, given: Config | None) -> FitOutcome:
    """Continue a killed, interrupted or preempted run in place, to the same end as an uninterrupted one.

    Multi-worker: every worker runs this with the same TF_CONFIG; all restore the chief's checkpoint, and
    only the chief writes ``run_dir`` (the others continue in a scratch copy that is removed).
    """
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory.")
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise RunDirError(
            f"{run_dir}: not writable by this user (read-only, or another user's run); --resume writes the run "
            "directory. Copy it to a folder you own (cp -r RUN mine/) and resume the copy."
        )
    previous = read_run_json(run_dir)
    cfg = read_run_config(run_dir)
    changed: dict[str, Any] = {}
    if given is not None:
        old, new = to_dict(cfg), to_dict(given)
        if new["optimizer"]["learning_rate"] == "auto" and old["optimizer"]["learning_rate"] != "auto":
            new["optimizer"]["learning_rate"] = old["optimizer"]["learning_rate"]  # lr-find already ran here
        if new["runtime"]["mixed_precision"] == "auto":  # resolved when the run began: keep that
            new["runtime"]["mixed_precision"] = old["runtime"]["mixed_precision"]
        differing = diff_configs(old, new)
        unsafe = [key for key in differing if not any(_within(key, safe) for safe in SAFE_TO_CHANGE)]
        if unsafe:
            raise ConfigError(
                f"--resume {run_dir}: the config differs from the run's in {', '.join(unsafe)}; a checkpoint only "
                f"continues the config it was trained with. Only {', '.join(SAFE_TO_CHANGE)} may change. "
                "Start a new run for the rest."
            )
        changed = {key: {"was": _get(old, key), "now": _get(new, key)} for key in differing}
        done = max((int(row.get("epoch", 0)) for row in read_metrics(run_dir / METRICS_FILE)), default=0)
        if "train.epochs" in changed and given.train.epochs < done:
            raise ConfigError(
                f"--resume {run_dir}: train.epochs={given.train.epochs} but the run has finished {done} epochs; "
                f"to train longer, give more than {done}."
            )
        cfg = Config.model_validate(new)
    if previous.get("status") == "finished" and not changed:
        raise RunDirError(
            f"{run_dir}: this run already finished. To train longer, pass its config with a larger train.epochs: "
            f"dltrain fit CONFIG --set train.epochs=N --resume {run_dir}"
        )
    cfg = _precision_of(cfg, previous)
    prepared = prepare(cfg)
    if not prepared.runtime.is_chief:
        with _scratch(prepared.runtime) as scratch:
            copy = Path(scratch) / "run"
            copy.mkdir()
            for name in ("config.yaml", "run.json", "metrics.csv"):
                if (run_dir / name).exists():
                    shutil.copy2(run_dir / name, copy / name)
            record = RunRecord.reopen(copy, "fit --resume")
            outcome = _train(
                cfg, prepared, copy, record, resume=True, restore_from=run_dir / "checkpoints", shared=run_dir
            )
        return FitOutcome(run_dir, outcome.result, outcome.learning_rate, chief=False)
    with RunLock(run_dir) as lock:
        clean_leftovers(run_dir)
        record = RunRecord.reopen(run_dir, "fit --resume", lock=lock)
        if changed:
            record.data["restarts"][-1]["changed"] = changed
            write_config(run_dir, to_yaml(cfg))
        for warning in check_same_data(
            previous.get("data", {}), prepared.splits, ["train", "validation"], run_dir
        ):
            log.warning("%s", warning)
        log.info("resuming %s", run_dir)
        return _train(cfg, prepared, run_dir, record, resume=True, lock=lock)


def _precision_of(cfg: Config, previous: dict[str, Any]) -> Config:
    """A run from before `auto` was pinned in config.yaml resumes in the precision its run.json recorded."""
    setting = SETTINGS.get(str(previous.get("runtime", {}).get("precision")))
    if cfg.runtime.mixed_precision != "auto" or setting is None:
        return cfg
    return cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={"mixed_precision": setting})})


def _within(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".") or key.startswith(prefix + "[")


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _find_learning_rate(
    cfg: Config, prepared: Prepared, run_dir: Path, record: RunRecord, stop: StopRequest
) -> tuple[Config, float]:
    """``optimizer.learning_rate: auto``: lr-find from the fit's own initial weights, recorded in the run."""
    found = run_lr_find(
        cfg,
        prepared.splits,
        prepared.runtime,
        initial=prepared.step.model,
        stop=stop,
        resume_hint=f" Resume with: dltrain fit --resume {run_dir}",
    )
    write_lr_find(found, run_dir / "lr_find")
    for warning in found.suggestion.warnings:
        log.warning("lr-find: %s", warning)
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
    record.update(learning_rate={"value": learning_rate, "source": "lr-find", "rule": found.suggestion.rule})
    log.info("lr-find suggests %.4g (%s); training with it", learning_rate, found.suggestion.rule)
    return cfg, learning_rate


def phases(cfg: Config) -> list[Phase]:
    """The run's phases: one (every variable, one optimizer), or transfer learning's frozen then unfrozen."""
    return finetune.phases(cfg)


def _train(
    cfg: Config,
    prepared: Prepared,
    run_dir: Path,
    record: RunRecord,
    *,
    resume: bool,
    restore_from: Path | None = None,
    shared: Path | None = None,
    lock: RunLock | None = None,
) -> FitOutcome:
    """Train into ``run_dir``. ``shared``: the run directory every worker resumes (a non-chief worker's
    ``run_dir`` is its private scratch copy, gone when it exits)."""
    splits, runtime, step = prepared.splits, prepared.runtime, prepared.step
    with record.finishing_on_error(), stop_on_signals() as stop:
        learning_rate = cfg.optimizer.learning_rate
        if learning_rate == "auto":
            cfg, learning_rate = _find_learning_rate(cfg, prepared, run_dir, record, stop)
        else:
            learning_rate = _scaled(cfg, float(learning_rate), runtime, record, resume)
        lr_values, backbone_values = finetune.lr_tables(cfg, float(learning_rate), step.train_data.steps)
        prepared.schedule.set_table(lr_values)
        if backbone_values is not None and isinstance(getattr(step, "backbone_lr", None), TableSchedule):
            step.backbone_lr.set_table(backbone_values)
        if not resume:
            write_data_files(run_dir, splits, step.stem)
        handlers = standard_handlers(cfg, step, run_dir, metric_columns(splits.metric))
        active_faults = faults.active()
        if active_faults:
            handlers.insert(1, faults.FaultHandler(active_faults, runtime.workers))
        if lock is not None:
            handlers.insert(0, LockGuard(lock))
        if getattr(step, "backbone", None):
            handlers.append(FineTune(step))
        if cfg.tracking is not None:
            handlers.append(Tracking(cfg, run_dir, resume))
        handlers.extend(prepared.callbacks)
        loop = TrainingLoop(cfg, step, run_dir, phases(cfg), handlers, lr_values)
        record.update(
            model={
                "kind": cfg.model.kind,
                "parameters": step.count_params(),
                "input_shape": list(splits.input_shape),
                "num_classes": splits.num_classes,
                "task": splits.task,
                "outputs": splits.num_outputs,
            },
            steps_per_epoch=loop.steps_per_epoch,
        )
        if resume:
            restored = loop.restore(restore_from)
            record.data["restarts"][-1]["from"] = restored
            record.save()
            if restored is None and read_metrics(run_dir / METRICS_FILE):
                # Epochs finished but their checkpoint was never written (a full disk at the first save):
                # their rows are dropped and the run starts over, as a redone epoch after any kill.
                log.warning("no checkpoint was written before the run stopped: it starts again from epoch 1")
            elif restored is None:
                log.warning("no checkpoint yet: the run starts from the beginning")
            else:
                exact = "the next batch" if restored["step_in_epoch"] else "the next epoch (epoch-exact)"
                log.info("restored %s: continuing at %s", restored["checkpoint"], exact)
        with _worker_loss_is_an_error(runtime, shared or run_dir), _decode_errors_are_data_errors(splits):
            result = loop.run(stop)
        exported = export_best(loop)
        record.update(exported=exported)
        plots.plot_learning_curves(
            read_metrics(run_dir / METRICS_FILE), run_dir / "plots" / "learning_curves.png"
        )
        for handler in handlers:
            handler.on_exported(loop, run_dir)
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
    if result.stop_reason:
        record.update(stop_reason=result.stop_reason)
    record.finish("finished")
    return FitOutcome(run_dir, result, float(learning_rate))


def export_best(loop: TrainingLoop) -> dict[str, Any]:
    """Write the best epoch's model as ``model.keras`` (atomically); return what was exported, for run.json.

    The weights in memory are the last epoch's: used as they are when it is the best, else restored from the
    best checkpoint (or that epoch's own). Exit 5 rather than another epoch's weights under the best's name.
    """
    best_epoch, _ = loop.best()
    last = loop.epoch
    if best_epoch is None:
        source, epoch = "the last epoch (no epoch had a finite monitored value)", last
    elif best_epoch == last:
        source, epoch = "the weights in memory (the best epoch is the last)", last
    else:
        source = loop.state.restore_best(best_epoch, best_epoch * loop.steps_per_epoch)
        epoch = best_epoch
    splits = loop.step.splits
    model = with_outputs(loop.step.model, splits.task, splits.target_mean, splits.target_std)
    if splits.state.get("model_inputs") == "raw columns":  # csv: one named input per raw column
        from dltrain.models.tabular import raw_columns

        model = raw_columns(model, splits.state)
    path = save_model_atomic(portable(model), loop.run_dir / "model.keras")
    return {"file": path.name, "epoch": epoch, "source": source, "sha256": file_sha256(path)}


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


@contextlib.contextmanager
def _decode_errors_are_data_errors(splits: Splits) -> Iterator[None]:
    """An image the pre-check let through but TensorFlow cannot decode: exit 3 with TensorFlow's reason, not a
    traceback. (The pre-check applies TensorFlow's rules, so this is the safety net, not the plan.)"""
    try:
        yield
    except tf.errors.InvalidArgumentError as exc:
        if splits.input_kind != "image_files":
            raise
        reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise DataError(
            f"TensorFlow could not decode an image of {splits.source} during training ({reason.strip()[:200]}). "
            "Find it with: dltrain data inspect CONFIG; then replace it, or set data.bad_images: skip."
        ) from None


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
    splits = splits if splits is not None else load_splits(cfg.data, cfg.seed)
    check_fit(cfg, splits)
    runtime = setup_runtime(cfg.runtime, cfg.seed, cfg.data.batch_size, model_kind=cfg.model.kind)
    if not runtime.is_chief:
        with _scratch(runtime) as scratch:
            return _lr_find_into(cfg, splits, runtime, Path(scratch) / "run")
    return _lr_find_into(cfg, splits, runtime, create_run_dir(runs_root, cfg.name, suffix="lrfind"))


def _lr_find_into(cfg: Config, splits: Splits, runtime: Runtime, run_dir: Path) -> tuple[Path, LrFindResult]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        write_config(run_dir, to_yaml(cfg))
        record = RunRecord(run_dir, "lr-find", cfg.seed)
        record.update(versions=versions(), runtime=batch_record(cfg, runtime), data=data_record(splits))
        with record.finishing_on_error(), stop_on_signals() as stop:
            result = run_lr_find(cfg, splits, runtime, stop=stop)
            write_lr_find(result, run_dir / "lr_find")
            for warning in result.suggestion.warnings:
                log.warning("lr-find: %s", warning)
        record.update(lr_find=result.as_dict())
        record.finish("finished")
    return run_dir, result
