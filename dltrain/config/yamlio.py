"""A strict YAML reader: duplicate keys are errors, ``1e-3`` is a float, every key knows its line.

PyYAML follows YAML 1.1, which reads ``1e-3`` as a string and silently keeps the last of two equal keys.
Both are traps in an experiment config, so this loader fixes them, and records the line of each key path
so config errors can point at it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dltrain.errors import ConfigError

# YAML 1.2 core-schema floats: "1e-3", "1.0e-3", ".5", "-2E+4", "inf", "nan".
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)

KeyPath = tuple[str | int, ...]

MAX_CONFIG_BYTES = 1_000_000
"""A config is a few kilobytes; anything near a megabyte is a mistake (or an attack), refused before parsing."""
MAX_VALUES = 100_000
"""Values a config may expand to with its aliases resolved (a "billion laughs" file expands exponentially)."""


# YAML 1.2 core-schema booleans. YAML 1.1 also reads yes/no/on/off as booleans, so `mixed_precision: off`
# arrived as False and was rejected; bool fields still accept "yes"/"on"/... through pydantic.
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats and booleans."""


# Replace the YAML 1.1 float and bool resolvers with the 1.2 ones.
_StrictLoader.yaml_implicit_resolvers = {
    first: [
        (tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_RE, list("tTfF"))


def _where(source: str, node: yaml.Node) -> str:
    mark = node.start_mark
    return f"{source}:{mark.line + 1}:{mark.column + 1}"


class _Builder:
    """Turns a composed node tree into plain Python, checking keys and remembering lines."""

    def __init__(self, loader: _StrictLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[str] = []

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                key_path = (*path, key)
                if key in out:
                    first = self.lines.get(key_path, "?")
                    dotted = ".".join(str(p) for p in key_path)
                    self.problems.append(
                        f"{_where(self.source, key_node)}: duplicate key `{dotted}` (first set on line {first}); "
                        "keep only one"
                    )
                    continue
                self.lines[key_path] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, key_path)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def _check_expansion(node: yaml.Node, source: str) -> None:
    """Refuse a recursive alias, and a tree that expands past ``MAX_VALUES`` values once aliases are resolved.

    Sizes are counted once per node (an alias is the same node object), so this costs the size of the file,
    not of its expansion.
    """
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in visiting:
            raise ConfigError(
                f"{_where(source, n)}: a YAML alias refers to itself (a recursive anchor); "
                "a config is a tree: write the value out."
            )
        visiting.add(key)
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > MAX_VALUES:
                    break
        elif isinstance(n, yaml.SequenceNode):
            for item in n.value:
                total += size(item)
                if total > MAX_VALUES:
                    break
        visiting.discard(key)
        sizes[key] = total
        if total > MAX_VALUES:
            raise ConfigError(
                f"{_where(source, n)}: this value expands to more than {MAX_VALUES:,} values (through YAML "
                "aliases, or a very long list); a config holds settings, not data. Point data.path at a file."
            )
        return total

    size(node)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse ``text`` strictly.

    Returns:
        The data and a map from key path to 1-based line number.

    Raises:
        ConfigError: on a syntax error (with line:column) or duplicate keys.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{source}: {len(text) / 1e6:.1f} MB is too large for a config (at most {MAX_CONFIG_BYTES // 1_000_000} MB); "
            "a config holds settings, not data. Point data.path at a data file."
        )
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_expansion(node, source)
        builder = _Builder(loader, source)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(
            f"{where}: YAML syntax error: {exc.problem or exc}. Fix the YAML at that line."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    if builder.problems:
        raise ConfigError(f"{source}: {len(builder.problems)} problem(s) in the YAML", builder.problems)
    return data, builder.lines


def read_yaml_file(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Read and parse a YAML file; a missing, unreadable, binary or oversized file is a ``ConfigError``."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {size / 1e6:.1f} MB is too large for a config (at most {MAX_CONFIG_BYTES // 1_000_000} MB); "
                "a config holds settings, not data. Point data.path at a data file."
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found. Check the path.") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text file (not UTF-8 at byte {exc.start}); a config is a YAML text file. "
            "Check the path."
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text file (it holds NUL bytes); a config is a YAML text file.")
    return parse_yaml(text, str(path))


def parse_scalar(text: str) -> Any:
    """Parse one ``--set`` value the way the config file would (``3e-3`` -> float, ``[32, 64]`` -> list)."""
    data, _ = parse_yaml(text, "--set")
    return data
