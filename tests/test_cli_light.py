"""`dltrain --help`, `config ...` and config errors never import TensorFlow or Keras (they take seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, run_dltrain

# Runs the app in-process in a fresh interpreter, then reports its exit code and which heavy modules it loaded.
PROBE = textwrap.dedent(
    """
    import sys
    from dltrain.cli import app
    try:
        code = app(sys.argv[1:], standalone_mode=False)  # returns the code of a typer.Exit
    except SystemExit as exc:
        code = exc.code
    code = 0 if code is None else code
    heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
    print("\\nPROBE", code, ",".join(heavy) or "-")
    """
)


def _probe(*args: str) -> tuple[int, list[str], str, str]:
    """(exit code, heavy modules loaded, stdout before the probe line, stderr) of ``dltrain ARGS``."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    out, _, last = proc.stdout.rpartition("\nPROBE ")
    assert last, f"the probe did not finish (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    code, heavy = last.split()
    return int(code), ([] if heavy == "-" else heavy.split(",")), out, proc.stderr


def test_importing_the_cli_loads_no_tensorflow() -> None:
    code = "import sys, dltrain.cli; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_help_loads_no_tensorflow() -> None:
    code, heavy, out, _ = _probe("--help")
    assert (code, heavy) == (0, [])
    for command in ("fit", "lr-find", "evaluate", "config"):
        assert command in out


def test_config_show_loads_no_tensorflow() -> None:
    code, heavy, out, err = _probe("config", "show", "configs/digits_cnn.yaml", "--set", "train.epochs=3")
    assert (code, heavy) == (0, []), err
    assert "name: digits_cnn" in out and "epochs: 3" in out


def test_config_schema_loads_no_tensorflow() -> None:
    code, heavy, out, err = _probe("config", "schema")
    assert (code, heavy) == (0, []), err
    assert json.loads(out)["title"] == "dltrain experiment config"


@pytest.mark.parametrize("command", ["fit", "lr-find"])
def test_a_config_error_exits_2_without_tensorflow(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndata: {kind: digits}\nmodel: {kind: dense, unitz: 3}\n")
    runs = tmp_path / "runs"
    code, heavy, _, err = _probe(command, str(bad), "--runs-dir", str(runs))
    assert (code, heavy) == (2, [])
    assert "unknown key `model.unitz`" in err
    assert not runs.exists()


def test_a_yaml_error_in_fit_exits_2_without_tensorflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndata: {kind: digits\n")
    code, heavy, _, err = _probe("fit", str(bad), "--runs-dir", str(tmp_path / "runs"))
    assert (code, heavy) == (2, [])
    assert f"{bad}:" in err and "YAML syntax error" in err


@pytest.mark.parametrize("command", ["fit", "lr-find"])
def test_a_data_error_exits_3_without_tensorflow(tmp_path: Path, command: str) -> None:
    config = tmp_path / "c.yaml"
    missing = tmp_path / "nope.npz"
    config.write_text(f"name: t\ndata: {{kind: npz, path: {missing}}}\nmodel: {{kind: dense}}\n")
    code, heavy, _, err = _probe(command, str(config), "--runs-dir", str(tmp_path / "runs"))
    assert code == 3 and heavy == []
    assert "nope.npz" in err
    assert not (tmp_path / "runs").exists()


def test_installed_entry_point_help() -> None:
    proc = run_dltrain("--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in ("fit", "lr-find", "evaluate", "config"):
        assert command in proc.stdout


def test_installed_entry_point_version() -> None:
    from dltrain import __version__

    proc = run_dltrain("--version", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"dltrain {__version__}"


def test_installed_entry_point_config_error_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nepoch: 3\ndata: {kind: digits}\nmodel: {kind: dense}\n")
    proc = run_dltrain("config", "show", str(bad), timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""  # errors go to stderr; stdout is for results
    assert f"{bad}:2: unknown key `epoch`; did you mean `train.epochs`?" in proc.stderr
