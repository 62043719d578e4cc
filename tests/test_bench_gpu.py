"""bench/gpu.sh's plumbing on the CPU (--dry-run): every runner and precision runs and lands in the report.

The GPU numbers themselves come from users' machines; here only the plumbing is checked (real training of
2,048 Fashion-MNIST images, 2 epochs per run, seven fresh processes: about two minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FASHION = Path("/usr/share/datasets/fashion-mnist")

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (no download in tests)"
)
def test_gpu_bench_dry_run_runs_every_runner_and_writes_the_report(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the bench extra (pip install -e '.[bench]') brings PyTorch")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    report = json.loads((tmp_path / "gpu-results.json").read_text())
    assert report["dry_run"] is True and report["images"] == 2048
    seen = {(r["runner"], r["variant"]) for r in report["runs"]}
    assert seen == {
        ("dltrain", "float32"), ("dltrain", "mixed bfloat16"), ("dltrain", "mixed bfloat16 + XLA"),
        ("keras", "float32"), ("keras", "mixed bfloat16"), ("torch", "float32"), ("torch", "amp bfloat16"),
    }  # fmt: skip
    for run in report["runs"]:
        assert run["returncode"] == 0 and len(run["epochs"]) == 2 and run["images_per_wall_second"] > 0, run
    text = (tmp_path / "GPU-RESULTS.md").read_text()
    assert "dry run" in text and text.count("\n| ") == 8  # header + seven runs
    # dltrain's mixed runs really ran in bfloat16 (the policy reached the run)
    record = json.loads((tmp_path / "dltrain-mixed_bfloat16" / "run.json").read_text())
    assert record["runtime"]["precision"] == "mixed_bfloat16"
