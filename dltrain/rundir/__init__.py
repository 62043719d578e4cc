"""The run directory (light zone): the only output of a command, never overwritten (docs/architecture.md)."""

from __future__ import annotations

from dltrain.rundir.lock import RunLock
from dltrain.rundir.metrics_log import MetricsLog, read_metrics
from dltrain.rundir.paths import (
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    create_named_run_dir,
    create_run_dir,
)
from dltrain.rundir.record import RunRecord, git_commit, read_run_config, read_run_json, write_config

__all__ = [
    "CONFIG_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "RUN_FILE",
    "SCHEMA_VERSION",
    "MetricsLog",
    "RunLock",
    "RunRecord",
    "create_named_run_dir",
    "create_run_dir",
    "git_commit",
    "read_metrics",
    "read_run_config",
    "read_run_json",
    "write_config",
]
