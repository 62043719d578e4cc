"""A sweep's search space: from the config's ``sweep.params`` and ``--param`` flags, checked before any trial.

``--param KEY=loguniform(1e-4,1e-1)`` (also ``uniform(a,b)``, ``int(a,b)``, ``choice(v1,v2,...)``; values are
YAML, so ``choice([32],[64,32])`` chooses a list). Every endpoint (both ends of a range, each choice) is applied
to the config alone and validated: a key that is not in the schema, or a value that makes an invalid config,
is exit 2 naming the parameter, before any trial runs.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from dltrain.config import Config, SweepParam
from dltrain.config.loading import set_in
from dltrain.errors import ConfigError

_FLAG = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*=\s*(loguniform|uniform|int|choice)\s*\((.*)\)\s*$", re.S)


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string; read it as the number it is."""
    if isinstance(value, str):
        try:
            return int(value) if re.fullmatch(r"[-+]?\d+", value) else float(value)
        except ValueError:
            return value
    return value


def parse_param_flag(text: str) -> tuple[str, SweepParam]:
    match = _FLAG.match(text)
    if not match:
        raise ConfigError(
            f"--param {text!r}: expected KEY=loguniform(LOW,HIGH), uniform(LOW,HIGH), int(LOW,HIGH) or "
            "choice(V1,V2,...), e.g. --param optimizer.learning_rate=loguniform(1e-4,1e-1)."
        )
    key, kind, inside = match.groups()
    try:
        values = yaml.safe_load(f"[{inside}]")
    except yaml.YAMLError as exc:
        raise ConfigError(f"--param {text!r}: the values are not YAML ({exc.__class__.__name__}).") from None
    values = [_number(v) for v in values]
    try:
        return key, SweepParam.model_validate({kind: values})
    except ValidationError as exc:
        reason = "; ".join(err["msg"] for err in exc.errors())
        raise ConfigError(f"--param {text!r}: {reason}.") from None


@dataclass(frozen=True)
class Dimension:
    key: str
    spec: SweepParam

    @property
    def kind(self) -> str:
        for kind in ("loguniform", "uniform", "int", "choice"):
            if getattr(self.spec, kind) is not None:
                return kind
        raise AssertionError("validated: one kind")

    def endpoints(self) -> list[tuple[str, Any]]:
        """(which end, value): the values every trial's config is validated with before the sweep starts."""
        if self.kind == "choice":
            return [(f"choice {i + 1}", value) for i, value in enumerate(self.spec.choice or [])]
        low, high = getattr(self.spec, self.kind)
        if self.kind == "int":
            return [("the low end", int(low)), ("the high end", int(high))]
        return [("the low end", float(low)), ("the high end", float(high))]

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice{json.dumps(self.spec.choice)}"
        low, high = getattr(self.spec, self.kind)
        step = f" step {self.spec.step:g}" if self.spec.step else ""
        return f"{self.kind}[{low:g}, {high:g}]{step}"

    # Optuna's categorical values must be None/bool/int/float/str: others (lists) travel as JSON text.
    def encoded_choices(self) -> list[Any]:
        return [_encode(v) for v in self.spec.choice or []]

    def grid(self) -> list[Any]:
        if self.kind == "choice":
            return self.encoded_choices()
        if self.kind == "int":
            low, high = self.spec.int or [0, 0]
            return list(range(int(low), int(high) + 1, int(self.spec.step or 1)))
        raise ConfigError(
            f"sweep parameter {self.key}: sampler grid needs int or choice ranges, not {self.kind}; "
            f"list the values with choice: [...], or use sampler tpe or random."
        )

    def suggest(self, trial: Any) -> Any:
        """Ask Optuna's trial for this dimension's value (an enqueued or grid value comes back as given)."""
        if self.kind == "loguniform":
            low, high = self.spec.loguniform or [0, 0]
            return trial.suggest_float(self.key, low, high, log=True)
        if self.kind == "uniform":
            low, high = self.spec.uniform or [0, 0]
            return trial.suggest_float(self.key, low, high, step=self.spec.step)
        if self.kind == "int":
            low, high = self.spec.int or [0, 0]
            return trial.suggest_int(self.key, int(low), int(high), step=int(self.spec.step or 1))
        return decode(trial.suggest_categorical(self.key, self.encoded_choices()))


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return "json:" + json.dumps(value)


def decode(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[len("json:") :])
    return value


def set_key(tree: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with the dotted key set (missing mappings on the way are created)."""
    out = copy.deepcopy(tree)
    set_in(out, dotted.split("."), value)
    return out


def apply(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    out = base
    for key, value in values.items():
        out = set_key(out, key, value)
    return out


def validate_trial_config(raw: dict[str, Any]) -> Config:
    """The trial's config, validated; raises ``ConfigError`` with pydantic's reasons."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid trial config", problems) from None


def build_space(cfg: Config, flags: list[str]) -> list[Dimension]:
    """The dimensions of the config's sweep section, with ``--param`` flags added or replacing them."""
    params: dict[str, SweepParam] = dict(cfg.sweep.params) if cfg.sweep is not None else {}
    for text in flags:
        key, spec = parse_param_flag(text)
        params[key] = spec
    if not params:
        raise ConfigError(
            "the search space is empty: add a sweep: section with params (e.g. optimizer.learning_rate: "
            "{loguniform: [1e-4, 1e-1]}) or --param KEY=loguniform(LOW,HIGH)."
        )
    dims = [Dimension(key, spec) for key, spec in params.items()]
    for dim in dims:
        if dim.key.split(".")[0] in ("sweep", "name"):
            raise ConfigError(
                f"sweep parameter {dim.key}: the sweep cannot search its own section or the name."
            )
    return dims


def check_endpoints(base: dict[str, Any], dims: list[Dimension]) -> None:
    """Every end of every range, and every choice, applied alone to the config must validate (else exit 2)."""
    problems = []
    for dim in dims:
        for which, value in dim.endpoints():
            try:
                validate_trial_config(set_key(base, dim.key, value))
            except ConfigError as exc:
                reasons = "; ".join(
                    p for p in exc.problems if p.startswith(dim.key.split(".")[0])
                ) or "; ".join(exc.problems)
                extra = " (not a key of the config schema?)" if "Extra inputs" in reasons else ""
                problems.append(
                    f"sweep parameter {dim.key}: {which}, {json.dumps(value)}, makes an invalid config{extra}: "
                    f"{reasons}"
                )
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in the search space; narrow the ranges", problems)
