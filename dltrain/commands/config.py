"""``dltrain config show`` (the resolved config) and ``dltrain config schema`` (its JSON Schema)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dltrain.config import json_schema, load_config, to_yaml
from dltrain.console import result_line


def show(config: Path, overrides: list[str]) -> None:
    sys.stdout.write(to_yaml(load_config(config, overrides)))


def schema(output: Path | None) -> None:
    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        result_line(f"wrote {output}")
