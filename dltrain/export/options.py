"""The export command's choices, checked before TensorFlow starts (this module stays light)."""

from __future__ import annotations

from pathlib import Path

from dltrain.errors import ConfigError
from dltrain.serving.runtime import ARTEFACTS

QUANTIZE = ("none", "float16", "dynamic", "int8")
LITERT_KERAS = (3, 13)  # the first Keras whose model.export knows format="litert"


def _keras_version() -> tuple[int, ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("keras")
    except PackageNotFoundError:
        return (0,)
    return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in text.split(".")[:3])


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
    if fmt == "litert" and _keras_version() < LITERT_KERAS:
        raise ConfigError(
            f"--format litert needs Keras {'.'.join(map(str, LITERT_KERAS))} or later (installed: "
            f"{'.'.join(map(str, _keras_version()))}; Keras 3.12 is the last for Python 3.10). Upgrade Keras on "
            "Python 3.11+, or export --format onnx."
        )
