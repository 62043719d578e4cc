"""A run's ``model.keras`` over new inputs, batch by batch (light at module level: Keras and TensorFlow are
imported inside the functions, after the inputs are read and checked).

``open_run`` reads what the run recorded (config.yaml, run.json, data/state.json) without TensorFlow;
``read_inputs`` reads the user's inputs the way the run's data kind read its training data; ``predict`` streams
them through the model: image files are decoded by the training pipeline's own decoder
(``dltrain.data.pipeline.images.decode_image``: the same resize and colour conversion), the rest in slices, so
memory holds one batch of pixels however many files there are.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.errors import ConfigError, DataError, RunDirError
from dltrain.predict import inputs as readers
from dltrain.predict.output import OutputSpec

log = logging.getLogger(__name__)

ARRAY_KINDS = ("mnist", "fashion_mnist", "idx", "npz", "digits")
IMAGE_ARRAY_KINDS = ("mnist", "fashion_mnist", "idx")  # 8-bit greyscale images: PNGs of them are accepted too


@dataclass
class RunInfo:
    """What a run recorded about its data and model, read without TensorFlow."""

    run_dir: Path
    kind: str
    task: str
    class_names: list[str]
    target_names: list[str]
    state: dict[str, Any]
    data_cfg: Any
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.run_dir / "model.keras"

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        shape = (self.record.get("data") or {}).get("input_shape")
        return tuple(int(d) for d in shape) if isinstance(shape, list) else None

    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) images are decoded to."""
        image = self.state.get("image")
        if image:
            height, width = (int(v) for v in image["image_size"])
            return (
                height,
                width,
                int(image.get("channels", 1 if image.get("color_mode") == "grayscale" else 3)),
            )
        shape = self.input_shape or ()
        if len(shape) == 2:
            return shape[0], shape[1], 1
        if len(shape) == 3:
            return shape[0], shape[1], shape[2]
        raise DataError(f"{self.run_dir}: the model takes inputs of shape {shape}, not images.")

    def spec(self, top_k: int) -> OutputSpec:
        return OutputSpec(self.task, list(self.class_names), list(self.target_names), top_k)


def open_run(run_dir: Path) -> RunInfo:
    """The run's recorded state; refuses (exit 5) a folder that is not a run or has no model.

    Raises:
        RunDirError: no run directory, damaged run files, no ``model.keras`` (exit 5).
    """
    from dltrain.rundir import read_run_config, read_run_json
    from dltrain.rundir.lock import describe_owner, live_owner

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory.")
    record = read_run_json(run_dir)
    owner = live_owner(run_dir)
    # model.keras is replaced in one step when that fit ends: this reads the one on disk now.
    if owner is not None:
        log.warning(
            "%s: a fit is training this run now (%s); predicting with the model.keras on disk, which that fit "
            "will replace when it ends",
            run_dir,
            describe_owner(owner),
        )
    cfg = read_run_config(run_dir)
    state: dict[str, Any] = {}
    state_file = run_dir / "data" / "state.json"
    if state_file.is_file():
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunDirError(
                f"{state_file}: unreadable ({exc}); restore it from a copy of the run."
            ) from None
    data = record.get("data") or {}
    task = str(state.get("task") or data.get("task") or "classification")
    class_names = list(state.get("class_names") or data.get("class_names") or [])
    target_names = list((state.get("targets") or {}).get("names") or [])
    kind = cfg.data.kind
    if kind in ("csv", "timeseries_csv") and "columns" not in state:
        raise RunDirError(
            f"{state_file}: missing or without `columns`; this run predates the record of how rows are encoded, "
            "so its model's inputs cannot be rebuilt from raw rows. Retrain it with this dltrain."
        )
    if kind == "image_folder" and "image" not in state:
        raise RunDirError(
            f"{state_file}: missing or without `image`; the run does not say how images were resized. Retrain it."
        )
    if not (run_dir / "model.keras").is_file():
        status = record.get("status")
        hint = "the run has not finished" if status == "running" else f"the run's status is {status!r}"
        raise RunDirError(
            f"{run_dir / 'model.keras'}: no model in this run ({hint}). Train it with dltrain fit."
        )
    return RunInfo(run_dir, kind, task, class_names, target_names, state, cfg.data, record)


def read_inputs(
    info: RunInfo,
    items: Sequence[str],
    *,
    labelled: bool = False,
    skip_bad: bool = False,
    column: str | None = None,
) -> readers.Inputs:
    """The user's inputs for ``info``'s data kind (see ``dltrain.predict.inputs``)."""
    kind = info.kind
    if column is not None and kind != "text_folder":
        raise ConfigError(f"--column is for text runs (a CSV column of strings); this run's data is {kind}.")
    if kind == "image_folder":
        return readers.image_inputs(items, info.class_names, labelled, skip_bad)
    if kind in ARRAY_KINDS:
        shape = info.input_shape
        if shape is None:
            raise RunDirError(f"{info.run_dir / 'run.json'}: no data.input_shape recorded; retrain the run.")
        if kind in IMAGE_ARRAY_KINDS:
            return readers.image_or_array_inputs(items, shape, info.class_names, labelled, skip_bad)
        return readers.array_inputs(items, shape, info.class_names, labelled)
    if kind == "csv":
        return readers.csv_inputs(
            items, info.state, info.data_cfg.delimiter, info.task, info.class_names, labelled
        )
    if kind == "timeseries_csv":
        if labelled:
            raise ConfigError(
                "--labelled is for classes and table rows; a forecast has no label to compare yet."
            )
        return readers.series_inputs(items, info.state, info.data_cfg.delimiter)
    if kind == "text_folder":
        encoding = (info.state.get("text") or {}).get("encoding", "utf-8")
        return readers.text_inputs(items, encoding, column, info.class_names, labelled)
    raise ConfigError(f"predict does not know data kind {kind!r} (run {info.run_dir}).")


def load_model(info: RunInfo) -> Any:
    """``model.keras``, loaded for inference (exit 5 when it is damaged)."""
    from dltrain.report.evaluate import load_run_model

    return load_run_model(info.model_path, str(info.record.get("status")))


def check_model(model: Any, info: RunInfo, inputs: readers.Inputs) -> None:
    """The inputs have the shape (or columns) the model takes, and its outputs are what the run recorded."""
    if isinstance(model.input, dict):  # a csv model taking the raw columns, one named input each
        missing = sorted(set(model.input) - set(inputs.x if inputs.kind == "columns" else ()))
        if inputs.kind != "columns" or missing:
            raise DataError(
                f"the model takes the columns {', '.join(sorted(model.input))}; missing: {missing}."
            )
        _check_outputs(model, info)
        return
    if inputs.kind == "columns":  # a csv model from before model.keras took raw columns: the encoded rows
        inputs.kind, inputs.x = "array", inputs.encoded
    want = tuple(model.inputs[0].shape[1:])
    if inputs.kind == "array":
        got = tuple(inputs.x.shape[1:])
        if got != want:
            raise DataError(f"the inputs have shape {got} but the model takes {want}.")
    _check_outputs(model, info)


def _check_outputs(model: Any, info: RunInfo) -> None:
    n_out = int(model.outputs[0].shape[-1])
    expected = len(info.class_names) if info.task != "regression" else None
    if expected is not None and n_out != expected:
        raise RunDirError(
            f"{info.model_path}: the model has {n_out} outputs but the run records {expected} classes; "
            "the run is damaged."
        )


def _batches(
    model: Any, info: RunInfo, inputs: readers.Inputs, batch_size: int
) -> Iterator[tuple[list[str], Any, list[Any] | None]]:
    """(ids, model inputs, labels or None) per batch."""

    def labels(start: int, stop: int) -> list[Any] | None:
        return inputs.truths[start:stop] if inputs.truths is not None else None

    if inputs.kind == "columns":
        import tensorflow as tf

        for start in range(0, len(inputs), batch_size):
            part = {k: v[start : start + batch_size] for k, v in inputs.x.items() if k in model.input}
            x = {k: tf.constant(v) if v.dtype == object else v for k, v in part.items()}
            yield inputs.ids[start : start + batch_size], x, labels(start, start + batch_size)
        return
    if inputs.kind != "image_files":
        for start in range(0, len(inputs), batch_size):
            yield (
                inputs.ids[start : start + batch_size],
                inputs.x[start : start + batch_size],
                labels(start, start + batch_size),
            )
        return
    want = tuple(int(d) for d in model.inputs[0].shape[1:])
    if inputs.decode_checks:
        yield from _png_batches(info, inputs, want, batch_size)
        return
    import tensorflow as tf

    from dltrain.data.pipeline.images import decode_image

    height, width, channels = info.image_shape()

    def load(path: tf.Tensor) -> tf.Tensor:
        pixels = decode_image(tf.io.read_file(path), height, width, channels)
        return tf.reshape(pixels, want)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(inputs.x), dtype=tf.string))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size)
    start = 0
    for x in ds.prefetch(tf.data.AUTOTUNE):
        stop = start + int(x.shape[0])
        yield inputs.ids[start:stop], x, labels(start, stop)
        start = stop


def _png_batches(
    info: RunInfo, inputs: readers.Inputs, want: tuple[int, ...], batch_size: int
) -> Iterator[tuple[list[str], Any, list[Any] | None]]:
    """PNG files decoded once each as they stream. Where Pillow's pixels are exactly TensorFlow's (a PNG already of
    the run's size and colour mode: 8-bit grey for grayscale, 8-bit RGB for rgb; PNG is lossless) Pillow decodes it;
    any other file goes through the training decoder (resize, colour conversion) after TensorFlow's own checks.
    A file that does not decode is named (exit 3), or skipped and counted with ``--skip-bad``."""
    from PIL import Image

    from dltrain.data.images import check_image

    height, width, channels = info.image_shape()
    mode = {1: "L", 3: "RGB"}.get(channels)
    ids: list[str] = []
    pixels: list[np.ndarray] = []
    truths: list[Any] = []
    for k, path in enumerate(inputs.ids):
        try:
            with Image.open(path) as image:
                same = image.format == "PNG" and image.mode == mode and image.size == (width, height)
                array = np.asarray(image, dtype=np.uint8) if same else None
            problem = None if array is not None else check_image(path)
        except (OSError, SyntaxError, ValueError) as exc:
            problem = f"cannot be decoded ({type(exc).__name__}: {exc})"
        if problem is not None:
            if not inputs.skip_bad:
                raise DataError(
                    f"{path}: {problem}. Remove or replace the file, or pass --skip-bad to skip it."
                )
            inputs.skipped.append(f"{path}: {problem}")
            continue
        if array is None:
            array = _tf_decode(path, height, width, channels)
        ids.append(path)
        pixels.append(array.reshape(height, width, channels))
        if inputs.truths is not None:
            truths.append(inputs.truths[k])
        if len(ids) == batch_size:
            yield (
                ids,
                np.stack(pixels).astype(np.float32).reshape((-1, *want)),
                truths if inputs.truths is not None else None,
            )
            ids, pixels, truths = [], [], []
    if ids:
        yield (
            ids,
            np.stack(pixels).astype(np.float32).reshape((-1, *want)),
            truths if inputs.truths is not None else None,
        )


def _tf_decode(path: str, height: int, width: int, channels: int) -> np.ndarray:
    """One file through the training decoder (``decode_image``: colour conversion, antialiased bilinear resize)."""
    import tensorflow as tf

    from dltrain.data.pipeline.images import decode_image

    return decode_image(tf.io.read_file(path), height, width, channels).numpy().astype(np.uint8)


def predict(
    model: Any,
    info: RunInfo,
    inputs: readers.Inputs,
    spec: OutputSpec,
    sink: Callable[[list[dict[str, Any]]], None],
    batch_size: int = 256,
    progress: bool = True,
) -> int:
    """Every input through ``model`` in batches; each batch's rows handed to ``sink``. Returns the count."""
    from dltrain.predict.output import rows

    check_model(model, info, inputs)
    bar = _Progress(len(inputs)) if progress else None
    done = 0
    try:
        for ids, batch, truths in _batches(model, info, inputs, batch_size):
            out = np.asarray(model.predict_on_batch(batch))
            sink(rows(spec, ids, out, truths))
            done += len(ids)
            if bar is not None:
                bar.update(done + len(inputs.skipped))
    finally:
        if bar is not None:
            bar.close()
    if done == 0:
        raise DataError(f"every one of the {len(inputs)} inputs is unreadable ({inputs.skipped[0]}).")
    return done


class _Progress:
    """A bar on stderr (a terminal only): files or rows done, per second, time left."""

    def __init__(self, total: int) -> None:
        from dltrain.console import stderr

        self._progress: Any = None
        if not stderr.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.start = time.monotonic()
        self._progress = Progress(
            TextColumn("predict"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.0f}/s"),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        )
        self._task = self._progress.add_task("predict", total=total, rate=0.0)
        self._progress.start()

    def update(self, done: int) -> None:
        if self._progress is not None:
            rate = done / max(time.monotonic() - self.start, 1e-9)
            self._progress.update(self._task, completed=done, rate=rate)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
