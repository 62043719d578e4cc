"""The export command's choices, checked before TensorFlow starts (this module stays light)."""

from __future__ import annotations

from pathlib import Path

from dltrain.errors import ConfigError
from dltrain.serving.runtime import ARTEFACTS

QUANTIZE = ("none", "float16", "dynamic", "int8")


def default_output(run_dir: Path, fmt: str, quantize: str) -> Path:
    return run_dir / "export" / (fmt if quantize == "none" else f"{fmt}-{quantize}")


def check_options(fmt: str, quantize: str) -> None:
    if fmt not in ARTEFACTS:
        raise ConfigError(f"--format must be one of {', '.join(ARTEFACTS)}. Received: {fmt!r}.")
    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}. Received: {quantize!r}.")
    if fmt == "saved_model" and quantize != "none":
        raise ConfigError(
            "--format saved_model holds the float32 model only; --quantize is for --format litert or onnx."
        )
