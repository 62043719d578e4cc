"""End to end through the installed CLI on real data (scikit-learn's bundled 8x8 digits)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import run_dir_from, run_dltrain

RUN_FILES = [
    "config.yaml", "run.json", "metrics.csv", "model.keras", "events", "checkpoints",
    "checkpoints/checkpoint", "checkpoints/best/checkpoint", "plots/learning_curves.png",
]  # fmt: skip


def _write_config(path: Path, model: dict, **extra: object) -> Path:
    cfg = {
        "name": f"e2e_{model['kind']}",
        "seed": 7,
        "data": {"kind": "digits", "batch_size": 32, "validation_split": 0.15},
        "model": model,
        "optimizer": {"kind": "adam", "learning_rate": 3e-3},
        "schedule": {"kind": "one_cycle"},
        "train": {"epochs": 2},
    }
    cfg.update(extra)  # type: ignore[arg-type]
    path.write_text(yaml.safe_dump(cfg))
    return path


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cnn")
    cfg = _write_config(
        tmp / "cnn.yaml",
        {"kind": "cnn", "filters": [16, 32], "batch_norm": True, "dense": [32]},
        train={"epochs": 4},
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir_from(proc.stdout)


def test_fit_writes_the_run_directory_contract(cnn_run: Path) -> None:
    for name in RUN_FILES:
        assert (cnn_run / name).exists(), name
    record = json.loads((cnn_run / "run.json").read_text())
    assert record["status"] == "finished"
    assert record["command"] == "fit"
    assert record["seed"] == 7
    assert record["versions"]["tensorflow"].startswith("2.")
    assert record["versions"]["keras"].startswith("3.")
    rt = record["runtime"]
    assert rt["strategy"] == "default" and rt["replicas"] == 1
    assert rt["global_batch_size"] == 32 and rt["per_replica_batch_size"] == 32
    assert "no GPU" in rt["reason"]
    assert record["model"]["parameters"] > 1000
    assert record["wall_seconds"] > 0 and record["cpu_seconds"] > 0
    assert set(record["data"]["fingerprints"]) == {"train", "validation", "test"}
    resolved = yaml.safe_load((cnn_run / "config.yaml").read_text())
    assert (
        resolved["train"]["epochs"] == 4 and resolved["runtime"]["strategy"] == "auto"
    )  # defaults filled in
    assert not (cnn_run / ".lock").exists()


def test_metrics_have_one_row_per_epoch_and_learn(cnn_run: Path) -> None:
    rows = _metrics(cnn_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r["val_loss"])) for r in rows)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    # one_cycle: the LR at the end of the run is far below the peak
    assert float(rows[-1]["learning_rate"]) < 1e-4 < float(rows[0]["learning_rate"])
    assert max(float(r["val_accuracy"]) for r in rows) > 0.8  # chance is 0.1


def test_evaluate_reproduces_fit_validation_accuracy(cnn_run: Path) -> None:
    record = json.loads((cnn_run / "run.json").read_text())
    best = record["best"]
    proc = run_dltrain("evaluate", str(cnn_run), "--split", "validation")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads((cnn_run / "eval" / "validation" / "metrics.json").read_text())
    if record["runtime"]["precision"] == "float32":
        assert got["accuracy"] == pytest.approx(best["row"]["val_accuracy"], abs=1e-9)
        assert got["loss"] == pytest.approx(best["row"]["val_loss"], rel=1e-3)
    else:  # fit validated in mixed precision (auto on a bf16 CPU); model.keras is float32: rounding apart
        one_example = 1 / record["data"]["sizes"]["validation"]
        assert got["accuracy"] == pytest.approx(best["row"]["val_accuracy"], abs=one_example + 1e-9)
        assert got["loss"] == pytest.approx(best["row"]["val_loss"], rel=1e-2)


def test_evaluate_test_split_writes_every_report(cnn_run: Path) -> None:
    proc = run_dltrain("evaluate", str(cnn_run), "--top-k", "8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = cnn_run / "eval" / "test"
    for name in (
        "metrics.json",
        "per_class.csv",
        "confusion_matrix.csv",
        "confusion_matrix.png",
        "top_losses.csv",
        "top_losses.png",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["examples"] == 359
    assert metrics["accuracy"] > 0.8
    with open(out / "confusion_matrix.csv") as fh:
        rows = list(csv.reader(fh))
    cm = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert cm.shape == (10, 10) and cm.sum() == 359
    assert np.trace(cm) / cm.sum() == pytest.approx(metrics["accuracy"])
    with open(out / "top_losses.csv") as fh:
        top = list(csv.DictReader(fh))
    assert len(top) == 8
    losses = [float(t["loss"]) for t in top]
    assert losses == sorted(losses, reverse=True)
    assert "accuracy" in proc.stdout and "per class" in proc.stdout


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "dense", "units": [64], "dropout": 0.1},
        {"kind": "rnn", "cell": "gru", "units": [32], "bidirectional": True},
    ],
    ids=["dense", "rnn"],
)
def test_fit_dense_and_rnn_learn_far_above_chance(tmp_path: Path, model: dict) -> None:
    cfg = _write_config(tmp_path / "c.yaml", model, train={"epochs": 3})
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    rows = _metrics(run)
    assert len(rows) == 3
    assert float(rows[-1]["val_accuracy"]) > 0.6, rows[-1]  # chance is 0.1
    assert (run / "model.keras").is_file()


def test_lr_find_suggests_a_rate_inside_the_sweep(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "c.yaml", {"kind": "dense", "units": [64]})
    proc = run_dltrain("lr-find", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    assert "lrfind" in run.name
    suggestion = json.loads((run / "lr_find" / "suggestion.json").read_text())
    assert suggestion["rule"] == "valley"
    assert 1e-7 < suggestion["lr"] < 10
    with open(run / "lr_find" / "steps.csv") as fh:
        steps = list(csv.DictReader(fh))
    lrs = [float(s["lr"]) for s in steps]
    assert len(steps) >= 20 and lrs == sorted(lrs)
    assert lrs[0] == pytest.approx(1e-7)
    assert min(lrs) <= suggestion["lr"] <= max(lrs)
    assert (run / "lr_find" / "lr_find.png").stat().st_size > 5000
    assert f"{suggestion['lr']:.3g}" in proc.stdout
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_fit_with_auto_learning_rate_records_the_found_value(tmp_path: Path) -> None:
    cfg = _write_config(
        tmp_path / "c.yaml",
        {"kind": "dense", "units": [32]},
        optimizer={"kind": "adam", "learning_rate": "auto"},
        train={"epochs": 1},
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    record = json.loads((run / "run.json").read_text())
    found = json.loads((run / "lr_find" / "suggestion.json").read_text())["lr"]
    assert record["learning_rate"] == {"value": found, "source": "lr-find", "rule": "valley"}
    text = (run / "config.yaml").read_text()
    assert "found by lr-find" in text
    assert yaml.safe_load(text)["optimizer"]["learning_rate"] == pytest.approx(found)
    # one_cycle: the found value is the peak of the schedule
    assert float(_metrics(run)[0]["learning_rate"]) <= found * 1.0001


def test_data_error_exits_3_before_a_run_directory_exists(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "missing",
                "data": {"kind": "npz", "path": str(tmp_path / "nope.npz")},
                "model": {"kind": "dense"},
            }
        )
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "data.path" in proc.stderr and "nope.npz" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_batch_that_does_not_divide_over_replicas_is_a_config_error(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "c.yaml", {"kind": "dense"}, runtime={"strategy": "mirrored"})
    cfg_data = yaml.safe_load(cfg.read_text())
    cfg_data["data"]["batch_size"] = 33
    cfg.write_text(yaml.safe_dump(cfg_data))
    proc = run_dltrain(
        "fit", str(cfg), "--runs-dir", str(tmp_path / "runs"), env={"DLTRAIN_CPU_DEVICES": "2"}
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.batch_size" in proc.stderr and "multiple of 2" in proc.stderr


def test_evaluate_errors_name_the_problem(tmp_path: Path, cnn_run: Path) -> None:
    proc = run_dltrain("evaluate", str(tmp_path / "no-such-run"))
    assert proc.returncode == 5 and "no such run directory" in proc.stderr
    # a run whose model was never written
    broken = tmp_path / "copy"
    broken.mkdir()
    for name in ("config.yaml", "run.json"):
        (broken / name).write_bytes((cnn_run / name).read_bytes())
    proc = run_dltrain("evaluate", str(broken))
    assert proc.returncode == 5 and "no model" in proc.stderr, proc.stderr[-2000:]
    # a corrupt model file
    (broken / "model.keras").write_bytes(b"not a zip file")
    proc = run_dltrain("evaluate", str(broken))
    assert proc.returncode == 5 and "not a Keras model file" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    # corrupt run.json
    (broken / "run.json").write_text("{not json")
    proc = run_dltrain("evaluate", str(broken))
    assert proc.returncode == 5 and "run.json" in proc.stderr
    # data that no longer matches the model's classes
    record = json.loads((cnn_run / "run.json").read_text())
    (broken / "run.json").write_text(json.dumps(record))
    (broken / "model.keras").write_bytes((cnn_run / "model.keras").read_bytes())
    x = np.random.default_rng(0).integers(0, 255, size=(50, 8, 8), dtype=np.uint8)
    y = np.arange(50) % 3
    np.savez(tmp_path / "three.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    cfg = yaml.safe_load((cnn_run / "config.yaml").read_text())
    cfg["data"] = {"kind": "npz", "path": str(tmp_path / "three.npz"), "batch_size": 32}
    (broken / "config.yaml").write_text(yaml.safe_dump(cfg))
    record["data"]["fingerprints"] = {}
    (broken / "run.json").write_text(json.dumps(record))
    proc = run_dltrain("evaluate", str(broken))
    assert proc.returncode == 3 and "classes" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_the_default_strategy(tmp_path: Path) -> None:
    """The global batch is split over two replicas; the update must equal the single-device one.

    Tolerance 1e-5: the two replicas sum their halves of the batch before the all-reduce, so float32 sums
    are taken in a different order; the weights agree to rounding, not bit for bit.
    """
    model = {"kind": "dense", "units": [32]}  # no dropout or batch norm: those differ per replica by design
    weights = {}
    for strategy in ("default", "mirrored"):
        cfg = _write_config(  # float32: bfloat16 (auto on some CPUs) rounds differently per summation order
            tmp_path / f"{strategy}.yaml",
            model,
            runtime={"strategy": strategy, "mixed_precision": "off"},
            train={"epochs": 2},
        )
        proc = run_dltrain(
            "fit", str(cfg), "--runs-dir", str(tmp_path / strategy), env={"DLTRAIN_CPU_DEVICES": "2"}
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = run_dir_from(proc.stdout)
        record = json.loads((run / "run.json").read_text())
        assert record["runtime"]["replicas"] == (2 if strategy == "mirrored" else 1)
        assert record["runtime"]["per_replica_batch_size"] == (16 if strategy == "mirrored" else 32)
        import keras

        weights[strategy] = keras.models.load_model(run / "model.keras").get_weights()
        # one checkpoint per epoch, written once by the chief: no per-replica or per-worker copies
        assert len(list((run / "checkpoints").glob("ckpt-*.index"))) == 2
        assert not [p for p in run.rglob("*") if "replica" in p.name or "worker" in p.name]
    for a, b in zip(weights["default"], weights["mirrored"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_early_stopping_stops_and_keeps_the_best_epoch(tmp_path: Path) -> None:
    # min_delta so large that no epoch after the first counts as an improvement: stops after 1 + patience
    cfg = _write_config(
        tmp_path / "c.yaml",
        {"kind": "dense", "units": [16]},
        train={"epochs": 6, "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 100.0}},
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    assert "stopped early" in proc.stdout
    assert len(_metrics(run)) == 3
    record = json.loads((run / "run.json").read_text())
    assert record["stopped_early"] is True and record["epochs_run"] == 3


def test_non_finite_loss_exits_4_and_never_exports_the_nan_model(tmp_path: Path) -> None:
    cfg = _write_config(
        tmp_path / "c.yaml",
        {"kind": "dense", "units": [64]},
        optimizer={"kind": "sgd", "learning_rate": 1.0e12},
        schedule={"kind": "constant"},
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "non-finite" in proc.stderr and "epoch 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    run = next((tmp_path / "runs").iterdir())
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "non-finite" in record["reason"]
    assert not (run / "model.keras").exists()
    assert not list((run / "checkpoints").glob("ckpt-*"))  # no checkpoint of NaN weights


def test_a_cnn_on_flat_data_is_refused_before_a_run_directory_exists(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "flat.npz", x_train=rng.normal(size=(40, 5)), y_train=np.arange(40) % 2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "flat", "data": {"kind": "npz", "path": str(tmp_path / "flat.npz")}, "model": {"kind": "cnn"},
    }))  # fmt: skip
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cnn needs images" in proc.stderr and "(5,)" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_evaluate_runs_under_the_runs_strategy_and_agrees(tmp_path: Path, cnn_run: Path) -> None:
    default = run_dltrain("evaluate", str(cnn_run), "--split", "validation")
    assert default.returncode == 0, default.stderr[-2000:]
    one = json.loads((cnn_run / "eval" / "validation" / "metrics.json").read_text())
    assert one["strategy"] == "default" and one["replicas"] == 1
    copy = tmp_path / "mirrored"
    import shutil

    shutil.copytree(cnn_run, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["runtime"]["strategy"] = "mirrored"
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_dltrain("evaluate", str(copy), "--split", "validation", env={"DLTRAIN_CPU_DEVICES": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = json.loads((copy / "eval" / "validation" / "metrics.json").read_text())
    assert two["strategy"] == "mirrored" and two["replicas"] == 2
    assert two["accuracy"] == one["accuracy"] and two["loss"] == pytest.approx(one["loss"], rel=1e-5)
