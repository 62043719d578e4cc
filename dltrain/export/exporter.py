"""``dltrain export``: a run's model as a SavedModel, ONNX or LiteRT artefact, checked before it is reported done.

The artefact is written from the inference twin (``dltrain.export.twin``) into a temporary folder beside the final
one, run on the run's test split (TensorFlow for a SavedModel, onnxruntime, the LiteRT interpreter), compared with
``model.keras`` and scored; only then is the folder renamed to its final name. A check that fails leaves
nothing under that name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dltrain.data import Splits, load_splits
from dltrain.data.state import check_same_data
from dltrain.errors import ConfigError, RunDirError
from dltrain.export.options import check_options, default_output
from dltrain.export.twin import build_twin, text_vocabulary, vectorize
from dltrain.fsutil import atomic_write_text, file_sha256
from dltrain.rundir import read_run_config, read_run_json
from dltrain.serving.encode import Vectorizer
from dltrain.serving.runtime import ARTEFACTS, Artefact

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# A float32 artefact must give model.keras's outputs within this (probabilities; a regression: relative to the
# largest output). Measured: 0 to 1e-5 on every model the tests export (unrolled RNNs included).
FLOAT_TOLERANCE = 1e-4
# A mixed-precision model.keras (float16 / bfloat16) against its float32 twin: their rounding (measured 0.004 on a
# bfloat16 digits CNN).
MIXED_TOLERANCE = 2e-2
# A quantised artefact may lose this much accuracy (percentage points), or this much MAE (relative), before the
# export warns loudly and records it.
ACCURACY_MARGIN = 0.01
MAE_MARGIN = 0.05
LATENCY_EXAMPLES = 200
CALIBRATION_EXAMPLES = 200


class ExportCheckFailed(RunDirError):
    """The written artefact does not compute what model.keras computes (exit 5; nothing left behind)."""


@dataclass
class Result:
    folder: Path
    record: dict[str, Any]


def _model_inputs(splits: Splits, split: str, model: keras.Model) -> np.ndarray:
    """The split's examples as model.keras takes them: decoded pixels, float32 arrays, or strings."""
    x, _ = splits.get(split)
    if splits.input_kind == "image_files":
        from dltrain.data.pipeline import make_pipeline

        pipe = make_pipeline(splits, split, 256)
        want = tuple(int(d) for d in body_of(model).inputs[0].shape[1:])
        return np.concatenate([b[0].numpy() for b in pipe.evaluation()]).reshape(-1, *want)
    if splits.input_kind == "text":
        return np.asarray([str(t) for t in x], dtype=object)
    return np.asarray(x, dtype=np.float32)


def body_of(model: keras.Model) -> keras.Model:
    """The model behind a csv model.keras's raw-column front (its one nested Model), else ``model``."""
    if not isinstance(model.input, dict):
        return model
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ConfigError(
            f"this csv model's layers are not the raw-column front and one body ({len(nested)} bodies)."
        )
    return nested[0]


def _keras_predict(model: keras.Model, x: Any) -> np.ndarray:
    if isinstance(x, dict):
        return np.asarray(model.predict(x, batch_size=256, verbose=0))
    if x.dtype == object:
        import tensorflow as tf

        return np.asarray(model.predict(tf.constant(x.astype(str)), batch_size=256, verbose=0))
    return np.asarray(model.predict(x, batch_size=256, verbose=0))


def _score(task: str, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if task == "regression":
        return {"mae": float(np.mean(np.abs(outputs.reshape(len(y), -1) - y.reshape(len(y), -1))))}
    return {"accuracy": float(np.mean(np.argmax(outputs, axis=1) == y))}


def _input_record(splits: Splits, cfg: Any, model: keras.Model, text: bool) -> dict[str, Any]:
    shape = [int(d) for d in body_of(model).inputs[0].shape[1:]]
    record: dict[str, Any] = {"data_kind": cfg.data.kind, "shape": shape, "dtype": "float32"}
    if splits.input_kind == "image_files" or (
        cfg.data.kind in ("mnist", "fashion_mnist", "idx", "digits") and len(shape) >= 2
    ):
        h, w, c = (list(splits.input_shape) + [1])[:3]
        record["image"] = {
            "height": int(h),
            "width": int(w),
            "channels": int(c),
            "color_mode": "grayscale" if int(c) == 1 else "rgb",
        }
    if text:
        vocabulary, settings = text_vocabulary(model)
        record.update(shape=[int(settings["output_sequence_length"])], dtype="int64")
        record["text"] = {**settings, "vocabulary": vocabulary}
    return record


def _write_saved_model(twin: keras.Model, path: Path) -> None:
    twin.export(str(path), format="tf_saved_model", verbose=False)


def _representative(x: np.ndarray) -> Any:
    def batches() -> Any:
        for i in range(len(x)):
            yield [x[i : i + 1]]

    return batches


def _write_litert(twin: keras.Model, path: Path, quantize: str, calibration: np.ndarray) -> None:
    import tensorflow as tf

    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops: the plain interpreter runs the file
    kwargs: dict[str, Any] = {}
    if quantize != "none":
        kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        kwargs["target_spec"] = {"supported_ops": ops, "supported_types": [tf.float16]}
    elif quantize == "int8":
        kwargs["representative_dataset"] = _representative(calibration)
        kwargs["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}
    else:
        kwargs["target_spec"] = {"supported_ops": ops}
    twin.export(str(path), format="litert", verbose=False, **kwargs)


class _Calibration:
    """onnxruntime's CalibrationDataReader over training examples."""

    def __init__(self, name: str, x: np.ndarray) -> None:
        self._items = iter([{name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def _write_onnx(twin: keras.Model, path: Path, quantize: str, calibration: np.ndarray) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        float_path = path if quantize == "none" else path.with_name("float.onnx")
        twin.export(str(float_path), format="onnx", verbose=False)
    if quantize == "none":
        return
    import onnx

    if quantize == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
        onnx.save(model, str(path))
    else:
        from onnxruntime import quantization as q

        if quantize == "dynamic":
            q.quantize_dynamic(str(float_path), str(path), weight_type=q.QuantType.QInt8)
        else:
            name = onnx.load(str(float_path)).graph.input[0].name
            q.quantize_static(
                str(float_path),
                str(path),
                _Calibration(name, calibration),
                quant_format=q.QuantFormat.QDQ,
                activation_type=q.QuantType.QInt8,
                weight_type=q.QuantType.QInt8,
            )
    float_path.unlink()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _latency_ms(call: Any, x: np.ndarray) -> float:
    """Median milliseconds of one example through ``call`` (batch of one), after a warm-up call."""
    n = min(len(x), LATENCY_EXAMPLES)
    call(x[:1])
    times = []
    for i in range(n):
        start = time.perf_counter()
        call(x[i : i + 1])
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def _saved_model_runner(path: Path) -> Any:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    key = next(iter(serve.structured_input_signature[1]))

    def run(x: np.ndarray) -> np.ndarray:
        out = serve(**{key: tf.constant(x)})
        return np.asarray(next(iter(out.values())))

    return run


def export_run(run_dir: Path, fmt: str, quantize: str = "none", output: Path | None = None) -> Result:
    """Export ``run_dir``'s model.keras; returns the final folder and what export.json records.

    Raises:
        ConfigError: a format/quantisation the model cannot take, named with the reason (exit 2).
        RunDirError: no run or model, output already there (exit 5); ExportCheckFailed (exit 5).
        DataError: the run's data is no longer what fit used (exit 3).
    """
    check_options(fmt, quantize)
    record = read_run_json(run_dir)
    final = Path(output) if output is not None else default_output(run_dir, fmt, quantize)
    if final.exists():
        raise RunDirError(f"{final}: already exists; remove it or pass another --output.")
    model_path = run_dir / "model.keras"
    cfg = read_run_config(run_dir)
    splits = load_splits(cfg.data, cfg.seed)
    for warning in check_same_data(record.get("data", {}), splits, ["test"], run_dir):
        log.warning("%s", warning)
    from dltrain.report.evaluate import check_not_training, load_run_model

    check_not_training(run_dir, "export")
    model = load_run_model(model_path, str(record.get("status")))
    text = splits.input_kind == "text"
    x_test = _model_inputs(splits, "test", model)
    _, y_test = splits.get("test")
    state = splits.state
    raw = isinstance(model.input, dict)  # a csv model.keras taking the raw columns, one named input each

    def keras_inputs(x: np.ndarray) -> Any:
        if not raw:
            return x
        import tensorflow as tf

        from dltrain.report.evaluate import raw_column_inputs

        return {
            k: tf.convert_to_tensor(v) for k, v in raw_column_inputs(x, state).items() if k in model.input
        }

    reference = _keras_predict(model, keras_inputs(x_test)) if raw else _keras_predict(model, x_test)
    # A raw-column csv model: the artefact is its body, which takes the encoded row (the lookups stay out: ONNX
    # cannot hold them); export.json keeps the encodings, applied by predict --model.
    twin = build_twin(body_of(model), text=text)
    if text:
        feed = vectorize(model, x_test)
        vocabulary, settings = text_vocabulary(model)
        ours = Vectorizer(vocabulary, int(settings["output_sequence_length"]), settings)(
            [str(t) for t in x_test]
        )
        if not np.array_equal(ours, feed):
            bad = int(np.flatnonzero((ours != feed).any(axis=1))[0])
            raise ExportCheckFailed(
                f"the TensorFlow-free text vectoriser differs from the model's on test text #{bad} "
                f"({str(x_test[bad])[:60]!r}); this export could not be served without TensorFlow."
            )
    else:
        feed = x_test
    twin(feed[:1], training=False)  # a model that has been called once (ONNX's exporter asks for it)
    twin_outputs = np.asarray(twin.predict(feed, batch_size=256, verbose=0))
    if os.environ.get("DLTRAIN_FAULT") == "perturb@export":  # test-only (dltrain/testing/faults.py)
        last = twin.get_layer("logits")
        last.set_weights([-w for w in last.get_weights()])
    calibration = np.zeros((0,))
    if quantize == "int8":  # the representative data comes from the training split only
        x_train = _model_inputs(splits, "train", model)[:CALIBRATION_EXAMPLES]
        calibration = vectorize(model, x_train) if text else x_train

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        artefact = tmp / ARTEFACTS[fmt]
        try:
            if fmt == "saved_model":
                _write_saved_model(twin, artefact)
            elif fmt == "litert":
                _write_litert(twin, artefact, quantize, calibration)
            else:
                _write_onnx(twin, artefact, quantize, calibration)
        except Exception as exc:  # the converter's own words are the reason
            reason = " ".join(str(exc).split())[:300]
            raise ConfigError(
                f"{run_dir}: this model cannot be exported as {fmt}"
                f"{'' if quantize == 'none' else f' with --quantize {quantize}'}: "
                f"{type(exc).__name__}: {reason}"
            ) from None
        run = _saved_model_runner(artefact) if fmt == "saved_model" else Artefact(artefact, fmt).run
        outputs = np.concatenate([run(feed[i : i + 256]) for i in range(0, len(feed), 256)]).astype(
            np.float64
        )
        verification = _verify(splits.task, reference, twin_outputs, outputs, y_test, quantize, _mixed(model))
        verification["size_bytes"] = _size(artefact)
        verification["latency_ms_per_example"] = round(_latency_ms(run, feed), 4)
        verification["keras_latency_ms_per_example"] = round(
            _latency_ms(
                lambda b: model(keras_inputs(b) if raw else b, training=False),
                feed if not text else _tf_strings(x_test),
            ),
            4,
        )
        export = {
            "schema_version": SCHEMA_VERSION,
            "format": fmt,
            "artefact": ARTEFACTS[fmt],
            "quantize": quantize,
            "precision": {"none": "float32", "float16": "float16 weights", "dynamic": "int8 weights"}.get(
                quantize, "int8 weights and activations"
            ),
            "source": {
                "run": str(run_dir.resolve()),
                "model": "model.keras",
                "model_sha256": file_sha256(model_path),
                "epoch": (record.get("exported") or record.get("best") or {}).get("epoch"),
            },
            "task": splits.task,
            "class_names": list(splits.class_names),
            "target_names": list(splits.target_names),
            "input": _input_record(splits, cfg, model, text),
            "run_info": _run_info(run_dir, cfg, record),
            "verification": verification,
        }
        atomic_write_text(tmp / "export.json", json.dumps(export, indent=2) + "\n")
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Result(final, export)


def _tf_strings(x: np.ndarray) -> Any:
    import tensorflow as tf

    return tf.constant(x.astype(str))


def _run_info(run_dir: Path, cfg: Any, record: dict[str, Any]) -> dict[str, Any]:
    """What the TF-free predict needs to read raw inputs the way this run's predict does."""
    state_file = run_dir / "data" / "state.json"
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    state.get("stem", {}).get("text", {}).pop("vocabulary_file", None)
    return {
        "kind": cfg.data.kind,
        "state": state,
        "data": cfg.data.model_dump(mode="json"),
        "input_shape": (record.get("data") or {}).get("input_shape"),
    }


def _mixed(model: keras.Model) -> bool:
    """Whether ``model`` computes in float16 or bfloat16 (a mixed-precision run)."""
    return any(str(getattr(layer.dtype_policy, "name", "")).startswith("mixed") for layer in model.layers)


def _verify(
    task: str,
    reference: np.ndarray,
    twin: np.ndarray,
    outputs: np.ndarray,
    y: np.ndarray,
    quantize: str,
    mixed: bool,
) -> dict[str, Any]:
    """The artefact's outputs against model.keras's (and the twin's), and the score of each.

    A float32 artefact must give the twin's outputs within ``FLOAT_TOLERANCE`` (the converter is exact), and the
    twin model.keras's within the same, or within ``MIXED_TOLERANCE`` when model.keras computes in float16 or
    bfloat16 (the twin computes in float32, so it differs by their rounding).
    """
    reference = reference.astype(np.float64)
    if outputs.shape != reference.shape or not np.all(np.isfinite(outputs)):
        raise ExportCheckFailed(
            f"the exported artefact gives outputs of shape {outputs.shape} (finite: "
            f"{bool(np.all(np.isfinite(outputs)))}) where model.keras gives {reference.shape}; the export is not kept."
        )
    diff = float(np.max(np.abs(outputs - reference))) if len(outputs) else 0.0
    diff_twin = float(np.max(np.abs(outputs - twin))) if len(outputs) else 0.0
    twin_keras = float(np.max(np.abs(twin - reference))) if len(outputs) else 0.0
    scale = 1.0 if task != "regression" else max(1.0, float(np.max(np.abs(reference))))
    keras_score, export_score = _score(task, reference, y), _score(task, outputs, y)
    out: dict[str, Any] = {
        "split": "test",
        "examples": int(len(y)),
        "max_abs_diff": diff,
        "max_abs_diff_from_twin": diff_twin,
        "model_precision": "mixed" if mixed else "float32",
        "keras": keras_score,
        "export": export_score,
    }
    twin_tolerance = (MIXED_TOLERANCE if mixed else FLOAT_TOLERANCE) * scale
    if twin_keras > twin_tolerance:
        raise ExportCheckFailed(
            f"the float32 inference twin's outputs differ from model.keras by up to {twin_keras:.3g} on the test "
            f"split (tolerance {twin_tolerance:.3g}); the export is not kept."
        )
    if quantize == "none":
        out["tolerance"] = twin_tolerance
        if diff_twin > FLOAT_TOLERANCE * scale or diff > twin_tolerance:
            raise ExportCheckFailed(
                f"the exported artefact's outputs differ from model.keras by up to {diff:.3g} on the test split "
                f"(tolerance {twin_tolerance:.3g}); the export is not kept."
            )
        out["within_margin"] = True
        return out
    if task == "regression":
        margin = MAE_MARGIN * keras_score["mae"]
        drop = export_score["mae"] - keras_score["mae"]
        out["margin"] = {"mae_increase_relative": MAE_MARGIN}
    else:
        margin = ACCURACY_MARGIN
        drop = keras_score["accuracy"] - export_score["accuracy"]
        out["margin"] = {"accuracy_drop": ACCURACY_MARGIN}
    out["within_margin"] = bool(drop <= margin + 1e-12)
    return out


__all__ = ["ExportCheckFailed", "Result", "export_run"]
