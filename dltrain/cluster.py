"""What TF_CONFIG says about the cluster, read without TensorFlow (so its errors come before the import)."""

from __future__ import annotations

import json
import os

from dltrain.errors import ConfigError


def set_tf_config_from_flags(workers: str | None, worker_index: int | None) -> None:
    """Build ``TF_CONFIG`` from ``--workers host:port,... --worker-index N`` for users who do not write it.

    Raises:
        ConfigError: only one of the two flags, a bad index, or TF_CONFIG already set as well.
    """
    if workers is None and worker_index is None:
        return
    if workers is None or worker_index is None:
        raise ConfigError(
            "--workers and --worker-index go together: pass both, the same --workers on every worker."
        )
    if os.environ.get("TF_CONFIG"):
        raise ConfigError("TF_CONFIG is set and so is --workers; use one of them.")
    hosts = [h.strip() for h in workers.split(",") if h.strip()]
    if not hosts or any(":" not in h for h in hosts):
        raise ConfigError(f"--workers must be host:port,host:port,... Received: {workers!r}.")
    if not 0 <= worker_index < len(hosts):
        raise ConfigError(f"--worker-index must be between 0 and {len(hosts) - 1}. Received: {worker_index}.")
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": worker_index}}
    )


def tf_config_workers() -> int:
    """Number of training tasks (chief + workers) in ``TF_CONFIG``; 0 when it is not set.

    Raises:
        ConfigError: TF_CONFIG is set but is not the JSON TensorFlow expects.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        return 0
    try:
        spec = json.loads(text)
        cluster = spec["cluster"]
        return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(
            'TF_CONFIG is set but is not valid: expected JSON like {"cluster": {"worker": ["host:port", ...]}, '
            '"task": {"type": "worker", "index": 0}}.'
        ) from None
