"""``dltrain data inspect``: counts, ranges, sample grid and cross-split duplicates, without TensorFlow."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from tests.test_cli_light import _probe


def _digits_npz(tmp: Path, plant: bool) -> Path:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.images.astype(np.uint8), bunch.target
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:].copy(), y[1500:]
    if plant:  # a training image slipped into the test set
        x_test[7] = x_train[42]
    np.savez(tmp / "digits.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    cfg = {
        "name": "insp",
        "data": {"kind": "npz", "path": str(tmp / "digits.npz"), "validation_split": 0.1},
        "model": {"kind": "dense"},
    }
    (tmp / "insp.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "insp.yaml"


def _run_dir(out: str) -> Path:
    return Path(next(line for line in out.splitlines() if line.startswith("run: "))[5:])


def test_inspect_counts_and_finds_a_planted_cross_split_duplicate(tmp_path: Path) -> None:
    cfg = _digits_npz(tmp_path, plant=True)
    code, heavy, out, err = _probe("data", "inspect", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert (code, heavy) == (0, []), err
    assert "appear in more than one split" in out
    run = _run_dir(out)
    summary = json.loads((run / "inspect.json").read_text())
    assert summary["sizes"] == {"train": 1350, "validation": 150, "test": 297}
    assert summary["splits"]["train"]["inputs"]["max"] == 16.0
    assert sum(summary["splits"]["test"]["targets"].values()) == 297
    with open(run / "duplicates.csv") as fh:
        rows = list(csv.DictReader(fh))
    # Training image 42 lands in train or validation after the carve; either way it pairs with test #7.
    assert {r["split"] for r in rows} >= {"test"} and len({r["split"] for r in rows}) == 2
    assert any(r["split"] == "test" and r["index"] == "7" for r in rows)
    with open(run / "counts.csv") as fh:
        counts = list(csv.DictReader(fh))
    assert [c["class"] for c in counts] == [str(i) for i in range(10)]
    assert sum(int(c["train"]) for c in counts) == 1350
    assert (run / "samples.png").stat().st_size > 10_000

    code, _, _, err = _probe(
        "data", "inspect", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--fail-on-duplicates"
    )
    assert code == 3 and "duplicates.csv" in err


def test_inspect_of_clean_data_reports_no_duplicates(tmp_path: Path) -> None:
    cfg = _digits_npz(tmp_path, plant=False)
    code, heavy, out, err = _probe(
        "data", "inspect", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--fail-on-duplicates"
    )
    assert (code, heavy) == (0, []), err
    assert "no example appears in two splits" in out
