"""Runs made by an earlier dltrain (tests/fixtures/legacy, dltrain 0.1.0) stay usable: evaluate scores them,
``fit --resume`` trains them longer, or a command refuses them saying why. The fixtures are copied first: they
are never written."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, run_dltrain

LEGACY = REPO / "tests" / "fixtures" / "legacy" / "runs"
NAMES = ["digits", "colors", "images"]


@pytest.fixture
def legacy(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    copy = tmp_path / request.param
    shutil.copytree(LEGACY / request.param, copy)
    return copy


def test_the_fixtures_are_from_before_schema_versions() -> None:
    for name in NAMES:
        record = json.loads((LEGACY / name / "run.json").read_text())
        assert "schema_version" not in record and record["dltrain_version"] == "0.1.0"


@pytest.mark.parametrize("legacy", NAMES, indirect=True)
def test_evaluate_scores_a_run_made_by_an_earlier_dltrain(legacy: Path, tmp_path: Path) -> None:
    cwd = REPO
    if legacy.name == "images":
        # The image files as a copy or a fresh checkout has them: same bytes, new modification times.
        cwd = tmp_path / "elsewhere"
        folder = Path("tests/fixtures/legacy/fashion3")
        shutil.copytree(REPO / folder, cwd / folder, copy_function=shutil.copy)
    proc = run_dltrain("evaluate", str(legacy), cwd=cwd)
    saved_by = _keras_version_of(legacy / "model.keras")
    if _version_key(saved_by) > _version_key(_installed_keras()):
        # Python 3.10 gets an older Keras, which cannot read a newer Keras's files: refused, saying so.
        assert proc.returncode == 5 and f"saved by Keras {saved_by}" in proc.stderr, proc.stderr[-2000:]
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    scored = json.loads((legacy / "eval" / "test" / "metrics.json").read_text())
    record = json.loads((legacy / "run.json").read_text())
    assert scored["schema_version"] == 1
    assert scored["model"]["epoch"] == record["best"]["epoch"] and len(scored["model"]["sha256"]) == 64
    assert "matches_fit" not in scored["model"]  # an old run recorded no checksum to compare with
    assert scored["accuracy"] > 1 / len(record["data"]["class_names"])  # better than chance
    if legacy.name == "images":
        # a checkout does not keep the PNGs' modification times: the same files per the manifest are accepted
        assert "modification times changed" in proc.stderr


def _keras_version_of(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return str(json.loads(archive.read("metadata.json"))["keras_version"])


def _installed_keras() -> str:
    return importlib.metadata.version("keras")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


@pytest.mark.slow
@pytest.mark.parametrize("legacy", NAMES, indirect=True)
def test_an_earlier_dltrains_run_resumes_to_train_longer(legacy: Path) -> None:
    proc = run_dltrain("fit", str(legacy / "config.yaml"), "--set", "train.epochs=3", "--resume", str(legacy))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((legacy / "run.json").read_text())
    assert record["status"] == "finished" and record["schema_version"] == 1
    assert record["restarts"][-1]["from"]["epoch"] == 2  # its own checkpoint restored
    rows = (legacy / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2", "3"]
    assert record["exported"]["epoch"] == record["best"]["epoch"]


def test_a_run_from_a_newer_dltrain_is_refused_saying_so(tmp_path: Path) -> None:
    copy = tmp_path / "digits"
    shutil.copytree(LEGACY / "digits", copy)
    record = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**record, "schema_version": 99}))
    proc = run_dltrain("evaluate", str(copy))
    assert proc.returncode == 5 and "written by a newer dltrain" in proc.stderr
