"""``dltrain export`` and ``dltrain predict --model EXPORT_DIR`` on real runs (digits, Fashion-MNIST PNGs, the
shipped colours CSV, the books corpus, the sunspots series), through the installed CLI.

Each format's outputs are compared with ``keras.saving.load_model(...).predict`` on inputs the test builds itself
(tolerance 1e-4 for float32 artefacts: measured differences are 0 to 1e-5); the TF-free path is run in a fresh
interpreter that reports whether ``tensorflow`` was imported.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, keras_version, needs_litert_keras, run_dir_from, run_dltrain

TOLERANCE = 1e-4  # float32 artefact vs model.keras, on class probabilities

# Runs dltrain's CLI (with its stderr filter, as `dltrain` has) in this interpreter with the modules in BLOCK
# made unimportable, and reports afterwards whether TensorFlow was imported.
CLI = """
import sys
for name in {block!r}:
    sys.modules[name] = None
from dltrain import tfquiet
from dltrain.cli import app
tfquiet.install(sys.argv[1:])  # as dltrain.cli.main does
try:
    app(args=sys.argv[1:], prog_name="dltrain")
    code = 0
except SystemExit as exc:
    code = exc.code or 0
print("TENSORFLOW_IMPORTED=%s" % ("tensorflow" in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def run_cli(*args: str, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", CLI.format(block=block), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _fit(tmp: Path, config: str | Path, *sets: str) -> Path:
    args = [a for s in sets for a in ("--set", s)]
    proc = run_dltrain("fit", str(config), *args, "--runs-dir", str(tmp / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir_from(proc.stdout)


def _export(run: Path, fmt: str, quantize: str = "none", *extra: str) -> tuple[Path, dict[str, Any]]:
    proc = run_dltrain("export", str(run), "--format", fmt, "--quantize", quantize, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(next(line[8:] for line in proc.stdout.splitlines() if line.startswith("export: ")))
    return folder, json.loads((folder / "export.json").read_text())


def _run_artefact(folder: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """The artefact called directly through its own runtime (not through dltrain)."""
    if fmt == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
        key = next(iter(serve.structured_input_signature[1]))
        return next(iter(serve(**{key: tf.constant(x)}).values())).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(folder / "model.tflite"))
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN on scikit-learn's real 8x8 digits (2 epochs, a few seconds)."""
    return _fit(tmp_path_factory.mktemp("digits"), REPO / "configs" / "digits_cnn.yaml", "train.epochs=2")


@pytest.fixture(scope="module")
def digits_images() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images[:64].astype(np.float32)  # raw 0-16 values, as model.keras takes them


@pytest.mark.parametrize("fmt", ["saved_model", "onnx", pytest.param("litert", marks=needs_litert_keras)])
def test_each_format_matches_model_keras(digits_run: Path, digits_images: np.ndarray, fmt: str) -> None:
    import keras

    folder, record = _export(digits_run, fmt)
    check = record["verification"]
    assert check["max_abs_diff"] <= TOLERANCE and check["examples"] > 300
    assert check["export"]["accuracy"] == pytest.approx(check["keras"]["accuracy"])
    assert check["size_bytes"] > 10_000 and check["latency_ms_per_example"] > 0
    assert record["source"]["model_sha256"] == record["source"]["model_sha256"].lower()
    assert record["class_names"] == [str(i) for i in range(10)] and record["quantize"] == "none"
    model = keras.saving.load_model(digits_run / "model.keras", compile=False)
    expected = model.predict(digits_images, verbose=0)
    got = _run_artefact(folder, fmt, digits_images)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    # The folder is self-contained: nothing temporary is left beside it.
    assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("fmt", "quantize"), [("onnx", "int8"), pytest.param("litert", "dynamic", marks=pytest.mark.slow)]
)
def test_quantised_exports_record_size_and_accuracy(digits_run: Path, fmt: str, quantize: str) -> None:
    _, float_record = (
        (None, json.loads((digits_run / "export" / fmt / "export.json").read_text()))
        if (digits_run / "export" / fmt).is_dir()
        else _export(digits_run, fmt)
    )
    folder, record = _export(digits_run, fmt, quantize)
    check = record["verification"]
    assert folder.name == f"{fmt}-{quantize}" and record["precision"].startswith("int8")
    assert check["size_bytes"] < 0.6 * float_record["verification"]["size_bytes"]
    drop = check["keras"]["accuracy"] - check["export"]["accuracy"]
    assert check["within_margin"] == (drop <= check["margin"]["accuracy_drop"] + 1e-12)
    assert check["export"]["accuracy"] > 0.5


def test_a_failed_check_leaves_nothing_and_exits_5(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_dltrain(
        "export",
        str(digits_run),
        "--format",
        "onnx",
        "--output",
        str(out),
        env={"DLTRAIN_FAULT": "perturb@export"},
    )
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert "differ from model.keras" in proc.stderr and "not kept" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary twin


def test_an_existing_output_is_never_overwritten(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_dltrain("export", str(digits_run), "--format", "onnx", "--output", str(out))
    assert proc.returncode == 5 and "already exists" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("fmt", "module"),
    [
        ("onnx", "onnxruntime"),
        ("onnx", "tf2onnx"),
        pytest.param("litert", "ai_edge_litert", marks=needs_litert_keras),
    ],
)
def test_a_missing_extra_exits_2_naming_it(digits_run: Path, tmp_path: Path, fmt: str, module: str) -> None:
    out = tmp_path / "x"
    proc = run_cli(
        "export", str(digits_run), "--format", fmt, "--output", str(out), block=(module, "tflite_runtime")
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert module in proc.stderr and "pip install 'dltrain[export]'" in proc.stderr
    assert "TENSORFLOW_IMPORTED=False" in proc.stderr and not out.exists()


@pytest.mark.skipif(
    keras_version() >= (3, 13), reason="only an older Keras (Python 3.10's 3.12) lacks litert"
)
def test_litert_on_an_older_keras_exits_2_saying_what_it_needs(digits_run: Path, tmp_path: Path) -> None:
    proc = run_cli("export", str(digits_run), "--format", "litert", "--output", str(tmp_path / "x"))
    assert proc.returncode == 2 and "needs Keras 3.13 or later" in proc.stderr, proc.stderr[-2000:]
    assert "TENSORFLOW_IMPORTED=False" in proc.stderr and not (tmp_path / "x").exists()


def test_bad_options_exit_2_without_tensorflow(digits_run: Path) -> None:
    proc = run_cli("export", str(digits_run), "--format", "saved_model", "--quantize", "int8")
    assert proc.returncode == 2 and "litert or onnx" in proc.stderr
    proc = run_cli("export", str(digits_run), "--format", "coreml")
    assert proc.returncode == 2 and "saved_model, onnx, litert" in proc.stderr
    assert "TENSORFLOW_IMPORTED=False" in proc.stderr


@pytest.mark.parametrize("fmt", [pytest.param("litert", marks=needs_litert_keras), "onnx"])
def test_predict_with_an_export_folder_imports_no_tensorflow(
    digits_run: Path, digits_images: np.ndarray, tmp_path: Path, fmt: str
) -> None:
    import keras

    folder = digits_run / "export" / fmt
    if not folder.is_dir():
        folder, _ = _export(digits_run, fmt)
    np.save(tmp_path / "digits.npy", digits_images[:20])
    proc = run_cli("predict", "--model", str(folder), str(tmp_path / "digits.npy"), "--top-k", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TENSORFLOW_IMPORTED=False" in proc.stderr
    assert "XNNPACK" not in proc.stderr  # LiteRT's start-up line is kept off the terminal (dltrain.tfquiet)
    rows = _rows(proc.stdout)
    expected = keras.saving.load_model(digits_run / "model.keras", compile=False).predict(
        digits_images[:20], verbose=0
    )
    assert len(rows) == 20
    for row, probs in zip(rows, expected, strict=True):
        assert row["predicted"] == str(int(np.argmax(probs)))
        assert float(row["probability"]) == pytest.approx(float(np.max(probs)), abs=TOLERANCE)
    # The artefact's own path names the folder too; a SavedModel folder is refused (it needs TensorFlow).
    proc = run_cli(
        "predict",
        "--model",
        str(folder / f"model.{'tflite' if fmt == 'litert' else 'onnx'}"),
        str(tmp_path / "digits.npy"),
    )
    assert proc.returncode == 0 and len(_rows(proc.stdout)) == 20
    proc = run_cli("predict", "--model", str(tmp_path), str(tmp_path / "digits.npy"))
    assert proc.returncode == 5 and "not an export folder" in proc.stderr


# ------------------------------------------------------------------------------- images: Pillow vs TF


@pytest.fixture(scope="module")
def fashion_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from PIL import Image

    from dltrain.data.builtin import DEBIAN_FASHION_DIR
    from dltrain.data.formats import read_idx_folder

    arrays = read_idx_folder(DEBIAN_FASHION_DIR) if DEBIAN_FASHION_DIR.is_dir() else None
    if arrays is None:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    root = tmp_path_factory.mktemp("pngs")
    paths = []
    for i, image in enumerate(arrays["x_test"][:100]):
        grey = image.astype(np.float32)
        tinted = np.stack([grey, grey * 0.6, grey * 0.3], axis=-1).round().astype(np.uint8)
        for name, pixels in ((f"g{i}.png", image), (f"c{i}.png", tinted)):
            Image.fromarray(pixels).save(root / name)
            paths.append(root / name)
    return paths


@pytest.mark.parametrize(("size", "channels"), [(28, 1), (20, 1), (40, 1), (20, 3)])
def test_pillow_decoding_is_within_the_stated_tolerance_of_tensorflows(
    fashion_pngs: list[Path], size: int, channels: int
) -> None:
    """Measured on 200 real Fashion-MNIST PNGs (grey and colour): same size exact; resized, at most 1 grey level
    apart; colour to grey and resized, at most 2. The README states: 2 grey levels, mean under 0.3."""
    import tensorflow as tf

    from dltrain.data.pipeline.images import decode_image
    from dltrain.serving.encode import load_image

    diffs = []
    for path in fashion_pngs:
        reference = decode_image(tf.io.read_file(str(path)), size, size, channels).numpy()
        diffs.append(np.abs(reference - load_image(str(path), size, size, channels)))
    diff = np.stack(diffs)
    assert diff.max() <= 2.0 and diff.mean() < 0.3
    if size == 28 and channels == 1:
        assert diff[::2].max() == 0.0  # a grey PNG at its own size: the same pixels


# ----------------------------------------------------------------------------------------- the matrix


def _image_folder_run(tmp: Path, fashion_pngs: list[Path]) -> Path:
    """A CNN with augmentation on class folders of real Fashion-MNIST PNGs."""
    from PIL import Image

    from dltrain.data.builtin import DEBIAN_FASHION_DIR, FASHION_CLASSES
    from dltrain.data.formats import read_idx_folder
    from dltrain.data.images import write_image_folder

    arrays = read_idx_folder(DEBIAN_FASHION_DIR)
    assert arrays is not None and Image is not None
    x, y = arrays["x_train"][:600], arrays["y_train"][:600]
    write_image_folder(tmp / "fashion", x, y, FASHION_CLASSES)
    config = {
        "name": "fashion_aug",
        "seed": 3,
        "data": {
            "kind": "image_folder",
            "path": str(tmp / "fashion"),
            "image_size": [28, 28],
            "color_mode": "grayscale",
            "validation_split": 0.1,
            "test_split": 0.2,
            "batch_size": 32,
            "augment": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1},
        },
        "model": {"kind": "cnn", "filters": [8, 16], "dense": [32]},
        "train": {"epochs": 2},
    }
    (tmp / "fashion.yaml").write_text(yaml.safe_dump(config))
    return _fit(tmp, tmp / "fashion.yaml")


@pytest.mark.slow
def test_images_with_augmentation_export_and_predict_files(tmp_path: Path, fashion_pngs: list[Path]) -> None:
    run = _image_folder_run(tmp_path, fashion_pngs)
    for fmt in ("onnx", "litert"):
        folder, record = _export(run, fmt)
        assert record["verification"]["max_abs_diff"] <= TOLERANCE
        assert record["input"]["image"] == {
            "height": 28,
            "width": 28,
            "channels": 1,
            "color_mode": "grayscale",
        }
    pngs = [str(p) for p in fashion_pngs[::2][:30]]
    tf_rows = _rows(run_dltrain("predict", str(run), *pngs).stdout)
    proc = run_cli("predict", "--model", str(folder), *pngs)
    assert proc.returncode == 0 and "TENSORFLOW_IMPORTED=False" in proc.stderr, proc.stderr[-2000:]
    ours = _rows(proc.stdout)
    assert [r["id"] for r in ours] == [r["id"] for r in tf_rows] and len(ours) == 30
    for a, b in zip(ours, tf_rows, strict=True):  # same pixels at the trained size: same answers
        assert a["predicted"] == b["predicted"]
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=TOLERANCE)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    proc = run_cli("predict", "--model", str(folder), pngs[0], str(bad))
    assert proc.returncode == 3 and f"{bad}: cannot be decoded" in proc.stderr
    proc = run_cli("predict", "--model", str(folder), pngs[0], str(bad), "--skip-bad")
    assert proc.returncode == 0 and len(_rows(proc.stdout)) == 1 and "1 skipped" in proc.stderr


def _colours_csv(tmp: Path) -> Path:
    """The shipped colours table with a categorical column added (one of three words per row)."""
    lines = [
        line
        for line in (REPO / "configs" / "data" / "colors.csv").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    out = [lines[0] + ",shade"] + [
        f"{line},{('light', 'dark', 'mid')[i % 3]}" for i, line in enumerate(lines[1:])
    ]
    (tmp / "colors.csv").write_text("\n".join(out) + "\n")
    return tmp / "colors.csv"


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["one_hot", "embedding"])
def test_csv_numeric_and_categorical_export_and_predict_raw_rows(tmp_path: Path, encoding: str) -> None:
    path = _colours_csv(tmp_path)
    config = {
        "name": f"colors_{encoding}",
        "seed": 1,
        "data": {
            "kind": "csv",
            "path": str(path),
            "label": "name",
            "test_split": 0.2,
            "validation_split": 0.15,
            "batch_size": 8,
            "categorical_encoding": encoding,
        },
        "model": {"kind": "dense", "units": [16]},
        "optimizer": {"kind": "adam", "learning_rate": 0.01},
        "train": {"epochs": 3},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run = _fit(tmp_path, tmp_path / "c.yaml")
    tf_rows = _rows(run_dltrain("predict", str(run), str(path)).stdout)
    for fmt in ("onnx", "litert"):
        folder, record = _export(run, fmt)
        assert record["verification"]["max_abs_diff"] <= TOLERANCE
        proc = run_cli("predict", "--model", str(folder), str(path))
        assert proc.returncode == 0 and "TENSORFLOW_IMPORTED=False" in proc.stderr, proc.stderr[-2000:]
        ours = _rows(proc.stdout)
        assert len(ours) == len(tf_rows) == 150
        for a, b in zip(ours, tf_rows, strict=True):
            assert a["id"] == b["id"] and a["predicted"] == b["predicted"]
            assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=TOLERANCE)


@pytest.mark.slow
def test_text_exports_token_ids_and_the_tf_free_vectoriser_matches(tmp_path: Path) -> None:
    run = _fit(tmp_path, REPO / "configs" / "books_rnn.yaml", "train.epochs=1", "model.units=[8]")
    texts = sorted((REPO / "configs" / "data" / "books" / "test").rglob("*.txt"))[::10]
    tf_rows = _rows(run_dltrain("predict", str(run), *map(str, texts)).stdout)
    for fmt in ("onnx", "litert"):
        folder, record = _export(run, fmt)
        assert record["input"]["dtype"] == "int64" and record["input"]["text"]["vocabulary"][:2] == [
            "",
            "[UNK]",
        ]
        assert record["verification"]["max_abs_diff"] <= TOLERANCE
    proc = run_cli("predict", "--model", str(folder), *map(str, texts))
    assert proc.returncode == 0 and "TENSORFLOW_IMPORTED=False" in proc.stderr, proc.stderr[-2000:]
    ours = _rows(proc.stdout)
    assert len(ours) == len(tf_rows) == len(texts)
    for a, b in zip(ours, tf_rows, strict=True):
        assert a["predicted"] == b["predicted"]
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=TOLERANCE)


@pytest.mark.slow
def test_a_series_forecast_exports_with_the_recurrent_layer_unrolled(tmp_path: Path) -> None:
    run = _fit(tmp_path, REPO / "configs" / "sunspots_gru.yaml", "train.epochs=2")
    series = REPO / "configs" / "data" / "sunspots.csv"
    tf_rows = _rows(run_dltrain("predict", str(run), str(series)).stdout)
    for fmt in ("saved_model", "onnx", "litert"):
        folder, record = _export(run, fmt)
        check = record["verification"]
        assert "mae" in check["keras"] and check["max_abs_diff"] <= check["tolerance"]
    proc = run_cli("predict", "--model", str(folder), str(series))
    assert proc.returncode == 0 and "TENSORFLOW_IMPORTED=False" in proc.stderr, proc.stderr[-2000:]
    ours = _rows(proc.stdout)
    assert len(ours) == len(tf_rows) == 1
    assert float(ours[0]["predicted"]) == pytest.approx(float(tf_rows[0]["predicted"]), rel=1e-4)
