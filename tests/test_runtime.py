"""Strategy options through the CLI: named devices, LR scaling over replicas, a missing TPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_dir_from, run_dltrain


def _config(path: Path, runtime: dict, optimizer: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "rt",
        "data": {"kind": "digits", "batch_size": 32},
        "model": {"kind": "dense", "units": [16]},
        "optimizer": optimizer or {"kind": "adam", "learning_rate": 1e-3},
        "train": {"epochs": 1},
        "runtime": runtime,
    }))  # fmt: skip
    return path


def test_mirrored_on_named_devices_with_linear_lr_scaling(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path / "c.yaml",
        {"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]},
        {"kind": "adam", "learning_rate": 1e-3, "lr_scaling": "linear"},
    )
    proc = run_dltrain(
        "fit", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"DLTRAIN_CPU_DEVICES": "2"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run_dir_from(proc.stdout) / "run.json").read_text())
    assert record["runtime"]["replicas"] == 2 and len(record["runtime"]["devices"]) == 2
    lr = record["learning_rate"]
    assert lr["scaling"] == "linear" and lr["configured"] == 1e-3 and abs(lr["value"] - 2e-3) < 1e-12


def test_unknown_device_lists_what_the_machine_has(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "c.yaml", {"strategy": "mirrored", "devices": ["/gpu:3"]})
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "'/gpu:3'" in proc.stderr and "Available:" in proc.stderr and "/cpu:0" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_tpu_strategy_without_a_tpu_is_a_clear_config_error(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "c.yaml", {"strategy": "tpu"})
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "no TPU was found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_mixed_precision_switches_train_and_record_the_policy(tmp_path: Path) -> None:
    # float16 goes through loss scaling (LossScaleOptimizer); bfloat16 needs none. Both run on this CPU.
    for setting, policy in (("float16", "mixed_float16"), ("bfloat16", "mixed_bfloat16")):
        cfg = _config(
            tmp_path / f"{setting}.yaml",
            {"mixed_precision": setting},
            {"kind": "adam", "learning_rate": 3e-3},
        )
        data = yaml.safe_load(cfg.read_text())
        data["train"]["epochs"] = 3
        cfg.write_text(yaml.safe_dump(data))
        proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / setting))
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = run_dir_from(proc.stdout)
        record = json.loads((run / "run.json").read_text())
        assert record["runtime"]["precision"] == policy
        assert record["best"]["row"]["val_accuracy"] > 0.5  # chance is 0.1


def test_cpu_bf16_flags_are_read_from_the_flags_line(tmp_path: Path) -> None:
    from dltrain.train.runtime import cpu_bf16_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\nbugs\t: none\n")
    assert cpu_bf16_flags(info) == ["amx_bf16", "avx512_bf16"]
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_bf16_flags(info) == []
    assert cpu_bf16_flags(tmp_path / "missing") == []  # not Linux: nothing known, float32


def test_auto_keeps_recurrent_models_in_float32_on_a_bfloat16_cpu(tmp_path: Path) -> None:
    import tensorflow as tf

    from dltrain.train.runtime import auto_precision

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("auto decides by the GPU here")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16\n")
    assert auto_precision("cnn", info)[0] == "bfloat16"
    setting, reason = auto_precision("rnn", info)
    assert setting == "off" and "recurrent" in reason and "avx512_bf16" in reason
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert auto_precision("cnn", info)[0] == "off" and auto_precision("rnn", info)[0] == "off"


def test_auto_precision_of_a_recurrent_run_is_float32_and_pinned(tmp_path: Path) -> None:
    from dltrain.train.runtime import cpu_bf16_flags

    cfg = _config(tmp_path / "c.yaml", {"mixed_precision": "auto"})
    data = yaml.safe_load(cfg.read_text())
    data["model"] = {"kind": "rnn", "cell": "gru", "units": [8]}
    cfg.write_text(yaml.safe_dump(data))
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    runtime = json.loads((run / "run.json").read_text())["runtime"]
    if not runtime["devices"][0].endswith("CPU:0"):
        pytest.skip("trained on a GPU")
    assert runtime["precision"] == "float32"
    assert yaml.safe_load((run / "config.yaml").read_text())["runtime"]["mixed_precision"] == "off"
    if cpu_bf16_flags():
        assert "recurrent" in runtime["precision_reason"]


def test_auto_precision_is_recorded_pinned_in_config_and_exported_in_float32(tmp_path: Path) -> None:
    import keras

    from dltrain.train.runtime import SETTINGS, cpu_bf16_flags

    cfg = _config(tmp_path / "c.yaml", {"mixed_precision": "auto"})
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    runtime = json.loads((run / "run.json").read_text())["runtime"]
    pinned = yaml.safe_load((run / "config.yaml").read_text())["runtime"]["mixed_precision"]
    assert pinned == SETTINGS[runtime["precision"]]  # the resolved value, never "auto", so --resume reuses it
    assert runtime["precision_reason"].startswith("auto: ")
    if cpu_bf16_flags() and runtime["devices"][0].endswith("CPU:0"):
        assert pinned == "bfloat16" and "native bfloat16" in runtime["precision_reason"]
    model = keras.models.load_model(run / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
