"""`dltrain --help`, `config ...` and config errors never import TensorFlow (it takes seconds)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, run_dltrain

PROBE = textwrap.dedent(
    """
    import sys
    from dltrain.cli import app
    try:
        returned = app(sys.argv[1:], standalone_mode=False)  # click returns the code of a typer.Exit
        code = returned or 0
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:
        code = getattr(exc, "exit_code", repr(exc))
    heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
    print("RESULT", code, ",".join(heavy) or "-")
    """
)


def _probe(*args: str) -> tuple[str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    _, code, heavy = line.split(" ")
    return code, heavy


def test_importing_the_cli_loads_no_tensorflow() -> None:
    code = "import sys, dltrain.cli; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "args",
    [["--help"], ["config", "show", "configs/digits_cnn.yaml"], ["config", "schema"], ["fit", "--help"]],
    ids=["help", "config-show", "config-schema", "fit-help"],
)
def test_light_commands_never_import_tensorflow(args: list[str]) -> None:
    code, heavy = _probe(*args)
    assert code in ("0", "None"), code
    assert heavy == "-"


def test_a_config_error_in_fit_exits_2_without_tensorflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndata: {kind: digits}\nmodel: {kind: dense, unitz: 3}\n")
    code, heavy = _probe("fit", str(bad), "--runs-dir", str(tmp_path / "runs"))
    assert code == "2" and heavy == "-"


def test_installed_entry_point() -> None:
    proc = run_dltrain("--help")
    assert proc.returncode == 0
    for command in ("fit", "lr-find", "evaluate", "config"):
        assert command in proc.stdout
    version = run_dltrain("--version")
    assert version.returncode == 0 and version.stdout.startswith("dltrain ")
