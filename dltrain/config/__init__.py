"""The experiment config (light zone): schema, strict YAML, validation and messages. See docs/architecture.md."""

from __future__ import annotations

from dltrain.config.loading import (
    apply_overrides,
    diff_configs,
    json_schema,
    load_config,
    load_config_text,
    to_dict,
    to_yaml,
)
from dltrain.config.schema import *  # noqa: F403  (every section model: CnnModel, CsvData, ...)
from dltrain.config.schema import __all__ as _schema_names

__all__ = [
    *_schema_names,
    "apply_overrides",
    "diff_configs",
    "json_schema",
    "load_config",
    "load_config_text",
    "to_dict",
    "to_yaml",
]
