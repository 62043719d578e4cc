"""An export folder read without TensorFlow: its export.json, its artefact, and the run's input rules.

``dltrain predict --model EXPORT_DIR`` reads only the folder: what the run recorded about its inputs (classes,
image size and colour mode, csv columns and encodings, text vocabulary, series window) is in export.json, and the
raw inputs are read by the same light readers ``dltrain predict RUN`` uses (``dltrain.predict.inputs``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from dltrain.errors import ConfigError, DataError, RunDirError
from dltrain.serving.encode import Vectorizer, load_image
from dltrain.serving.runtime import Artefact

SERVABLE = ("onnx", "litert")


@dataclass
class ExportFolder:
    path: Path
    record: dict[str, Any]

    @property
    def fmt(self) -> str:
        return str(self.record["format"])

    def artefact(self) -> Artefact:
        return Artefact(self.path / self.record["artefact"], self.fmt)

    def run_info(self) -> Any:
        """The ``dltrain.predict.engine.RunInfo`` the run's own predict would build, from export.json alone."""
        from dltrain.predict.engine import RunInfo

        info = self.record["run_info"]
        data = SimpleNamespace(**info.get("data", {}))
        return RunInfo(
            run_dir=self.path,
            kind=str(info["kind"]),
            task=str(self.record["task"]),
            class_names=list(self.record.get("class_names") or []),
            target_names=list(self.record.get("target_names") or []),
            state=dict(info.get("state") or {}),
            data_cfg=data,
            record={"data": {"input_shape": info.get("input_shape")}},
        )


def open_export(path: Path) -> ExportFolder:
    """The export folder at ``path`` (exit 5 when it is not one, exit 2 for a format that needs TensorFlow)."""
    path = Path(path)
    if path.is_file() and path.suffix in (".onnx", ".tflite"):
        path = path.parent  # `--model EXPORT_DIR/model.tflite` names the folder's artefact
    record_file = path / "export.json"
    if not record_file.is_file():
        raise RunDirError(f"{path}: not an export folder (no export.json); make one with dltrain export RUN.")
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        fmt = record["format"]
        artefact = path / record["artefact"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{record_file}: unreadable or incomplete ({exc}); export the run again.") from None
    if fmt not in SERVABLE:
        raise ConfigError(
            f"{path}: a {fmt} export runs on TensorFlow; --model serves onnx and litert folders. Use "
            f"dltrain predict RUN, or dltrain export RUN --format onnx (or litert)."
        )
    if not artefact.exists():
        raise RunDirError(f"{artefact}: missing from the export folder; export the run again.")
    return ExportFolder(path, record)


def _images(folder: ExportFolder, inputs: Any, paths: Sequence[str]) -> tuple[list[int], np.ndarray]:
    """The decodable images of ``paths`` (their positions, their pixels); a bad one is named (exit 3), or skipped
    and counted with ``--skip-bad``."""
    spec = folder.record["input"]
    image = spec["image"]
    shape = tuple(int(d) for d in spec["shape"])
    keep: list[int] = []
    pixels: list[np.ndarray] = []
    for k, path in enumerate(paths):
        try:
            pixels.append(load_image(path, image["height"], image["width"], image["channels"]).reshape(shape))
            keep.append(k)
        except (OSError, SyntaxError, ValueError) as exc:
            problem = f"cannot be decoded ({type(exc).__name__}: {exc})"
            if not getattr(inputs, "skip_bad", False):
                raise DataError(
                    f"{path}: {problem}. Remove or replace the file, or pass --skip-bad to skip it."
                ) from None
            inputs.skipped.append(f"{path}: {problem}")
    return keep, np.stack(pixels) if pixels else np.zeros((0, *shape), np.float32)


def batches(folder: ExportFolder, inputs: Any, batch_size: int) -> Any:
    """(ids, the artefact's input array, labels or None) per batch, from what ``dltrain.predict.inputs`` read."""
    spec = folder.record["input"]
    shape = tuple(int(d) for d in spec["shape"])
    vectorizer = None
    if "text" in spec:
        text = spec["text"]
        vectorizer = Vectorizer(text["vocabulary"], int(text["output_sequence_length"]), text)
    for start in range(0, len(inputs), batch_size):
        stop = start + batch_size
        ids = list(inputs.ids[start:stop])
        truths = list(inputs.truths[start:stop]) if inputs.truths is not None else None
        if inputs.kind == "columns":  # raw csv rows: the artefact takes the encoded row
            yield ids, np.asarray(inputs.encoded[start:stop], dtype=np.float32), truths
            continue
        part = inputs.x[start:stop]
        if inputs.kind == "image_files":
            keep, batch = _images(folder, inputs, [str(p) for p in part])
            if not keep:
                continue
            yield [ids[k] for k in keep], batch, [truths[k] for k in keep] if truths is not None else None
        elif vectorizer is not None:
            yield ids, vectorizer([str(t) for t in part]), truths
        else:
            batch = np.asarray(part, dtype=np.float32)
            if tuple(batch.shape[1:]) != shape:
                raise DataError(
                    f"the inputs have shape {tuple(batch.shape[1:])} but the export takes {shape}."
                )
            yield ids, batch, truths


def predict(
    folder: ExportFolder,
    inputs: Any,
    spec: Any,
    sink: Callable[[list[dict[str, Any]]], None],
    batch_size: int = 256,
) -> int:
    """Every input through the artefact; each batch's rows (``dltrain.predict.output.rows``) handed to ``sink``."""
    from dltrain.predict.output import rows

    artefact = folder.artefact()
    done = 0
    for ids, batch, truths in batches(folder, inputs, batch_size):
        sink(rows(spec, ids, artefact.run(batch), truths))
        done += len(ids)
    return done
