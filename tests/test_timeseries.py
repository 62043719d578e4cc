"""The ``timeseries_csv`` kind: chronological splits no window crosses, statistics from the training part
only, targets and the last-value baseline, bad series named by file:line:column, and one CLI run."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dltrain.config import TimeseriesCsvData
from dltrain.data import load_splits
from dltrain.errors import ConfigError, DataError
from tests.conftest import run_dir_from, run_dltrain


def _series(path: Path, n: int, extra: str = "") -> Path:
    """Columns: t (the row index, so an input reveals which rows it came from), a sine, a date string."""
    lines = ["t,wave,day" + extra]
    for i in range(n):
        lines.append(f"{i},{np.sin(i / 3):.6f},2024-01-{i % 28 + 1:02d}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _cfg(path: Path, **kw: Any) -> TimeseriesCsvData:
    base: dict[str, Any] = {
        "kind": "timeseries_csv",
        "path": path,
        "target": "wave",
        "columns": ["t", "wave"],
    }
    return TimeseriesCsvData(**{**base, **kw})


def test_chronological_parts_no_window_crosses_a_boundary(tmp_path: Path) -> None:
    path = _series(tmp_path / "s.csv", 100)
    splits = load_splits(_cfg(path, window=5, horizon=2, validation_split=0.2, test_split=0.2), seed=0)
    rows = {}
    for split in ("train", "validation", "test"):
        x, _ = splits.get(split)
        first = x[:, 0, 0].astype(int)  # column t of the window's first row
        # every window spans rows first .. first + window + horizon - 1 (inputs, then the predicted rows)
        assert np.array_equal(x[:, :, 0], first[:, None] + np.arange(5))
        rows[split] = (first.min(), first.max() + 5 + 2 - 1)
    # 100 rows: train 0-59, validation 60-79, test 80-99, and each window stays inside its part
    assert rows == {"train": (0, 59), "validation": (60, 79), "test": (80, 99)}
    assert rows["train"][1] < rows["validation"][0] <= rows["validation"][1] < rows["test"][0]
    assert splits.sizes() == {"train": 54, "validation": 14, "test": 14}
    assert splits.state["parts"] == {"train": [2, 61], "validation": [62, 81], "test": [82, 101]}


def test_targets_and_the_last_value_baseline(tmp_path: Path) -> None:
    path = _series(tmp_path / "s.csv", 60)
    wave = np.sin(np.arange(60) / 3).round(6)
    splits = load_splits(_cfg(path, window=4, horizon=3, stride=2, validation_split=0.0), seed=0)
    x, y = splits.get("train")
    starts = x[:, 0, 0].astype(int)
    assert np.array_equal(starts, np.arange(0, 51 - 7 + 1, 2))  # train rows 0-50, every 2nd start
    assert y.shape == (len(x), 3)
    assert np.allclose(y, wave[starts[:, None] + 4 + np.arange(3)], atol=1e-6)
    base = splits.baselines["test"]
    xt, yt = splits.get("test")
    assert base.shape == yt.shape
    assert np.allclose(base, xt[:, -1, 1:2].repeat(3, axis=1))  # the last observed value, repeated
    assert splits.baseline_name == "last value"
    assert splits.task == "regression" and splits.target_names == ["wave[t+1]", "wave[t+2]", "wave[t+3]"]
    assert splits.input_shape == (4, 2)


def test_statistics_come_from_the_training_part_only(tmp_path: Path) -> None:
    path = _series(tmp_path / "s.csv", 80)
    cfg = _cfg(path, window=5, validation_split=0.25, test_split=0.25)
    before = load_splits(cfg, seed=0)
    lines = path.read_text().splitlines()
    for i in range(41, 81):  # every row of the validation and test parts (rows 40-79, lines 42-81)
        t, _, day = lines[i].split(",")
        lines[i] = f"{t},{1e6 if i % 2 else -1e6},{day}"
    path.write_text("\n".join(lines) + "\n")
    after = load_splits(cfg, seed=0)
    assert np.abs(after.x_val).max() == 1e6  # the extremes are in the data, not in the statistics
    assert after.stem == before.stem
    train_rows = np.column_stack([np.arange(40), np.sin(np.arange(40) / 3).round(6)])
    assert after.stem["normalize"]["mean"] == pytest.approx(train_rows.mean(axis=0).tolist())
    assert after.stem["normalize"]["std"] == pytest.approx(train_rows.std(axis=0).tolist())
    assert (
        after.state["statistics"]["lines"] == [2, 41] and after.state["statistics"]["computed_on"] == "train"
    )
    assert after.target_mean == pytest.approx(before.target_mean)  # target scaling: training windows only


def test_default_columns_skip_words_and_the_time_column(tmp_path: Path) -> None:
    path = _series(tmp_path / "s.csv", 40)
    splits = load_splits(_cfg(path, columns=None, window=3, time_column="t"), seed=0)
    assert splits.state["columns"] == {"inputs": ["wave"], "target": "wave", "time": "t"}
    assert splits.input_shape == (3, 1)
    assert splits.manifest["train"][0] == "line 5 (3)"  # the first predicted row, and its time


def test_validation_and_test_parts_can_be_left_out(tmp_path: Path) -> None:
    path = _series(tmp_path / "s.csv", 30)
    splits = load_splits(_cfg(path, window=3, validation_split=0.0, test_split=0.0), seed=0)
    assert splits.sizes() == {"train": 27, "validation": 0, "test": 0}


BROKEN = {
    "word": ("t,wave\n0,1.0\n1,abc\n2,3.0\n", {}, r"{p}:3:2: column 'wave' holds 'abc', not a finite number"),
    "empty": ("t,wave\n0,1.0\n1,\n2,3.0\n", {}, r"{p}:3:2: column 'wave' is empty"),
    "nan": ("t,wave\n0,1.0\n1,NaN\n2,3.0\n", {}, r"{p}:3:2: column 'wave' holds 'NaN'"),
    "fields": ("t,wave\n0,1.0\n1\n2,3.0\n", {}, r"{p}:3:2: this row has 1 fields but the header"),
    "time backwards": (
        "t,wave\n0,1.0\n2,2.0\n1,3.0\n", {"time_column": "t"}, r"{p}:4:1: time '1' .* does not come after '2' on line 3"
    ),
    "dates backwards": (
        "day,wave\n2024-01-01,1\n2024-01-03,2\n2024-01-02,3\n", {"time_column": "day"}, r"{p}:4:1: time '2024-01-02'"
    ),
    "target": ("t,waves\n0,1.0\n", {}, r"{p}:1: `data.target` names column 'wave'.*did you mean 'waves'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_series_names_file_line_and_column(tmp_path: Path, case: str) -> None:
    text, extra, pattern = BROKEN[case]
    path = tmp_path / "s.csv"
    path.write_text(text)
    cfg = _cfg(path, columns=None, window=1, validation_split=0.0, test_split=0.0, **extra)
    with pytest.raises(DataError, match=pattern.format(p=re.escape(str(path)))):
        load_splits(cfg, seed=0)


def test_parts_too_short_for_a_window_and_a_classification_task(tmp_path: Path) -> None:
    path = _series(tmp_path / "s.csv", 50)
    with pytest.raises(
        DataError, match=r"the validation part of the series has 5 rows but one window needs .* 13"
    ):
        load_splits(_cfg(path, window=12, validation_split=0.1), seed=0)
    with pytest.raises(ConfigError, match="timeseries_csv forecasts numbers"):
        load_splits(_cfg(path, task="classification"), seed=0)


def test_the_shipped_sunspots_data_and_config(repo: Path) -> None:
    from dltrain.config import load_config

    cfg = load_config(repo / "configs" / "sunspots_gru.yaml")
    assert cfg.model.kind == "rnn" and cfg.model.cell == "gru"
    splits = load_splits(cfg.data.model_copy(update={"path": repo / cfg.data.path}), cfg.seed)
    assert sum(splits.sizes().values()) > 200
    assert splits.state["parts"]["test"][1] - splits.state["parts"]["train"][0] == 308  # 309 years, 1700-2008
    assert splits.manifest["test"][-1].endswith("(2008)")


def test_timeseries_fit_evaluate_and_lr_find_through_the_cli(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 240
    level = np.sin(np.arange(n) * 2 * np.pi / 24) * 10 + 20 + rng.normal(0, 0.5, n)
    other = np.cos(np.arange(n) * 2 * np.pi / 24)
    lines = ["date,level,other"] + [f"2020-01-01T{i:04d},{level[i]:.3f},{other[i]:.3f}" for i in range(n)]
    data = tmp_path / "series.csv"
    data.write_text("\n".join(lines) + "\n")
    cfg = {
        "name": "e2e_ts",
        "seed": 3,
        "data": {
            "kind": "timeseries_csv", "path": str(data), "target": "level", "time_column": "date",
            "window": 12, "horizon": 2, "validation_split": 0.2, "test_split": 0.2, "batch_size": 16,
        },
        "model": {"kind": "rnn", "cell": "gru", "units": [8]},
        "optimizer": {"kind": "adam", "learning_rate": 0.01},
        "train": {"epochs": 2, "monitor": "val_mae"},
    }  # fmt: skip
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = run_dltrain("fit", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and float(rows[-1]["val_mae"]) > 0
    state = json.loads((run / "data" / "state.json").read_text())
    assert state["task"] == "regression" and state["window"] == 12 and state["horizon"] == 2
    assert state["columns"]["inputs"] == ["level", "other"]
    assert state["statistics"]["computed_on"] == "train" and state["statistics"]["lines"] == [2, 145]
    assert state["targets"]["names"] == ["level[t+1]", "level[t+2]"]
    with open(run / "data" / "manifest.csv") as fh:
        manifest = list(csv.DictReader(fh))
    assert [m["split"] for m in manifest] == sorted(
        (m["split"] for m in manifest), key=["train", "validation", "test"].index
    )
    assert manifest[0]["item"] == "line 14 (2020-01-01T0012)"

    proc = run_dltrain("evaluate", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert summary["examples"] == 48 - 13 and summary["mae"] > 0 and summary["rmse"] >= summary["mae"]
    # The naive forecast evaluate compares against (dltrain.report.evaluate reports it as "baseline").
    assert summary["baseline"]["name"] == "last value" and summary["baseline"]["mae"] > 0
    assert "last value" in proc.stdout

    proc = run_dltrain(
        "lr-find", str(config), "--runs-dir", str(tmp_path / "runs"), "--set", "lr_find.num_steps=20"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads((run_dir_from(proc.stdout) / "lr_find" / "suggestion.json").read_text())
    assert 1e-7 < found["lr"] < 10
