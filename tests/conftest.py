"""Shared helpers: run the installed ``dltrain`` in a subprocess, as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _reset_policy() -> None:
    keras = sys.modules.get("keras")  # never imported here: light tests stay without TensorFlow
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True)
def _float32_policy() -> Iterator[None]:
    """Each test runs under Keras's default float32 policy: an in-process fit sets the global policy
    (bfloat16 under `mixed_precision: auto` on a CPU with native bf16), which would leak into the next test."""
    _reset_policy()
    yield
    _reset_policy()


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The image-check verdict cache (dltrain.data.images) in a folder of this session, not ~/.cache."""
    os.environ.setdefault("DLTRAIN_CACHE_DIR", str(tmp_path_factory.mktemp("dltrain-cache")))


def dltrain_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("dltrain")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("dltrain")
    return [found] if found else [sys.executable, "-m", "dltrain"]


def run_dltrain(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "DLTRAIN_FAULT")}
    full_env = {**base, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [*dltrain_cmd(), *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_dir_from(stdout: str) -> Path:
    for line in stdout.splitlines():
        if line.startswith("run: "):
            return Path(line[len("run: ") :].strip())
    raise AssertionError(f"no 'run: ' line in output:\n{stdout}")


@pytest.fixture
def repo() -> Path:
    return REPO


def keras_version() -> tuple[int, ...]:
    """The installed Keras as a tuple (Python 3.10 gets Keras 3.12; 3.11+ the newest)."""
    import importlib.metadata

    return tuple(int(part) for part in importlib.metadata.version("keras").split(".")[:3])


# The runs in tests/fixtures/legacy were saved by Keras 3.15; an older Keras cannot read them (refused with
# the reason: tests/test_legacy_runs.py checks that). Tests that need to load them skip there.
needs_fixture_keras = pytest.mark.skipif(
    keras_version() < (3, 15), reason="the fixture runs were saved by Keras 3.15; this Keras cannot read them"
)
# model.export(format="litert") arrived in Keras 3.13.
needs_litert_keras = pytest.mark.skipif(keras_version() < (3, 13), reason="litert export needs Keras 3.13+")
