"""The ``csv`` kind: strict parsing (file:line:column errors), splits, statistics from training rows only,
one-hot and embedded categories, the task rule, and one run through the installed CLI."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dltrain.config import CsvData
from dltrain.data import load_splits
from dltrain.data.tabular import MAX_AUTO_CLASSES, read_table
from dltrain.errors import ConfigError, DataError
from tests.conftest import REPO, run_dir_from, run_dltrain

HEADER = "r,g,b,name\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _table(n: int, seed: int = 0, classes: tuple[str, ...] = ("red", "green", "blue")) -> list[list[Any]]:
    rng = np.random.default_rng(seed)
    return [[*rng.integers(0, 256, 3).tolist(), classes[i % len(classes)]] for i in range(n)]


def _csv(path: Path, rows: list[list[Any]], header: str = HEADER) -> Path:
    return _write(path, header + "".join(",".join(str(v) for v in row) + "\n" for row in rows))


def _cfg(**kw: Any) -> CsvData:
    base: dict[str, Any] = {"kind": "csv", "label": "name", "validation_split": 0.0}
    return CsvData(**{**base, **kw})


# ----------------------------------------------------------------------------------------- good files


def test_a_good_csv_loads_with_classes_statistics_and_manifest(tmp_path: Path) -> None:
    rows = _table(40)
    path = _csv(tmp_path / "c.csv", rows)
    splits = load_splits(_cfg(path=path, validation_split=0.25), seed=3)
    assert splits.task == "classification"
    assert splits.class_names == ["blue", "green", "red"]  # sorted label values
    assert splits.sizes() == {"train": 30, "validation": 10, "test": 0}
    assert splits.x_train.dtype == np.float32 and splits.x_train.shape == (30, 3)
    assert np.bincount(splits.y_val, minlength=3).tolist() in ([4, 3, 3], [3, 4, 3], [3, 3, 4])  # stratified
    # the manifest names each row's line (the header is line 1), and together they cover every row once
    lines = splits.manifest["train"] + splits.manifest["validation"]
    assert sorted(lines, key=lambda s: int(s.split()[1])) == [f"line {i}" for i in range(2, 42)]
    line = int(splits.manifest["train"][0].split()[1])
    assert splits.x_train[0].tolist() == [float(v) for v in rows[line - 2][:3]]
    assert splits.class_names[splits.y_train[0]] == rows[line - 2][3]
    assert splits.stem["normalize"]["mean"] == pytest.approx(splits.x_train.mean(axis=0).tolist())
    assert splits.state["columns"]["numeric"] == ["r", "g", "b"]


def test_the_validation_split_follows_the_seed(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", _table(60))
    a = load_splits(_cfg(path=path, validation_split=0.2), seed=1)
    b = load_splits(_cfg(path=path, validation_split=0.2), seed=2)
    a2 = load_splits(_cfg(path=path, validation_split=0.2), seed=1)
    assert a.manifest["validation"] == a2.manifest["validation"]
    assert a.manifest["validation"] != b.manifest["validation"]


def test_the_test_split_is_the_same_rows_for_every_seed(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", _table(60))
    a = load_splits(_cfg(path=path, validation_split=0.2, test_split=0.2), seed=1)
    b = load_splits(_cfg(path=path, validation_split=0.2, test_split=0.2), seed=2)
    assert a.sizes() == {"train": 38, "validation": 10, "test": 12}  # validation: 0.2 of what test leaves
    assert a.manifest["test"] == b.manifest["test"]
    assert not set(a.manifest["test"]) & set(a.manifest["train"] + a.manifest["validation"])


def test_comments_before_the_header_blank_lines_and_quoted_fields(tmp_path: Path) -> None:
    text = (
        "# source: hand-made\n# licence: CC0\n\nname,x,note\n"
        '"red",1,"a, quoted, note"\n'
        "\n"
        '#ff0000,2,"two\nlines"\n'  # '#' after the header is data; a quoted field may span lines
        "blue,3,plain\n"
    )
    table = read_table(_write(tmp_path / "t.csv", text))
    assert table.header == ["name", "x", "note"] and table.header_line == 4
    assert [r[0] for r in table.rows] == ["red", "#ff0000", "blue"]
    assert table.lines == [5, 7, 9]  # the line each row starts on
    assert table.rows[1][2] == "two\nlines"


def test_separate_files_and_a_label_the_training_file_lacks(tmp_path: Path) -> None:
    train = _csv(tmp_path / "train.csv", _table(30))
    valid = _csv(tmp_path / "valid.csv", _table(9, seed=1))
    test = _write(tmp_path / "test.csv", "name,b,g,r\nred,1,2,3\npurple,4,5,6\n")  # any column order
    with pytest.raises(
        DataError, match=rf"{re.escape(str(test))}:3:1: label 'purple' \(column 'name'\) does not occur"
    ):
        load_splits(_cfg(train=train, validation=valid, test=test), seed=0)
    _write(test, "name,b,g,r\nred,1,2,3\nblue,4,5,6\n")
    splits = load_splits(_cfg(train=train, validation=valid, test=test), seed=0)
    assert splits.sizes() == {"train": 30, "validation": 9, "test": 2}
    assert splits.x_test.tolist() == [[3, 2, 1], [6, 5, 4]]  # read by column name
    assert splits.y_test.tolist() == [2, 0]


# --------------------------------------------------------------------------- statistics: training only


def test_statistics_come_from_training_rows_only_when_validation_is_carved(tmp_path: Path) -> None:
    rows = _table(50)
    path = _csv(tmp_path / "c.csv", rows)
    cfg = _cfg(path=path, validation_split=0.2, test_split=0.2)
    before = load_splits(cfg, seed=4)
    held = {int(s.split()[1]) for s in before.manifest["validation"] + before.manifest["test"]}
    # The split depends on the labels only: plant extreme feature values in exactly the held-out rows.
    for line in held:
        rows[line - 2][:3] = [1e6, -1e6, 1e6]
    _csv(path, rows)
    after = load_splits(cfg, seed=4)
    assert after.manifest == before.manifest
    assert after.stem["normalize"] == before.stem["normalize"]
    train = np.array([rows[int(s.split()[1]) - 2][:3] for s in after.manifest["train"]], dtype=np.float64)
    assert after.stem["normalize"]["mean"] == pytest.approx(train.mean(axis=0).tolist())
    assert after.stem["normalize"]["std"] == pytest.approx(train.std(axis=0).tolist())
    assert after.state["statistics"]["computed_on"] == "train"
    assert after.state["statistics"]["rows"] == len(train)
    assert np.abs(after.x_val).max() == 1e6  # the planted rows are there, only not in the statistics


def test_statistics_and_categories_ignore_separate_validation_and_test_files(tmp_path: Path) -> None:
    header = "x,colour,name\n"
    train = _write(tmp_path / "train.csv", header + "1,red,a\n2,red,b\n3,blue,a\n6,blue,b\n")
    valid = _write(tmp_path / "valid.csv", header + "1000,teal,a\n-5000,red,b\n")
    test = _write(tmp_path / "test.csv", header + "90000,navy,a\n")
    splits = load_splits(_cfg(train=train, validation=valid, test=test, label="name"), seed=0)
    assert splits.state["statistics"]["mean"] == {"x": 3.0}
    assert splits.state["statistics"]["std"]["x"] == pytest.approx(np.std([1, 2, 3, 6]))
    assert splits.state["categories"] == {"colour": ["blue", "red"]}
    # one-hot: the numeric column standardised, the one-hot columns left as they are (mean 0, std 1)
    assert splits.stem["normalize"]["mean"] == [3.0, 0.0, 0.0]
    assert splits.stem["normalize"]["std"][1:] == [1.0, 1.0]
    assert splits.state["columns"]["inputs"] == ["x", "colour=blue", "colour=red"]
    assert splits.x_val.tolist() == [[1000, 0, 0], [-5000, 0, 1]]  # 'teal' is unknown: all zeros
    assert splits.x_test.tolist() == [[90000, 0, 0]]
    assert any("validation: 1 rows of 'colour'" in n for n in splits.notes)
    assert splits.task == "binary" and splits.class_names == ["a", "b"]


# --------------------------------------------------------------------------------- categorical columns


def test_embedding_codes_and_the_embed_stem(tmp_path: Path) -> None:
    text = "size,colour,w,name\nS,red,1,a\nM,blue,2,b\nL,red,3,a\nM,green,4,b\n"
    train = _write(tmp_path / "train.csv", text)
    test = _write(tmp_path / "test.csv", "size,colour,w,name\nXL,blue,5,a\n")
    cfg = _cfg(train=train, test=test, categorical_encoding="embedding", embedding_dim=3)
    splits = load_splits(cfg, seed=0)
    # numeric columns first, then one code per categorical column: sorted categories from 1, unknown 0
    assert splits.state["categories"] == {"size": ["L", "M", "S"], "colour": ["blue", "green", "red"]}
    assert splits.x_train.tolist() == [[1, 3, 3], [2, 2, 1], [3, 1, 3], [4, 2, 2]]
    assert splits.x_test.tolist() == [[5, 0, 1]]
    embed = splits.stem["embed"]
    assert embed == {
        "numeric": 1,
        "columns": [{"name": "size", "input_dim": 4}, {"name": "colour", "input_dim": 4}],
        "output_dim": 3,
    }
    assert splits.stem["normalize"]["mean"] == [2.5]  # the numeric part only


def test_a_mostly_numeric_column_with_a_word_is_an_error_not_a_category(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", [[1, 2, 3, "red"], [4, "five", 6, "blue"], [7, 8, 9, "red"]])
    with pytest.raises(
        DataError,
        match=rf"{re.escape(str(path))}:3:2: column 'g' holds 'five', not a finite number.*data.categorical",
    ):
        load_splits(_cfg(path=path), seed=0)
    splits = load_splits(_cfg(path=path, categorical=["g"]), seed=0)  # the fix the message gives
    assert splits.state["categories"]["g"] == ["2", "8", "five"]


def test_an_all_word_column_is_detected_as_categorical(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "city,temp,name\nParis,1,a\nRome,2,b\nOslo,3,a\nRome,4,b\n")
    splits = load_splits(_cfg(path=path), seed=0)
    assert splits.state["columns"]["categorical"] == ["city"]
    assert splits.x_train.shape == (4, 4)


# ------------------------------------------------------------------------------------------- the task


@pytest.mark.parametrize(
    ("labels", "task", "expected"),
    [
        (["cat", "dog", "cat", "dog", "eel"], "auto", "classification"),
        (["0", "1", "0", "1", "1"], "auto", "binary"),
        (["1", "2.0", "3", "1", "2"], "auto", "classification"),  # whole numbers, few: classes
        (["0.5", "1.25", "2", "3", "4"], "auto", "regression"),  # fractions
        ([str(i) for i in range(MAX_AUTO_CLASSES + 1)], "auto", "regression"),  # many whole numbers
        (["1", "2", "3", "1", "2"], "regression", "regression"),
        ([str(i) for i in range(MAX_AUTO_CLASSES + 1)], "classification", "classification"),
    ],
)
def test_the_task_rule(tmp_path: Path, labels: list[str], task: str, expected: str) -> None:
    path = _write(tmp_path / "c.csv", "x,name\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels)))
    splits = load_splits(_cfg(path=path, task=task), seed=0)
    assert splits.task == expected
    if expected == "classification" and labels[1] == "2.0":
        assert splits.class_names == ["1", "2", "3"]  # '2.0' and '2' are one class, sorted by value


def test_a_regression_has_float_targets_and_the_training_mean_as_baseline(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "x,price\n" + "".join(f"{i},{i * 1.5}\n" for i in range(20)))
    splits = load_splits(_cfg(path=path, label="price", validation_split=0.2), seed=0)
    assert splits.task == "regression" and splits.target_names == ["price"]
    assert splits.y_train.dtype == np.float32 and splits.y_train.shape == (16, 1)
    assert splits.target_mean == pytest.approx([splits.y_train.mean()])
    assert splits.baseline_name == "training mean"
    assert splits.baselines["validation"].shape == (4, 1)
    assert np.all(splits.baselines["validation"] == pytest.approx(splits.y_train.mean()))


# ---------------------------------------------------------------------------------------- broken files


BROKEN = {
    "quoting": (HEADER + '1,2,3,red\n4,"5"x,6,blue\n', r"{p}:3: malformed CSV"),
    "too few fields": (HEADER + "1,2,3,red\n4,5,blue\n", r"{p}:3:4: this row has 3 fields but the header \(line 1\) has 4: it ends before column 'name'"),
    "too many fields": (HEADER + "1,2,3,red\n4,5,6,7,blue\n", r"{p}:3:5: this row has 5 fields .* extra field 'blue'"),
    "word in a numeric column": (HEADER + "1,2,3,red\n4,5,x6,blue\n7,8,9,red\n", r"{p}:3:3: column 'b' holds 'x6', not a finite number"),
    "empty numeric cell": (HEADER + "1,2,3,red\n4,,6,blue\n", r"{p}:3:2: column 'g' is empty.*Fill it in or remove the row"),
    "NaN feature": (HEADER + "1,2,3,red\nnan,5,6,blue\n", r"{p}:3:1: column 'r' holds 'nan', not a finite number"),
    "inf feature": (HEADER + "1,2,3,red\n4,inf,6,blue\n", r"{p}:3:2: column 'g' holds 'inf'"),
    "NaN label": (HEADER + "1,2,3,red\n4,5,6,NaN\n", r"{p}:3:4: the label \(column 'name', `data.label`\) is 'NaN'"),
    "unknown-value label": (HEADER + "1,2,3,red\n4,5,6,?\n", r"{p}:3:4: the label \(column 'name', `data.label`\) is '\?'"),
    "word among number labels": (HEADER + "1,2,3,2.5\n4,5,6,abc\n7,8,9,4.5\n", r"{p}:3:4: column 'name' \(the label, `data.label`\) holds 'abc', not a finite number. Most labels are numbers"),
    "empty label": (HEADER + "1,2,3,red\n4,5,6,\n", r"{p}:3:4: the label \(column 'name', `data.label`\) is empty"),
    "decimal comma": ("r;g;b;name\n1;2;3;red\n4;5,5;6;blue\n", r"{p}:3:2: column 'g' holds '5,5'.*decimal separator"),
    "duplicate column": ("r,g,r,name\n1,2,3,red\n", r"{p}:1:3: column name 'r' appears twice"),
    "unnamed column": ("r,,b,name\n1,2,3,red\n", r"{p}:1:2: column 2 of the header has no name"),
    "header only": (HEADER, r"`data.path`: {p} has a header \(line 1\) but no data rows"),
    "empty file": ("", r"`data.path`: {p} is empty"),
    "missing label column": ("r,g,b,names\n1,2,3,red\n", r"{p}:1: `data.label` names column 'name'.*did you mean 'names'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_csv_names_file_line_and_column(tmp_path: Path, case: str) -> None:
    text, pattern = BROKEN[case]
    path = _write(tmp_path / "broken.csv", text)
    delimiter = ";" if case == "decimal comma" else ","
    with pytest.raises(DataError, match=pattern.format(p=re.escape(str(path)))) as err:
        load_splits(_cfg(path=path, delimiter=delimiter), seed=0)
    assert "\n" not in err.value.message  # one line


def test_a_bad_row_in_a_validation_file_is_named(tmp_path: Path) -> None:
    train = _csv(tmp_path / "train.csv", _table(10))
    valid = _write(tmp_path / "valid.csv", HEADER + "1,2,3,red\n\n4,5,?,blue\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(valid))}:4:3: column 'b' holds '\?'"):
        load_splits(_cfg(train=train, validation=valid), seed=0)


def test_undecodable_bytes_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"r,g,b,name\n1,2,3,red\n4,5,6,caf\xe9\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3:10: byte 0xe9 is not UTF-8"):
        load_splits(_cfg(path=path), seed=0)
    with pytest.raises(DataError, match=r"`data.path`: .*nowhere.csv not found"):
        load_splits(_cfg(path=tmp_path / "nowhere.csv"), seed=0)
    with pytest.raises(DataError, match=r"`data.test`: .*gone.csv not found"):
        load_splits(_cfg(train=_csv(tmp_path / "t.csv", _table(5)), test=tmp_path / "gone.csv"), seed=0)


def test_config_errors_for_the_file_keys(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", _table(10))
    with pytest.raises(ConfigError, match="both set"):
        load_splits(_cfg(path=path, train=path), seed=0)
    with pytest.raises(ConfigError, match="is required"):
        load_splits(_cfg(), seed=0)
    with pytest.raises(ConfigError, match="`data.test` goes with `data.train`"):
        load_splits(_cfg(path=path, test=path), seed=0)
    with pytest.raises(ConfigError, match="includes the label"):
        load_splits(_cfg(path=path, features=["r", "name"]), seed=0)


def test_loading_a_csv_never_imports_tensorflow(tmp_path: Path) -> None:
    path = _csv(tmp_path / "c.csv", _table(10))
    code = (
        "import sys\nfrom dltrain.config import CsvData\nfrom dltrain.data import load_splits\n"
        f"load_splits(CsvData(kind='csv', path={str(path)!r}, label='name', categorical_encoding='embedding'), 0)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_shipped_colors_config_loads(repo: Path) -> None:
    from dltrain.config import load_config

    cfg = load_config(repo / "configs" / "colors_mlp.yaml")
    assert cfg.model.kind == "dense" and list(cfg.model.units) == [50, 100, 50]
    assert cfg.optimizer.kind == "sgd" and cfg.optimizer.learning_rate == 0.01
    cfg_data = cfg.data.model_copy(update={"path": repo / cfg.data.path})
    splits = load_splits(cfg_data, cfg.seed)
    assert splits.class_names == ["blue", "green", "red"] and splits.num_outputs == 3
    assert sum(splits.sizes().values()) >= 100
    assert splits.x_train.min() >= 0 and splits.x_train.max() <= 255


# ------------------------------------------------------------------------------------ the model stem


def test_the_embed_stem_builds_trains_and_reloads(tmp_path: Path) -> None:
    import keras

    from dltrain.config import DenseModel
    from dltrain.models import build_model, with_outputs

    stem = {
        "embed": {"numeric": 2, "columns": [{"name": "c", "input_dim": 4}], "output_dim": 3},
        "normalize": {"mean": [10.0, -2.0], "std": [2.0, 4.0]},
    }
    model = build_model(
        DenseModel(kind="dense", units=[8]), input_shape=(3,), num_outputs=2, scale=1.0, stem=stem
    )
    model = with_outputs(model)
    x = np.array([[10, -2, 0], [12, 2, 3], [8, 6, 1]], dtype=np.float32)
    standardised = keras.Model(model.inputs, model.get_layer("standardize").output).predict(x, verbose=0)
    assert standardised.tolist() == [[0, 0], [1, 1], [-1, 2]]
    codes = keras.Model(model.inputs, model.get_layer("embedded_0").output).predict(x, verbose=0)
    table = model.get_layer("embed_0").embeddings.numpy()
    assert np.allclose(codes, table[[0, 3, 1]])
    model.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras", compile=False)  # built-in layers: no custom objects
    assert np.allclose(back.predict(x, verbose=0), model.predict(x, verbose=0))


# ------------------------------------------------------------------------------------- end to end (CLI)


def test_csv_fit_evaluate_and_lr_find_through_the_cli(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = ["size,w,h,shape"]
    for i in range(120):
        kind = ("square", "wide", "tall")[i % 3]
        w, h = rng.uniform(1, 5, 2)
        w, h = (w, w) if kind == "square" else ((w * 3, h) if kind == "wide" else (w, h * 3))
        lines.append(f"{('S', 'M', 'L')[rng.integers(3)]},{w:.3f},{h:.3f},{kind}")
    data = _write(tmp_path / "shapes.csv", "\n".join(lines) + "\n")
    cfg = {
        "name": "e2e_csv",
        "seed": 5,
        "data": {
            "kind": "csv", "path": str(data), "label": "shape", "categorical_encoding": "embedding",
            "embedding_dim": 2, "validation_split": 0.2, "test_split": 0.2, "batch_size": 16,
        },
        "model": {"kind": "dense", "units": [16]},
        "optimizer": {"kind": "adam", "learning_rate": 0.01},
        "train": {"epochs": 3},
    }  # fmt: skip
    config = _write(tmp_path / "c.yaml", yaml.safe_dump(cfg))
    proc = run_dltrain("fit", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    state = json.loads((run / "data" / "state.json").read_text())
    assert state["task"] == "classification" and state["class_names"] == ["square", "tall", "wide"]
    assert state["categories"] == {"size": ["L", "M", "S"]}
    assert state["columns"]["numeric"] == ["w", "h"] and state["statistics"]["computed_on"] == "train"
    assert state["stem"]["embed"]["columns"] == [{"name": "size", "input_dim": 4}]
    with open(run / "data" / "manifest.csv") as fh:
        manifest = list(csv.DictReader(fh))
    assert len(manifest) == 120 and {m["split"] for m in manifest} == {"train", "validation", "test"}
    assert sorted(int(m["item"].split()[1]) for m in manifest) == list(range(2, 122))

    proc = run_dltrain("evaluate", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert summary["examples"] == 24 and 0.0 <= summary["accuracy"] <= 1.0
    with open(run / "eval" / "test" / "top_losses.csv") as fh:
        assert next(csv.DictReader(fh))["item"].startswith("line ")  # rows named by their line

    proc = run_dltrain(
        "lr-find", str(config), "--runs-dir", str(tmp_path / "runs"), "--set", "lr_find.num_steps=20"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads((run_dir_from(proc.stdout) / "lr_find" / "suggestion.json").read_text())
    assert 1e-7 < found["lr"] < 10
