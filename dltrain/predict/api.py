"""``dltrain.load_run("runs/X").predict(inputs)``: the CLI's predict for notebooks, returning its rows.

Light at module level; ``model.keras`` is loaded on the first ``predict`` and kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.predict import engine
from dltrain.predict.inputs import Inputs


class Run:
    """A trained run: ``classes``, ``task``, ``kind`` and ``predict``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.info = engine.open_run(Path(path))
        self._model: Any = None

    @property
    def path(self) -> Path:
        return self.info.run_dir

    @property
    def classes(self) -> list[str]:
        return list(self.info.class_names)

    @property
    def task(self) -> str:
        return self.info.task

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def model(self) -> Any:
        """The run's ``model.keras`` (Keras), loaded once."""
        if self._model is None:
            self._model = engine.load_model(self.info)
        return self._model

    def predict(
        self,
        inputs: str | os.PathLike[str] | Sequence[Any] | np.ndarray,
        *,
        top_k: int = 1,
        batch_size: int = 256,
        labelled: bool = False,
        skip_bad: bool = False,
        column: str | None = None,
    ) -> list[dict[str, Any]]:
        """One dict per input, as ``dltrain predict --format json`` writes it: ``id``, ``predicted``,
        ``probability`` and ``top_k`` (a list of {class, probability}); a regression's ``predicted`` is its value(s).

        ``inputs``: what the CLI takes (a path, a folder, a pattern, or a list of them), or for array runs a NumPy
        array of examples, or for text runs a list of strings that are not files.
        """
        found = self._inputs(inputs, labelled, skip_bad, column)
        out: list[dict[str, Any]] = []
        engine.predict(
            self.model, self.info, found, self.info.spec(top_k), out.extend, batch_size, progress=False
        )
        return out

    def _inputs(self, inputs: Any, labelled: bool, skip_bad: bool, column: str | None) -> Inputs:
        if isinstance(inputs, np.ndarray) and inputs.dtype != object:
            shape = self.info.input_shape or inputs.shape[1:]
            x = inputs[None] if inputs.shape == tuple(shape) else inputs
            if tuple(x.shape[1:]) != tuple(shape) and tuple(x.shape[1:]) + (1,) == tuple(shape):
                x = x[..., None]
            return Inputs("array", [f"#{i}" for i in range(len(x))], x)
        items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        if self.kind == "text_folder" and items and not all(os.path.exists(str(i)) for i in items):
            texts = [str(t) for t in items]
            return Inputs("text", [f"#{i}" for i in range(len(texts))], np.asarray(texts, dtype=object))
        return engine.read_inputs(
            self.info, [os.fspath(i) for i in items], labelled=labelled, skip_bad=skip_bad, column=column
        )

    def __repr__(self) -> str:
        return f"dltrain.Run({str(self.path)!r}, kind={self.kind!r}, task={self.task!r})"


def load_run(path: str | os.PathLike[str]) -> Run:
    """Open a run directory for prediction (exit-code errors become exceptions: ``dltrain.errors``)."""
    return Run(path)
