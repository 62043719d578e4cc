"""Run an exported artefact without TensorFlow: onnxruntime for ONNX, the LiteRT interpreter for ``.tflite``.

Light: onnxruntime and the LiteRT interpreter (``ai-edge-litert``, else ``tflite-runtime``) are imported inside the
functions, and neither pulls TensorFlow in.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.errors import ConfigError

EXTRA = "pip install 'dltrain[export]'"
# The modules each format needs: to write it (beside TensorFlow) and to run it.
NEEDS = {
    "saved_model": (),
    "onnx": ("tf2onnx", "onnx", "onnxruntime"),
    "litert": ("ai_edge_litert",),
}
RUN_NEEDS = {"onnx": ("onnxruntime",), "litert": ("ai_edge_litert",)}
ARTEFACTS = {"saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite"}


def missing(modules: tuple[str, ...]) -> list[str]:
    """The ``modules`` that cannot be imported here (found without importing them)."""
    out = []
    for name in modules:
        if name in sys.modules:
            if sys.modules[name] is None:  # blocked
                out.append(name)
            continue
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except (ImportError, ValueError):
            out.append(name)
    return out


def require(fmt: str, modules: tuple[str, ...]) -> None:
    """Exit 2 naming the extra to install when a module ``fmt`` needs is missing."""
    if fmt == "litert" and modules == ("ai_edge_litert",) and not missing(("tflite_runtime",)):
        return  # the older interpreter package runs .tflite files too
    absent = missing(modules)
    if absent:
        raise ConfigError(
            f"--format {fmt} needs {', '.join(absent)}, which is not installed. Install the export extra: {EXTRA}"
        )


def _litert_interpreter(path: str) -> Any:
    try:
        module = importlib.import_module("ai_edge_litert.interpreter")
    except ImportError:
        module = importlib.import_module("tflite_runtime.interpreter")
    return module.Interpreter(model_path=path, num_threads=1)


class Artefact:
    """One exported model file, called on NumPy batches: ``run(x) -> outputs``."""

    def __init__(self, path: Path, fmt: str) -> None:
        require(fmt, RUN_NEEDS[fmt])
        self.path = Path(path)
        self.fmt = fmt
        if fmt == "onnx":
            ort = importlib.import_module("onnxruntime")
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._input = self._session.get_inputs()[0].name
            kind = self._session.get_inputs()[0].type
            self.dtype = np.int64 if "int64" in kind else np.float32
        else:
            self._interpreter = _litert_interpreter(str(self.path))
            detail = self._interpreter.get_input_details()[0]
            self._index = detail["index"]
            self.dtype = detail["dtype"]
            self._output = self._interpreter.get_output_details()[0]["index"]
            self._shape: tuple[int, ...] | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if self.fmt == "onnx":
            return np.asarray(self._session.run(None, {self._input: x})[0])
        if self._shape != x.shape:
            self._interpreter.resize_tensor_input(self._index, list(x.shape))
            self._interpreter.allocate_tensors()
            self._shape = x.shape
        self._interpreter.set_tensor(self._index, x)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output))

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return np.concatenate([self.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
