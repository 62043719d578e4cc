"""Optuna, opened the same way by the sweep and by a trial's pruning handler. Light: Optuna is imported
inside functions (it is the optional extra ``dltrain[sweep]``; missing, the command exits 2 naming it).

Storage URLs: ``sqlite:///PATH`` (the default, a file inside the sweep directory: embedded, nothing to start),
any database URL SQLAlchemy and Optuna support (``postgresql://user:pw@host/db``, ``mysql://...``: several
machines run trials of one study at once), or ``journal:PATH``: Optuna's journal file, an append-only log with
file locks for a folder shared between machines (NFS), where SQLite is not safe.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from dltrain.errors import ConfigError, RunDirError

log = logging.getLogger(__name__)

TRIAL_ENV = "DLTRAIN_SWEEP_TRIAL"
"""Set by ``dltrain sweep`` for each trial's ``dltrain fit``: JSON with the storage, study, trial id, metric
and pruner; the fit then reports each epoch's metric and stops when the pruner says so."""


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "dltrain sweep needs Optuna, which is not installed: pip install 'dltrain[sweep]'."
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``; an unusable URL is exit 2, an unreachable database exit 5, naming it."""
    optuna = require_optuna()
    if url.startswith("journal:"):
        path = url[len("journal:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ConfigError(
                f"--storage {url!r}: give the journal file, e.g. journal:/shared/sweep/study.log"
            )
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except OSError as exc:
            raise RunDirError(
                f"storage {url}: cannot open the journal file ({exc.strerror or exc})."
            ) from None
    if "://" not in url:
        raise ConfigError(
            f"--storage {url!r}: not a storage URL; use sqlite:///path/study.db, postgresql://user@host/db, "
            "or journal:/shared/path/study.log."
        )
    import sqlalchemy.exc

    # SQLite: several sweep processes share one file; wait for a lock rather than fail at once.
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if not url.startswith("sqlite"):
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 10} if url.startswith(("postgres", "mysql")) else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except (
        ImportError,
        ModuleNotFoundError,
        sqlalchemy.exc.ArgumentError,
        sqlalchemy.exc.NoSuchModuleError,
    ) as exc:
        raise ConfigError(f"--storage {url}: unsupported URL or missing database driver ({exc}).") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        first = str(exc).splitlines()[0]
        raise RunDirError(f"storage {url}: cannot be reached or opened ({first}).") from None


def make_pruner(kind: str, startup_trials: int, warmup_epochs: int) -> Any:
    optuna = require_optuna()
    if kind == "none":
        return optuna.pruners.NopPruner()
    # Epochs are reported as steps 1, 2, ...; Optuna prunes from step n_warmup_steps on.
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs + 1)


def trial_env(
    storage: str, study: str, trial_id: int, number: int, metric: str, pruner: dict[str, Any]
) -> str:
    import json

    return json.dumps(
        {
            "storage": storage,
            "study": study,
            "trial_id": trial_id,
            "number": number,
            "metric": metric,
            **pruner,
        }
    )


def trial_from_env() -> dict[str, Any] | None:
    import json

    text = os.environ.get(TRIAL_ENV)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        log.warning("%s is not JSON; this fit is not pruned by a sweep", TRIAL_ENV)
        return None
    return data if isinstance(data, dict) else None
