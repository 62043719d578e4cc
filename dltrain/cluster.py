"""What TF_CONFIG says about the cluster, read without TensorFlow (so its errors come before the import)."""

from __future__ import annotations

import json
import os

from dltrain.errors import ConfigError


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
