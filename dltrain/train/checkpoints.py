"""Training state on disk: ``tf.train.CheckpointManager`` plus a verified restore that falls back.

Everything a resumed run needs to continue exactly where it stopped lives in one ``tf.train.Checkpoint``:
every model variable (BatchNorm statistics and dropout seed state included: docs/architecture.md, "Checkpoints"), the
optimizer (slots and iteration count, hence the schedule position), the epoch and the step inside it,
the partial sums of the epoch's metrics, the best score and the early-stopping counters. The data order
is a function of (seed, epoch), so it needs no state of its own.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from dltrain.errors import RunDirError
from dltrain.testing import faults

log = logging.getLogger(__name__)

_DISK_FULL = ("No space left", "File too large", "Disk quota", "ENOSPC", "EFBIG", "RESOURCE_EXHAUSTED")


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    return any(marker in str(exc) for marker in _DISK_FULL)


def _numbers(directory: Path, prefix: str) -> list[int]:
    """Checkpoint numbers found on disk (by their index files), newest first."""
    found = []
    for path in directory.glob(f"{prefix}-*.index"):
        match = re.fullmatch(rf"{re.escape(prefix)}-(\d+)\.index", path.name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found, reverse=True)


def _manager(
    checkpoint: tf.train.Checkpoint, directory: Path, prefix: str, keep: int
) -> tf.train.CheckpointManager:
    try:
        return tf.train.CheckpointManager(
            checkpoint, str(directory), max_to_keep=keep, checkpoint_name=prefix
        )
    except Exception as exc:  # a corrupt state file: a text-proto parse error of some kind
        state = directory / "checkpoint"
        aside = directory / f"checkpoint.corrupt-{int(time.time())}"
        log.warning(
            "%s is corrupt (%s); moved aside to %s, checkpoints will be found by file name",
            state,
            exc,
            aside.name,
        )
        state.rename(aside)
        return tf.train.CheckpointManager(
            checkpoint, str(directory), max_to_keep=keep, checkpoint_name=prefix
        )


def clean_leftovers(run_dir: Path) -> None:
    """Remove what a killed process left half-written: TF temp dirs and our own temp files."""
    ckpt_dir = run_dir / "checkpoints"
    for pattern in ("**/*_temp*", "**/*.tmp*"):
        for path in ckpt_dir.glob(pattern) if ckpt_dir.is_dir() else []:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    for path in list(run_dir.glob(".model.*.keras")) + list(run_dir.glob(".*.tmp")):
        path.unlink(missing_ok=True)


def _listed_in_state_file(directory: Path) -> list[int]:
    """Checkpoint numbers a CheckpointManager state file names (empty if it is missing or corrupt)."""
    try:
        state = tf.train.get_checkpoint_state(str(directory))
    except Exception:  # a corrupt state file: fall back to the files on disk
        return []
    if state is None:
        return []
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]


class TrainingState:
    """The checkpointed variables of a fit, and their latest / best checkpoint managers."""

    def __init__(
        self,
        run_dir: Path,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        strategy: tf.distribute.Strategy,
        *,
        keep: int,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """``extra``: the handlers' checkpointed variables by name (best score, early-stopping counters, ...).

        Names are part of the checkpoint format: a restore asserts that every object the program has is in the
        checkpoint, so runs made before keep restoring only while the names stay (docs/architecture.md).
        """
        self.dir = run_dir / "checkpoints"
        with strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
            self.partial = tf.Variable(
                [0.0, 0.0, 0.0], dtype=tf.float64, trainable=False, name="partial_sums"
            )
        self.extra = dict(extra or {})
        self.checkpoint = tf.train.Checkpoint(
            model_variables=list(model.variables),
            optimizer=optimizer,
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            partial_sums=self.partial,
            **self.extra,
        )
        self.manager = _manager(self.checkpoint, self.dir, "ckpt", keep)
        self.best_checkpoint = tf.train.Checkpoint(model_variables=list(model.variables))
        self.best_manager = _manager(self.best_checkpoint, self.dir / "best", "best", 1)
        self._faults = faults.active()
        self.last_saved: int | None = None
        self._writes = 0

    # ----------------------------------------------------------------------------------------- save

    def save(self, number: int, run_dir_hint: Path) -> None:
        """Write a checkpoint numbered by the global step; a full disk is a clean ``RunDirError``."""
        if self.last_saved == number:
            return
        self._fault_during_write(number)
        try:
            self.manager.save(checkpoint_number=number)
        except Exception as exc:
            self._raise_write_error(exc, f"checkpoint ckpt-{number}", run_dir_hint)
        self.last_saved = number

    def save_best(self, number: int, run_dir_hint: Path) -> None:
        try:
            self.best_manager.save(checkpoint_number=number)
        except Exception as exc:
            self._raise_write_error(exc, f"best checkpoint best-{number}", run_dir_hint)

    def _raise_write_error(self, exc: BaseException, what: str, run_dir: Path) -> None:
        previous = self.manager.latest_checkpoint
        kept = (
            f"the previous checkpoint {Path(previous).name} is intact"
            if previous
            else "no earlier checkpoint"
        )
        if _is_disk_full(exc):
            raise RunDirError(
                f"no space left on the disk (or over the file-size limit) while writing the {what}; {kept}. "
                f"Free some space, then resume: dltrain fit --resume {run_dir}"
            ) from None
        raise RunDirError(
            f"could not write the {what} ({type(exc).__name__}: {str(exc)[:200]}); {kept}."
        ) from None

    def _fault_during_write(self, number: int) -> None:
        """``kill@checkpoint-write``: leave a torn checkpoint under its final name, then die.

        ``sigint@checkpoint-write`` / ``sigterm@...``: the signal arrives as the write starts (a second
        Ctrl-C while the checkpoint of the first is being saved); the write must still complete.
        """
        self._writes += 1
        fault = next((f for f in self._faults if f.at_checkpoint_write == self._writes), None)
        if fault is None:
            return
        if fault.action != "kill":
            faults.fire_signal(fault)
            return
        prefix = str(self.dir / f"ckpt-{number}")
        self.checkpoint.write(prefix)
        data = next(self.dir.glob(f"ckpt-{number}.data-*"))
        with open(data, "r+b") as fh:
            fh.truncate(max(1, data.stat().st_size // 2))
        faults.fire_signal(faults.Fault("kill"))

    # -------------------------------------------------------------------------------------- restore

    def restore_latest(self, source: Path | None = None) -> str | None:
        """Restore the newest checkpoint that loads, falling back to older ones with a warning.

        Args:
            source: another run's checkpoint folder to read (a non-chief worker reads the chief's); it is only
                read, never cleaned.

        Returns:
            The checkpoint restored, or None when the run has none yet.

        Raises:
            RunDirError: checkpoints exist but none of them loads.
        """
        directory = source or self.dir
        if source is None:
            listed = [int(p.rsplit("-", 1)[1]) for p in self.manager.checkpoints]
        else:
            listed = _listed_in_state_file(source)
        on_disk = _numbers(directory, "ckpt")
        if listed and source is not None:
            on_disk = [n for n in on_disk if n <= max(listed)]
        elif listed:
            # The state file is written only after a checkpoint is complete: files newer than the last one it
            # names were being written when the process died. They are torn or at best unconfirmed; drop them.
            for number in [n for n in on_disk if n > max(listed)]:
                log.warning(
                    "removing ckpt-%d: its write never completed (the process died during it)", number
                )
                for path in self.dir.glob(f"ckpt-{number}.*"):
                    path.unlink(missing_ok=True)
            on_disk = [n for n in on_disk if n <= max(listed)]
        numbers = sorted(set(listed) | set(on_disk), reverse=True)
        failures = []
        for number in numbers:
            prefix = str(directory / f"ckpt-{number}")
            try:
                self.checkpoint.restore(prefix).assert_existing_objects_matched()
            except Exception as exc:  # DataLoss, NotFound, OutOfRange, checksum and match errors alike
                reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
                log.warning(
                    "checkpoint ckpt-%d is unusable (%s); falling back to the one before", number, reason
                )
                failures.append(f"ckpt-{number}")
                continue
            if failures:
                log.warning("resuming from ckpt-%d; skipped unusable %s", number, ", ".join(failures))
            return prefix
        if failures:
            raise RunDirError(
                f"{directory}: no usable checkpoint ({', '.join(failures)} are all damaged). "
                "The run cannot be resumed; start it again."
            )
        return None

    def restore_best(self, epoch: int, end_step: int) -> str:
        """Load epoch ``epoch``'s weights (the best epoch's) into the model; say where they came from.

        From ``best/best-<epoch>``, else from the epoch's own checkpoint ``ckpt-<end_step>`` if it is still kept.
        Never another epoch's weights under the best one's name.

        Raises:
            RunDirError: neither loads (exit 5); the message names both.
        """
        tried = []
        best = self.dir / "best" / f"best-{epoch}"
        sources = [(best, self.best_checkpoint, f"best/best-{epoch}")]
        epoch_end = self.dir / f"ckpt-{end_step}"
        weights_only = tf.train.Checkpoint(model_variables=self.checkpoint.model_variables)
        sources.append((epoch_end, weights_only, f"ckpt-{end_step}"))
        for prefix, checkpoint, name in sources:
            if not Path(f"{prefix}.index").exists():
                tried.append(f"{name} (missing)")
                continue
            try:
                checkpoint.restore(str(prefix)).assert_existing_objects_matched()
            except Exception as exc:  # DataLoss, checksum and match errors alike
                reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
                log.warning("checkpoint %s is unusable (%s)", name, reason)
                tried.append(f"{name} (damaged)")
                continue
            if tried:
                log.warning("the best epoch's weights came from %s (%s)", name, "; ".join(tried))
            return name
        raise RunDirError(
            f"{self.dir}: the best epoch's weights (epoch {epoch}) cannot be restored: {', '.join(tried)}. "
            "model.keras was not written rather than label another epoch's weights the best. The newest "
            "checkpoint is intact: continue with dltrain fit CONFIG --set train.epochs=N --resume RUN, or start "
            "again."
        )

    def reset_partial(self) -> None:
        self.step_in_epoch.assign(0)
        self.partial.assign([0.0, 0.0, 0.0])

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "epoch": int(self.epoch.numpy()),
            "step_in_epoch": int(self.step_in_epoch.numpy()),
        }
        for name, var in self.extra.items():
            if not hasattr(var, "numpy"):  # a whole trackable (transfer learning's backbone optimizer)
                continue
            value = var.numpy()
            out[name] = value.item() if hasattr(value, "item") else value
        return out
