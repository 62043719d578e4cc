"""Read a config: strict YAML, ``--set`` overrides, validation with every problem at once; and write one back
(``to_yaml``, ``to_dict``), its JSON Schema, and the keys two configs differ in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dltrain.config.problems import format_problem
from dltrain.config.schema import Config
from dltrain.config.yamlio import KeyPath, parse_scalar, parse_yaml, read_yaml_file
from dltrain.errors import ConfigError

DEFAULT_KINDS = {"optimizer": "adam", "schedule": "constant"}


def _validate(
    raw: Any, lines: dict[KeyPath, int], source: str, origins: dict[KeyPath, str] | None = None
) -> Config:
    if raw is None:
        raise ConfigError(
            f"{source}: the config is empty. Start from one in configs/, e.g. configs/digits_cnn.yaml."
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}:1: the top level must be a mapping of keys (name, data, model, ...), "
            f"not a {type(raw).__name__}."
        )
    for section, kind in DEFAULT_KINDS.items():
        # `optimizer: {learning_rate: 3e-3}` (or a --set on a section the file leaves out) means the default kind
        if isinstance(raw.get(section), dict) and "kind" not in raw[section]:
            raw = {**raw, section: {"kind": kind, **raw[section]}}
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        seen: set[str] = set()
        for err in exc.errors(include_url=False):
            text = format_problem(dict(err), raw, lines, source, origins)
            if text not in seen:  # unions of constrained types can report one problem twice
                seen.add(text)
                problems.append(text)
        problems.sort(key=lambda p: int(p.split(":")[1]) if p.split(":")[1].isdigit() else 0)
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the config", problems) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set a.b=value`` overrides to a raw config mapping (values parsed as YAML)."""
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(
                f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set optimizer.learning_rate=3e-3"
            )
            continue
        dotted, _, text = item.partition("=")
        keys = [k for k in dotted.strip().split(".")]
        if not all(keys):
            problems.append(f"--set {item!r}: empty key in {dotted!r}")
            continue
        try:
            value = parse_scalar(text)
        except ConfigError as exc:
            problems.append(f"--set {item!r}: {'; '.join(exc.problems) or exc.message}")
            continue
        set_in(raw, keys, value)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in --set", problems)
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a config file.

    Raises:
        ConfigError: with every problem found; the CLI turns it into exit code 2.
    """
    source = Path(path)
    raw, lines = read_yaml_file(source)
    origins: dict[KeyPath, str] = {}
    if overrides:
        if raw is None:
            raw = {}
        if isinstance(raw, dict):
            raw = apply_overrides(raw, overrides)
            for item in overrides:
                origins[tuple(k.strip() for k in item.partition("=")[0].split("."))] = item
    return _validate(raw, lines, str(source), origins)


def load_config_text(text: str, source: str = "<config>") -> Config:
    """Validate a config given as YAML text (used for configs stored in a run directory)."""
    raw, lines = parse_yaml(text, source)
    return _validate(raw, lines, source)


def _kind_first(node: Any) -> Any:
    if isinstance(node, dict):
        ordered = {"kind": node["kind"]} if "kind" in node else {}
        ordered.update({k: _kind_first(v) for k, v in node.items() if k != "kind"})
        return ordered
    return node


def to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data, every default filled in."""
    data = _kind_first(json.loads(cfg.model_dump_json()))
    for optional in ("sweep", "tracking"):  # sections that are off unless given: absent, not `null`
        if data.get(optional) is None:
            data.pop(optional, None)
    return data


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for short lists of scalars (``filters: [32, 64]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(x, dict | list) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def to_yaml(cfg: Config) -> str:
    return yaml.dump(to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config, for editor completion (yaml-language-server)."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dltrain experiment config"
    return schema


def diff_configs(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths whose values differ between two resolved configs."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff_configs(a, b, path + "."))
        elif a != b:
            out.append(path)
    return out


def set_in(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set ``tree[k1][k2]...[kn] = value`` in place, making the mappings on the way (a non-mapping is replaced)."""
    node = tree
    for k in keys[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            node[k] = nxt
        node = nxt
    node[keys[-1]] = value
