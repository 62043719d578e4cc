"""`dltrain runs ls` / `runs compare` on real digits runs: a finished one, an evaluated one, one really killed
(SIGKILL through DLTRAIN_FAULT, so its run.json still says running), and foreign / half-written folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_dir_from, run_dltrain

FAST = ["--set", "train.epochs=2", "--set", "data.batch_size=64"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    config = str(REPO / "configs" / "digits_dense.yaml")
    made: dict[str, Path] = {}
    for label, width in (("small", 8), ("wide", 32)):
        out = run_dltrain("fit", config, *FAST, "--set", f"model.units=[{width}]", "--runs-dir", str(root))
        assert out.returncode == 0, out.stderr
        made[label] = run_dir_from(out.stdout)
    out = run_dltrain("evaluate", str(made["wide"]))
    assert out.returncode == 0, out.stderr
    killed = run_dltrain(
        "fit",
        config,
        *FAST,
        "--set",
        "name=killed",
        "--runs-dir",
        str(root),
        env={"DLTRAIN_FAULT": "kill@epoch=2,step=3"},
    )
    assert killed.returncode == -9, killed.stderr
    made["killed"] = next(root.glob("killed-*"))
    inspected = run_dltrain("data", "inspect", config, "--runs-dir", str(root))
    assert inspected.returncode == 0, inspected.stderr
    made["inspect"] = next(root.glob("*-inspect-*"))
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a run\n")
    (root / "half").mkdir()
    (root / "half" / "config.yaml").write_text("name: half\n")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "run.json").write_text('{"status": "finis')
    made["root"] = root
    return made


def _ls(root: Path, *args: str) -> list[dict]:
    out = run_dltrain("runs", "ls", str(root), "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_ls_rows_statuses_and_scores(runs: dict[str, Path]) -> None:
    rows = {row["name"]: row for row in _ls(runs["root"])}
    wide = rows[runs["wide"].name]
    assert wide["status"] == "finished" and wide["kind"] == "fit"
    assert (wide["data"], wide["model"], wide["epochs"]) == ("digits", "dense", 2)
    run_json = json.loads((runs["wide"] / "run.json").read_text())
    assert wide["best_value"] == pytest.approx(run_json["best"]["value"])
    test = json.loads((runs["wide"] / "eval" / "test" / "metrics.json").read_text())
    assert wide["test_metric"] == "accuracy" and wide["test_value"] == pytest.approx(test["accuracy"])
    assert rows[runs["small"].name]["test_value"] is None
    assert wide["cpu_seconds"] > 0
    # The killed run's run.json says running; its lock's owner is gone, so it is listed dead.
    assert json.loads((runs["killed"] / "run.json").read_text())["status"] == "running"
    killed = rows[runs["killed"].name]
    assert killed["status"] == "dead" and "--resume" in killed["note"]
    assert killed["epochs"] == 1
    assert rows["notes"]["kind"] == "foreign"
    assert runs["inspect"].name not in rows  # lr-find / inspect / sweep folders: only with --all
    shown = {row["name"]: row for row in _ls(runs["root"], "--all")}
    assert shown[runs["inspect"].name]["kind"] == "inspect"
    assert rows["half"]["kind"] == "incomplete"
    assert rows["corrupt"]["kind"] == "incomplete" and "corrupt" in rows["corrupt"]["note"]


def test_ls_table_sort_and_filter(runs: dict[str, Path]) -> None:
    rows = _ls(runs["root"], "--filter", "status=finished", "--sort", "-best_value")
    assert [row["name"] for row in rows] == sorted(
        [runs["small"].name, runs["wide"].name],
        key=lambda n: -json.loads((runs["root"] / n / "run.json").read_text())["best"]["value"],
    )
    assert [r["name"] for r in _ls(runs["root"], "--filter", "test>0")] == [runs["wide"].name]
    out = run_dltrain("runs", "ls", str(runs["root"]))
    assert out.returncode == 0, out.stderr
    assert runs["wide"].name in out.stdout and "dead" in out.stdout and "foreign" in out.stdout
    assert "also 1 inspect folder(s)" in out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--filter", "colour=red"], "--filter"),
        (["--sort", "nope"], "--sort"),
    ],
)
def test_ls_bad_options_exit_2(runs: dict[str, Path], args: list[str], needle: str) -> None:
    out = run_dltrain("runs", "ls", str(runs["root"]), *args)
    assert out.returncode == 2 and needle in out.stderr


def test_ls_missing_folder_exit_5(tmp_path: Path) -> None:
    out = run_dltrain("runs", "ls", str(tmp_path / "nope"))
    assert out.returncode == 5 and "no such folder" in out.stderr


def test_compare_diff_scores_and_plot(runs: dict[str, Path], tmp_path: Path) -> None:
    png = tmp_path / "cmp.png"
    out = run_dltrain("runs", "compare", str(runs["small"]), str(runs["wide"]), "--json", "-o", str(png))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["config_differences"] == {"model.units": [[8], [32]]}
    assert [r["name"] for r in data["runs"]] == [runs["small"].name, runs["wide"].name]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Without -o: compare.png in the current folder, never overwriting an earlier one.
    (tmp_path / "compare.png").write_bytes(b"mine")
    out = run_dltrain("runs", "compare", str(runs["small"]), str(runs["killed"]), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "compare.png").read_bytes() == b"mine"
    assert (tmp_path / "compare-2.png").exists() and "compare-2.png" in out.stdout
    assert "model.units" in out.stdout and "name" in out.stdout


def test_compare_refuses_foreign(runs: dict[str, Path]) -> None:
    out = run_dltrain("runs", "compare", str(runs["small"]), str(runs["root"] / "notes"))
    assert out.returncode == 5 and "notes" in out.stderr


def test_runs_ls_never_imports_tensorflow(runs: dict[str, Path]) -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom dltrain.cli import app\n"
        f"r = CliRunner().invoke(app, ['runs', 'ls', {str(runs['root'])!r}, '--json'])\n"
        "assert r.exit_code == 0, r.output\nassert 'tensorflow' not in sys.modules\nprint('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
