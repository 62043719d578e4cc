"""pydantic's validation errors as one-line messages: file:line, key path, what was received, what is
allowed, and "did you mean" for a misspelt key or kind (also across sections: ``epoch:`` -> ``train.epochs``)."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from dltrain.config.schema import KINDS, Config
from dltrain.config.yamlio import KeyPath


def _model_at(path: tuple[str | int, ...], raw: Any) -> type[BaseModel] | None:
    """The pydantic class that validates the mapping at ``path`` (for did-you-mean suggestions)."""
    cls: type[BaseModel] = Config
    node = raw
    for part in path:
        if isinstance(part, int):
            return None
        field = cls.model_fields.get(part)
        if field is None:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        if cls is Config and part in KINDS:
            kind = node.get("kind") if isinstance(node, dict) else None
            nxt = KINDS[part].get(kind) if isinstance(kind, str) else None
            if nxt is None:
                return None
            cls = nxt
            continue
        ann = field.annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        sub = next((a for a in candidates if issubclass(a, BaseModel)), None)
        if sub is None:
            return None
        cls = sub
    return cls


def _clean_loc(loc: tuple[str | int, ...], raw: Any) -> tuple[str | int, ...]:
    """Drop the discriminator tags pydantic inserts into locations (``model.cnn.filters``)."""
    out: list[str | int] = []
    node = raw
    i = 0
    while i < len(loc):
        part = loc[i]
        out.append(part)
        node = (
            node.get(part)
            if isinstance(node, dict) and isinstance(part, str)
            else (
                node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None
            )
        )
        if (
            len(out) == 1
            and part in KINDS
            and isinstance(node, dict)
            and i + 1 < len(loc)
            and loc[i + 1] == node.get("kind")
        ):
            i += 1  # skip the tag
        i += 1
    # pydantic adds the literal/function name for unions of constrained types: drop non-key tails
    return tuple(p for p in out if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _dotted(loc: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        else:
            parts.append(p)
    return ".".join(parts) or "(top level)"


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        # "lr_rate" vs "learning_rate": also try matching on a shared suffix or prefix
        close = [o for o in options if o.endswith(word.split("_")[-1]) and "_" in word]
    return f"; did you mean `{close[0]}`?" if close else ""


def format_problem(
    err: dict[str, Any],
    raw: Any,
    lines: dict[KeyPath, int],
    source: str,
    origins: dict[KeyPath, str] | None = None,
) -> str:
    """One line for one pydantic error. ``origins``: key paths set by ``--set``, with the flag as typed; a
    problem under one of them names the flag, not a line of the file."""
    loc = _clean_loc(tuple(err["loc"]), raw)
    key = _dotted(loc)
    flag = next((text for path, text in (origins or {}).items() if loc[: len(path)] == path), None)
    line = None
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    where = f"--set {flag}" if flag is not None else f"{source}:{line}" if line is not None else source
    kind = err["type"]
    received = err.get("input")
    if kind == "extra_forbidden":
        cls = _model_at(loc[:-1], raw)
        allowed = sorted(cls.model_fields) if cls else []
        hint = _did_you_mean(str(loc[-1]), allowed)
        if not hint and len(loc) == 1:
            # a section's key written at the top level (`epochs:` instead of `train.epochs:`)
            nested = []
            for sec in ("train", "runtime", "data", "model", "optimizer"):
                sec_cls = _model_at((sec,), raw)
                nested += [f"{sec}.{f}" for f in (sec_cls.model_fields if sec_cls else {})]
            close = difflib.get_close_matches(
                str(loc[-1]), [n.split(".")[1] for n in nested], n=1, cutoff=0.75
            )
            if close:
                hint = f"; did you mean `{next(n for n in nested if n.endswith('.' + close[0]))}`?"
        sep = " " if hint else ". "
        allowed_txt = f"{sep}Allowed keys: {', '.join(allowed)}." if allowed else ("" if hint else ".")
        return f"{where}: unknown key `{key}`{hint}{allowed_txt}"
    if kind == "missing":
        return f"{where}: missing required key `{key}`."
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        section = str(loc[0]) if loc else ""
        options = sorted(KINDS.get(section, {}))
        got = (
            raw.get(section, {}).get("kind")
            if isinstance(raw, dict) and isinstance(raw.get(section), dict)
            else None
        )
        if kind == "union_tag_not_found":
            return f"{where}: `{key}.kind` is missing. Set it to one of: {', '.join(options)}."
        hint = _did_you_mean(str(got), options)
        return f"{where}: `{key}.kind` received {got!r}; expected one of: {', '.join(options)}{hint}"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        hint = _did_you_mean(str(received), options)
        return f"{where}: `{key}` received {received!r}; expected one of: {', '.join(options)}{hint}"
    if kind == "model_type" or kind == "model_attributes_type" or kind == "dict_type":
        return f"{where}: `{key}` must be a mapping of keys to values. Received: {received!r}."
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    msg = msg.replace("Input should be", "must be").replace("input should be", "must be")
    return f"{where}: `{key}` {msg[0].lower() + msg[1:]}. Received: {received!r}."
