"""``dltrain predict`` through the installed CLI on real data (Fashion-MNIST PNGs, scikit-learn's digits, the
colours table) and runs made by an earlier dltrain (tests/fixtures/legacy, copied first): every row is compared
with ``keras.saving.load_model(...).predict`` on inputs the test decodes itself (Pillow, NumPy, csv), not through
dltrain's pipeline. Bad inputs: their exit code, a message naming the file, and no output file left behind."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dltrain.predict.output import OutputSpec, PredictionWriter, rows
from tests.conftest import REPO, needs_fixture_keras, run_dir_from, run_dltrain

LEGACY = REPO / "tests" / "fixtures" / "legacy"
FASHION3 = LEGACY / "fashion3"
COLORS = REPO / "configs" / "data" / "colors.csv"


def _copy_run(tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(LEGACY / "runs" / name, copy)
    return copy


def _keras_predict(run: Path, x: Any) -> np.ndarray:
    import keras

    model = keras.saving.load_model(run / "model.keras", compile=False)
    return np.asarray(model.predict(x, verbose=0), dtype=np.float64)


def _read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ images


@pytest.fixture(scope="module")
def images_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The legacy image-folder run (28x28 greyscale Fashion-MNIST, horizontal-flip augmentation), copied."""
    return _copy_run(tmp_path_factory.mktemp("legacy"), "images")


@needs_fixture_keras
def test_images_folder_matches_keras_row_by_row(images_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.csv"
    proc = run_dltrain(
        "predict", str(images_run), str(FASHION3), "--top-k", "3", "--output", str(out), "--labelled"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = _read_csv(out.read_text())
    files = sorted(FASHION3.rglob("*.png"))
    assert [r["id"] for r in got] == [
        str(p) for p in files
    ]  # one row per file, the folder searched recursively
    pixels = np.stack([_png(p) for p in files])[..., None]
    probs = _keras_predict(images_run, pixels)
    classes = json.loads((images_run / "data" / "state.json").read_text())["class_names"]
    for row, p in zip(got, probs, strict=True):
        order = np.argsort(-p, kind="stable")
        assert row["predicted"] == classes[order[0]]
        assert float(row["probability"]) == pytest.approx(p[order[0]], abs=2e-6)
        assert row["top2"] == classes[order[1]] and row["top3"] == classes[order[2]]
        assert float(row["top3_probability"]) == pytest.approx(p[order[2]], abs=2e-6)
        assert row["true"] == Path(row["id"]).parent.name
    correct = sum(r["correct"] == "1" for r in got)
    assert f"accuracy {correct / len(got):.4f}" in proc.stderr


@needs_fixture_keras
def test_unlabelled_folder_globs_and_json(images_run: Path, tmp_path: Path) -> None:
    """fast.ai's test1/ layout: one flat folder of unlabelled images, one row per file; a glob picks files."""
    test1 = tmp_path / "test1"
    test1.mkdir()
    files = sorted(FASHION3.rglob("*.png"))[::7]
    for i, path in enumerate(files):
        shutil.copy(path, test1 / f"{i + 1}.png")
    proc = run_dltrain("predict", str(images_run), str(test1), "--format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert sorted(r["id"] for r in got) == sorted(str(p) for p in test1.iterdir())
    probs = _keras_predict(images_run, np.stack([_png(Path(r["id"])) for r in got])[..., None])
    assert [r["probability"] for r in got] == pytest.approx(probs.max(axis=1).tolist(), abs=1e-6)
    pattern = str(test1 / "1*.png")
    proc = run_dltrain("predict", str(images_run), pattern)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["id"] for r in _read_csv(proc.stdout)] == sorted(str(p) for p in test1.glob("1*.png"))


@needs_fixture_keras
def test_bad_images_named_or_skipped_and_no_partial_output(images_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "new"
    folder.mkdir()
    for path in sorted(FASHION3.rglob("*.png"))[:5]:
        shutil.copy(path, folder / path.name)
    bad = folder / "broken.png"
    bad.write_bytes((folder / os.listdir(folder)[0]).read_bytes()[:60])  # a truncated PNG
    out = tmp_path / "pred.csv"
    out.write_text("an older file the user keeps\n")
    proc = run_dltrain("predict", str(images_run), str(folder), "-o", str(out))
    assert proc.returncode == 3 and str(bad) in proc.stderr and "--skip-bad" in proc.stderr
    assert out.read_text() == "an older file the user keeps\n"  # untouched
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".pred.csv")]  # no temporary left
    proc = run_dltrain("predict", str(images_run), str(folder), "-o", str(out), "--skip-bad")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 1 unreadable" in proc.stderr and "broken.png" in proc.stderr
    assert len(_read_csv(out.read_text())) == 5
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".pred.csv")]


@needs_fixture_keras
def test_resized_colour_and_jpeg_images_go_through_the_training_decoder(
    images_run: Path, tmp_path: Path
) -> None:
    """Images of another size or colour mode, and JPEGs, are converted and resized as in training: compared with
    keras on pixels the test converts itself (TensorFlow's image ops, as the training pipeline documents)."""
    import tensorflow as tf

    files = sorted(FASHION3.rglob("*.png"))[::9]
    folder = tmp_path / "mixed"
    folder.mkdir()
    expected = []
    for i, path in enumerate(files):
        grey = _png(path)
        if i % 3 == 0:  # bigger: resized down (antialiased bilinear, rounded)
            big = Image.fromarray(grey).resize((40, 40), Image.NEAREST)
            big.save(folder / f"{i}.png")
            pixels = tf.image.resize(
                np.asarray(big)[..., None].astype(np.float32), (28, 28), "bilinear", antialias=True
            )
            expected.append(np.clip(np.round(pixels.numpy()), 0, 255))
        elif i % 3 == 1:  # colour: converted to grey as training converts a colour PNG (libpng's rule)
            rgb = np.stack([grey, grey // 2, grey // 3], axis=-1).astype(np.uint8)
            Image.fromarray(rgb).save(folder / f"{i}.png")
            raw = tf.io.read_file(str(folder / f"{i}.png"))
            expected.append(tf.io.decode_png(raw, channels=1).numpy().astype(np.float32))
        else:
            Image.fromarray(grey).save(folder / f"{i}.png")
            expected.append(grey[..., None].astype(np.float32))
    proc = run_dltrain("predict", str(images_run), str(folder), "--format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = {r["id"]: r for r in json.loads(proc.stdout)}
    probs = _keras_predict(images_run, np.stack(expected))
    for i, p in enumerate(probs):
        assert got[str(folder / f"{i}.png")]["probability"] == pytest.approx(p.max(), abs=2e-6)
    jpegs = tmp_path / "jpegs"
    jpegs.mkdir()
    for i, path in enumerate(files[:6]):
        Image.fromarray(_png(path)).save(jpegs / f"{i}.jpg", quality=90)
    proc = run_dltrain("predict", str(images_run), str(jpegs), "--format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    decoded = [
        tf.io.decode_jpeg(tf.io.read_file(str(jpegs / f"{i}.jpg")), channels=1).numpy() for i in range(6)
    ]
    probs = _keras_predict(images_run, np.stack(decoded).astype(np.float32))
    assert [r["id"] for r in got] == [str(jpegs / f"{i}.jpg") for i in range(6)]
    assert [r["probability"] for r in got] == pytest.approx(probs.max(axis=1).tolist(), abs=2e-6)


@pytest.mark.parametrize(
    ("setup", "code", "says"),
    [
        ("empty", 3, "holds no images"),
        ("missing", 3, "no such file or folder"),
        ("nomatch", 3, "matches no file"),
        ("outdir", 5, "does not exist"),
        ("readonly", 5, "not writable"),
        ("nomodel", 5, "no model in this run"),
        ("norun", 5, "no such run directory"),
        ("format", 2, "--format"),
        ("topk", 2, "--top-k"),
    ],
)
def test_bad_input_exit_codes(images_run: Path, tmp_path: Path, setup: str, code: int, says: str) -> None:
    run, item, extra = images_run, str(FASHION3 / "Sneaker"), []
    if setup == "empty":
        (tmp_path / "empty").mkdir()
        item = str(tmp_path / "empty")
    elif setup == "missing":
        item = str(tmp_path / "nothing.png")
    elif setup == "nomatch":
        item = str(tmp_path / "*.png")
    elif setup == "outdir":
        extra = ["-o", str(tmp_path / "no" / "such" / "p.csv")]
    elif setup == "readonly":
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        extra = ["-o", str(locked / "p.csv")]
    elif setup == "nomodel":
        run = tmp_path / "images"
        shutil.copytree(images_run, run)
        (run / "model.keras").unlink()
    elif setup == "norun":
        run = tmp_path / "nope"
    elif setup == "format":
        extra = ["--format", "xml"]
    elif setup == "topk":
        extra = ["--top-k", "0"]
    proc = run_dltrain("predict", str(run), item, *extra)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert "tensorflow" not in proc.stderr.lower()
    assert proc.stdout == ""


# ------------------------------------------------------------------------------------------ arrays, tables


@needs_fixture_keras
def test_digits_arrays_match_keras(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    run = _copy_run(tmp_path, "digits")
    bunch = load_digits()
    x, y = bunch.images[:40].astype(np.uint8), bunch.target[:40]
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    proc = run_dltrain("predict", str(run), str(tmp_path / "digits.npz"), "--labelled")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = _read_csv(proc.stdout)
    probs = _keras_predict(run, x)
    assert [r["id"] for r in got] == [f"{tmp_path / 'digits.npz'}#{i}" for i in range(40)]
    assert [r["predicted"] for r in got] == [str(int(c)) for c in probs.argmax(axis=1)]
    assert [float(r["probability"]) for r in got] == pytest.approx(probs.max(axis=1).tolist(), abs=2e-6)
    assert [r["true"] for r in got] == [str(int(v)) for v in y]
    np.save(tmp_path / "wrong.npy", np.zeros((3, 9, 9), np.uint8))
    proc = run_dltrain("predict", str(run), str(tmp_path / "wrong.npy"))
    assert proc.returncode == 3 and "shape (9, 9)" in proc.stderr and "(8, 8)" in proc.stderr


@needs_fixture_keras
def test_a_run_being_trained_is_predicted_with_a_warning_saying_so(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    from dltrain.rundir import RunLock

    run = _copy_run(tmp_path, "digits")
    np.savez(tmp_path / "digits.npz", x=load_digits().images[:5].astype(np.uint8))
    with RunLock(run):  # a live fit holds the run (this process, as a fit would)
        proc = run_dltrain("predict", str(run), str(tmp_path / "digits.npz"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "a fit is training this run now" in proc.stderr and len(_read_csv(proc.stdout)) == 5
    proc = run_dltrain("predict", str(run), str(tmp_path / "digits.npz"))
    assert proc.returncode == 0 and "a fit is training" not in proc.stderr  # the lock released: no warning


@needs_fixture_keras
def test_csv_raw_rows_match_keras_and_bad_cells_are_located(tmp_path: Path) -> None:
    """The colours run predicts from the raw rows of a CSV (the label column present and ignored)."""
    run = _copy_run(tmp_path, "colors")
    proc = run_dltrain("predict", str(run), str(COLORS), "--top-k", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = _read_csv(proc.stdout)
    with open(COLORS, newline="") as fh:
        raw = [r for r in csv.DictReader(line for line in fh if not line.startswith("#"))]
    x = np.array([[float(r["r"]), float(r["g"]), float(r["b"])] for r in raw], dtype=np.float32)
    probs = _keras_predict(run, x)
    classes = ["blue", "green", "red"]
    assert len(got) == len(raw)
    assert [r["predicted"] for r in got] == [classes[i] for i in probs.argmax(axis=1)]
    assert [float(r["probability"]) for r in got] == pytest.approx(probs.max(axis=1).tolist(), abs=2e-6)
    assert "true" not in got[0]  # the label column was ignored
    proc = run_dltrain("predict", str(run), str(COLORS), "--labelled")
    labelled = _read_csv(proc.stdout)
    assert [r["true"] for r in labelled] == [r["name"] for r in raw]
    hits = sum(r["true"] == r["predicted"] for r in labelled)
    assert f"accuracy {hits / len(raw):.4f} against the labels ({hits}/{len(raw)})" in proc.stderr
    # a word in a numeric column, and a missing feature column: exit 3 with file, line (and column)
    bad = tmp_path / "bad.csv"
    bad.write_text("r,g,b\n10,20,30\n10,twenty,30\n")
    out = tmp_path / "p.csv"
    proc = run_dltrain("predict", str(run), str(bad), "-o", str(out))
    assert proc.returncode == 3 and f"{bad}:3:2" in proc.stderr and "'g'" in proc.stderr
    assert not out.exists()
    bad.write_text("r,b\n10,30\n")
    proc = run_dltrain("predict", str(run), str(bad))
    assert proc.returncode == 3 and f"{bad}:1" in proc.stderr and "'g'" in proc.stderr


# ------------------------------------------------------------------------------------------ in process


def test_rows_and_writer_are_atomic(tmp_path: Path) -> None:
    spec = OutputSpec("classification", ["cat", "dog", "fox"], top_k=2)
    batch = rows(spec, ["a.png", "b.png"], np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]), ["dog", "cat"])
    assert [r["predicted"] for r in batch] == ["dog", "cat"] and [r["correct"] for r in batch] == [True, True]
    assert batch[1]["top_k"][1] == {"class": "fox", "probability": 0.3}
    out = tmp_path / "p.csv"
    with pytest.raises(RuntimeError), PredictionWriter(spec, out, "csv", labelled=True) as writer:
        writer.write(batch)
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary
    with PredictionWriter(spec, out, "csv", labelled=True) as writer:
        writer.write(batch)
    assert out.read_text().splitlines() == [
        "id,predicted,probability,top2,top2_probability,true,correct",
        "a.png,dog,0.7,fox,0.2,dog,1",
        "b.png,cat,0.5,fox,0.3,cat,1",
    ]
    reg = OutputSpec("regression", target_names=["y t+1", "y t+2"])
    assert rows(reg, ["s.csv:9"], np.array([[1.5, 2.5]]))[0]["predicted"] == {"y t+1": 1.5, "y t+2": 2.5}


def test_stdout_gets_no_header_when_predicting_fails_before_the_first_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = OutputSpec("classification", ["cat", "dog", "fox"], top_k=1)
    for fmt in ("csv", "json"):
        with pytest.raises(RuntimeError), PredictionWriter(spec, None, fmt):
            raise RuntimeError("a file failed to decode")  # e.g. exit 3 on the first batch
        assert capsys.readouterr().out == ""
    with PredictionWriter(spec, None, "csv") as writer:
        writer.write(rows(spec, ["a.png"], np.array([[0.1, 0.7, 0.2]])))
    assert capsys.readouterr().out.splitlines() == ["id,predicted,probability", "a.png,dog,0.7"]
    with PredictionWriter(spec, None, "json"):
        pass  # nothing to predict: still a valid, empty document
    assert capsys.readouterr().out == "[]\n"


@needs_fixture_keras
def test_python_api_returns_what_the_cli_writes(images_run: Path, tmp_path: Path) -> None:
    import dltrain

    run = dltrain.load_run(images_run)
    assert run.classes == ["Sneaker", "T-shirt_top", "Trouser"] and run.kind == "image_folder"
    files = sorted(FASHION3.rglob("*.png"))[:10]
    got = run.predict([str(p) for p in files], top_k=2)
    probs = _keras_predict(images_run, np.stack([_png(p) for p in files])[..., None])
    assert [r["id"] for r in got] == [str(p) for p in files]
    assert [r["probability"] for r in got] == pytest.approx(probs.max(axis=1).tolist(), abs=1e-6)
    assert [r["top_k"][1]["class"] for r in got] == [run.classes[int(np.argsort(-p)[1])] for p in probs]
    proc = run_dltrain("predict", str(images_run), *map(str, files), "--top-k", "2", "--format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cli = json.loads(proc.stdout)
    assert [(r["id"], [t["class"] for t in r["top_k"]]) for r in cli] == [
        (r["id"], [t["class"] for t in r["top_k"]]) for r in got
    ]
    assert [r["probability"] for r in cli] == pytest.approx([r["probability"] for r in got], abs=1e-6)
    digits = dltrain.load_run(_copy_run(tmp_path, "digits"))
    from sklearn.datasets import load_digits

    x = load_digits().images[:5].astype(np.uint8)
    assert [r["predicted"] for r in digits.predict(x)] == [
        str(int(c)) for c in _keras_predict(digits.path, x).argmax(axis=1)
    ]


# ------------------------------------------------------------------------------------------ csv: raw columns


@pytest.mark.parametrize("encoding", ["one_hot", "embedding"])
def test_raw_column_model_equals_the_encoded_model(tmp_path: Path, encoding: str) -> None:
    """``raw_columns`` puts fit's encoding into the model: raw cells in, the same outputs as encoded rows in,
    an unseen category included; saved and loaded with safe_mode=True; and the encoded rows decode back."""
    import keras
    import tensorflow as tf

    from dltrain.config import DenseModel
    from dltrain.data.tabular import _Encoder, _Part, raw_columns, read_table
    from dltrain.models import build_model, with_outputs
    from dltrain.models import tabular as tabular_models

    table = read_table(
        _write_text(tmp_path / "t.csv", "size,w,colour\nS,1.5,red\nL,3.0,blue\nM,2.0,green\nXL,9.0,red\n")
    )
    cats = {"size": ["L", "M", "S"], "colour": ["blue", "red"]}  # XL and green unseen in "training"
    enc = _Encoder(["w"], ["size", "colour"], np.array([2.0]), np.array([0.5]), cats, encoding)
    x, unknown = enc.encode(_Part(table, np.arange(4)), "test")
    assert unknown == {"size": 1, "colour": 1}
    state = {
        "columns": {"numeric": ["w"], "categorical": ["size", "colour"]},
        "categories": cats,
        "categorical_encoding": encoding,
    }
    body = build_model(
        DenseModel(kind="dense", units=[4]),
        input_shape=(x.shape[1],),
        num_outputs=3,
        scale=1.0,
        stem=enc.stem(2),
    )
    inner = with_outputs(body)
    wrapped = tabular_models.raw_columns(inner, state)
    wrapped.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    raw = {
        "w": np.array([[1.5], [3.0], [2.0], [9.0]], np.float32),
        "size": tf.constant([["S"], ["L"], ["M"], ["XL"]]),
        "colour": tf.constant([["red"], ["blue"], ["green"], ["red"]]),
    }
    want = inner.predict(x, verbose=0)
    assert np.allclose(loaded.predict(raw, verbose=0), want, atol=1e-6)
    decoded = raw_columns(x, state)
    assert decoded["size"][:3, 0].tolist() == ["S", "L", "M"] and decoded["colour"][1, 0] == "blue"
    back = {k: tf.constant(v) if v.dtype == object else v for k, v in decoded.items()}
    assert np.allclose(loaded.predict(back, verbose=0), want, atol=1e-6)


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _iris_csv(path: Path) -> list[list[Any]]:
    """Real iris measurements with one categorical column (petal width in words), as a user's table."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    rows = []
    for values, target in zip(bunch.data, bunch.target, strict=True):
        size = "small" if values[3] < 0.8 else ("medium" if values[3] < 1.75 else "large")
        rows.append([*(round(float(v), 1) for v in values[:3]), size, str(bunch.target_names[target])])
    header = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal size", "species"]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return rows


@pytest.mark.slow
def test_csv_model_takes_raw_rows_end_to_end(tmp_path: Path) -> None:
    """fit a csv run (numeric and categorical columns), then predict raw rows without the label column: the rows
    match keras.saving.load_model(safe_mode=True).predict on the raw columns, and evaluate scores it."""
    import keras
    import tensorflow as tf
    import yaml

    rows = _iris_csv(tmp_path / "iris.csv")
    config = tmp_path / "iris.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "iris",
                "seed": 3,
                "data": {
                    "kind": "csv",
                    "path": str(tmp_path / "iris.csv"),
                    "label": "species",
                    "test_split": 0.2,
                    "batch_size": 16,
                },
                "model": {"kind": "dense", "units": [16]},
                "optimizer": {"kind": "adam", "learning_rate": 0.02},
                "train": {"epochs": 3},
            }  # fmt: skip
        )
    )
    proc = run_dltrain("fit", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    assert json.loads((run / "data" / "state.json").read_text())["model_inputs"] == "raw columns"
    new = tmp_path / "new.csv"
    sample = [r[:4] for r in rows[::10]]
    sample[0][3] = "huge"  # a category the training rows lack: encoded as in training (all zeros), and said
    with open(new, "w", newline="") as fh:
        csv.writer(fh).writerows(
            [["petal size", "sepal length (cm)", "sepal width (cm)", "petal length (cm)"]]
        )
        csv.writer(fh).writerows([[r[3], r[0], r[1], r[2]] for r in sample])  # another column order
    proc = run_dltrain("predict", str(run), str(new), "--top-k", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{new}:2:1" in proc.stderr and "'huge'" in proc.stderr
    got = _read_csv(proc.stdout)
    model = keras.saving.load_model(run / "model.keras", compile=False, safe_mode=True)
    names = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)"]
    raw = {n: np.array([[r[i]] for r in sample], np.float32) for i, n in enumerate(names)}
    raw["petal size"] = tf.constant([[r[3]] for r in sample])
    probs = model.predict(raw, verbose=0)
    classes = ["setosa", "versicolor", "virginica"]
    assert [r["predicted"] for r in got] == [classes[i] for i in probs.argmax(axis=1)]
    assert [float(r["probability"]) for r in got] == pytest.approx(probs.max(axis=1).tolist(), abs=2e-6)
    proc = run_dltrain("evaluate", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "eval" / "test" / "metrics.json").read_text())["accuracy"] > 0.6


# ------------------------------------------------------------------------------------------ text, series


@pytest.mark.slow
def test_text_and_series_runs_predict(tmp_path: Path) -> None:
    """A text run predicts .txt files (and a CSV column of strings); a series run forecasts the steps after the last
    full window of a CSV. Both compared with keras on inputs the test reads itself."""
    import keras

    runs = tmp_path / "runs"
    proc = run_dltrain("fit", "configs/books_rnn.yaml", "--runs-dir", str(runs), "--set", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    books = run_dir_from(proc.stdout)
    files = sorted((REPO / "configs" / "data" / "books" / "test").rglob("*.txt"))[::20]
    proc = run_dltrain("predict", str(books), *map(str, files), "--labelled", "--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    texts = [p.read_text(encoding="utf-8-sig") for p in files]
    model = keras.saving.load_model(books / "model.keras", compile=False)
    probs = model.predict(np.array(texts, dtype=object), verbose=0)
    assert [r["id"] for r in got] == [str(p) for p in files]
    assert [r["probability"] for r in got] == pytest.approx(probs.max(axis=1).tolist(), abs=2e-6)
    assert [r["true"] for r in got] == [p.parent.name for p in files]
    table = tmp_path / "texts.csv"
    with open(table, "w", newline="") as fh:
        csv.writer(fh).writerows([["passage"], *([t] for t in texts)])
    proc = run_dltrain("predict", str(books), str(table), "--column", "passage")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["predicted"] for r in _read_csv(proc.stdout)] == [r["predicted"] for r in got]

    proc = run_dltrain("fit", "configs/sunspots_gru.yaml", "--runs-dir", str(runs), "--set", "train.epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sun = run_dir_from(proc.stdout)
    series = REPO / "configs" / "data" / "sunspots.csv"
    lines = [ln for ln in series.read_text().splitlines() if ln and not ln.startswith("#")]
    recent = tmp_path / "recent.csv"
    recent.write_text("\n".join([lines[0], *lines[-30:]]) + "\n")  # the last 30 years
    proc = run_dltrain("predict", str(sun), str(recent))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = _read_csv(proc.stdout)
    header = lines[0].split(",")
    window = [float(ln.split(",")[header.index("SUNACTIVITY")]) for ln in lines[-11:]]
    x = np.array(window, np.float32).reshape(1, 11, 1)
    want = keras.saving.load_model(sun / "model.keras", compile=False).predict(x, verbose=0)
    assert float(row["predicted"]) == pytest.approx(float(want.reshape(-1)[0]), rel=1e-5)
    assert row["id"] == f"{recent}:31"
    short = tmp_path / "short.csv"
    short.write_text("\n".join([lines[0], *lines[-5:]]) + "\n")
    proc = run_dltrain("predict", str(sun), str(short))
    assert proc.returncode == 3 and "needs the last 11 rows" in proc.stderr


def test_predicts_modules_and_load_run_import_no_tensorflow(tmp_path: Path) -> None:
    """The light part (finding inputs, writing rows, the run's record, load_run) never imports TensorFlow, so a
    bad input is refused in milliseconds and the TF-free predictor can reuse the output writer."""
    import subprocess
    import sys

    code = (
        "import sys, dltrain\n"
        "import dltrain.predict.output, dltrain.predict.inputs, dltrain.predict.engine, dltrain.commands.predict\n"
        f"run = dltrain.load_run({str(LEGACY / 'runs' / 'digits')!r})\n"
        "assert run.classes[:2] == ['0', '1'], run.classes\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_a_legacy_table_run_without_its_encoding_is_refused_saying_why(tmp_path: Path) -> None:
    run = _copy_run(tmp_path, "colors")
    state = json.loads((run / "data" / "state.json").read_text())
    del state["columns"]
    (run / "data" / "state.json").write_text(json.dumps(state))
    proc = run_dltrain("predict", str(run), str(COLORS))
    assert proc.returncode == 5 and "predates the record of how rows are encoded" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.slow
def test_a_fresh_image_run_predicts_its_unlabelled_test_folder(tmp_path: Path) -> None:
    """fast.ai's lesson-1 layout from real Fashion-MNIST PNGs: train/<class>/ and an unlabelled test1/; the run
    resizes 28x28 to 20x20, and predict's rows match keras on pixels the test resizes itself."""
    import tensorflow as tf
    import yaml

    from dltrain.data.builtin import DEBIAN_FASHION_DIR
    from dltrain.data.formats import read_idx_folder
    from dltrain.data.images import write_image_folder

    arrays = read_idx_folder(DEBIAN_FASHION_DIR) if DEBIAN_FASHION_DIR.is_dir() else None
    if arrays is None:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    keep = np.flatnonzero(np.isin(arrays["y_train"], [0, 1, 7]))[:150]
    write_image_folder(tmp_path / "data" / "train", arrays["x_train"][keep], arrays["y_train"][keep],
                       [str(c) for c in range(10)])  # fmt: skip
    test1 = tmp_path / "data" / "test1"
    test1.mkdir()
    for i, pixels in enumerate(arrays["x_test"][:25]):
        Image.fromarray(pixels).save(test1 / f"{i + 1}.png")
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "fresh",
                "seed": 1,
                "data": {
                    "kind": "image_folder",
                    "path": str(tmp_path / "data" / "train"),
                    "image_size": [20, 20],
                    "color_mode": "grayscale",
                    "batch_size": 32,
                },
                "model": {"kind": "cnn", "filters": [8], "dense": []},
                "train": {"epochs": 1},
            }  # fmt: skip
        )
    )
    proc = run_dltrain("fit", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    out = tmp_path / "submission.csv"
    proc = run_dltrain("predict", str(run), str(test1), "--top-k", "3", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = _read_csv(out.read_text())
    assert sorted(r["id"] for r in got) == sorted(str(p) for p in test1.iterdir())  # one row per file
    pixels = np.stack([_png(Path(r["id"])) for r in got])[..., None].astype(np.float32)
    resized = np.clip(np.round(tf.image.resize(pixels, (20, 20), "bilinear", antialias=True).numpy()), 0, 255)
    probs = _keras_predict(run, resized)
    classes = ["0", "1", "7"]
    assert [r["predicted"] for r in got] == [classes[i] for i in probs.argmax(axis=1)]
    assert [float(r["probability"]) for r in got] == pytest.approx(probs.max(axis=1).tolist(), abs=2e-6)
