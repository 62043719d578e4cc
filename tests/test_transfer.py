"""Transfer learning: pretrained backbones (model.kind pretrained, model.weights) and fast.ai's fine-tune
(train.freeze_epochs, optimizer.backbone_lr_factor), on real Fashion-MNIST split by class.

A cnn is pretrained on five Fashion-MNIST classes (an .npz); the fine-tuning data is a PNG folder of the five
other, held-out classes (50 training images each, 100 validation each from the test set). Offline: ImageNet
weights cannot be downloaded here, so the weights the tests load are ones the tests train.
"""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from tests.conftest import run_dir_from, run_dltrain
from tests.transfer_data import write_heldout_folder, write_pretrain_npz

CNN = {"kind": "cnn", "filters": [16, 32], "batch_norm": True, "global_pool": True}


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fit(cfg: Path, runs: Path, *sets: str, env: dict[str, str] | None = None):
    args = [a for s in sets for a in ("--set", s)]
    return run_dltrain("fit", str(cfg), "--runs-dir", str(runs), *args, env=env)


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_heldout_folder(tmp_path_factory.mktemp("held") / "clothes")


@pytest.fixture(scope="module")
def small_pre(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quickly pretrained cnn (one epoch on 1000 images of the pretraining classes)."""
    tmp = tmp_path_factory.mktemp("pre")
    npz = write_pretrain_npz(tmp / "pre.npz", per_class=200)
    cfg = _write(
        tmp / "pre.yaml",
        {"name": "pre", "seed": 1, "data": {"kind": "npz", "path": str(npz), "batch_size": 64}, "model": CNN,
         "train": {"epochs": 1}},
    )  # fmt: skip
    proc = _fit(cfg, tmp / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir_from(proc.stdout)


def _fine_tune_config(path: Path, held: Path, weights: str, **train: object) -> Path:
    return _write(
        path,
        {
            "name": "ft",
            "seed": 1,
            "data": {"kind": "image_folder", "path": str(held), "image_size": [28, 28], "color_mode": "grayscale",
                     "batch_size": 16},
            "model": {**CNN, "weights": weights},
            "optimizer": {"kind": "adam", "learning_rate": 0.03, "backbone_lr_factor": 0.1},
            "train": {"epochs": 4, "freeze_epochs": 2, **train},
        },
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ in-process


def _prepared(cfg_path: Path, *overrides: str):
    from dltrain.config import load_config
    from dltrain.train import finetune
    from dltrain.train.fit import prepare

    cfg = load_config(cfg_path, list(overrides))
    prepared = prepare(cfg)
    head, backbone = finetune.lr_tables(
        cfg, float(cfg.optimizer.learning_rate), prepared.step.train_data.steps
    )
    prepared.schedule.set_table(head)
    prepared.step.backbone_lr.set_table(backbone)
    return cfg, prepared.step


def _backbone_values(step) -> dict[str, np.ndarray]:
    return {w.path: w.numpy().copy() for layer in step.backbone for w in layer.weights}


@pytest.mark.parametrize("bn", ["inference", "train"])
def test_frozen_phase_leaves_the_backbone_unchanged(
    tmp_path: Path, held: Path, small_pre: Path, bn: str
) -> None:
    from dltrain.train.finetune import frozen_groups

    cfg_path = _fine_tune_config(tmp_path / "ft.yaml", held, str(small_pre), frozen_batch_norm=bn)
    _, step = _prepared(cfg_path)
    step.set_groups(frozen_groups(step))
    before = _backbone_values(step)
    head_before = [v.numpy().copy() for v in step.head_variables]
    step.run_steps(step.train_iterator(0), 5)
    after = _backbone_values(step)
    assert all(
        not np.array_equal(a, v.numpy()) for a, v in zip(head_before, step.head_variables, strict=True)
    )
    for path, value in before.items():
        moved = not np.array_equal(value, after[path])
        if bn == "inference" or "conv2d" in path:
            assert not moved, f"{path} moved while frozen"
        else:  # fast.ai's train_bn: statistics and scale/offset train with the head
            assert moved, f"{path} did not train with frozen_batch_norm: train"
    assert int(step.all_groups[1].optimizer.iterations.numpy()) == 0  # the backbone's state stays fresh


def test_discriminative_rates_are_real_under_adam(tmp_path: Path, held: Path, small_pre: Path) -> None:
    """Adam's first step moves every weight by about its learning rate whatever the gradient's size (so scaling
    gradients could not make a discriminative rate); separate optimizers make the backbone's step
    backbone_lr_factor times the head's, and the backbone's bias correction starts at its own first step."""
    from dltrain.train.finetune import frozen_groups, unfrozen_groups

    cfg_path = _fine_tune_config(tmp_path / "ft.yaml", held, str(small_pre), freeze_epochs=1)
    cfg, step = _prepared(cfg_path, "schedule.kind=constant", "optimizer.learning_rate=0.01")
    step.set_groups(frozen_groups(step))
    step.run_steps(step.train_iterator(0), step.train_data.steps)
    step.set_groups(unfrozen_groups(step))
    head_opt, backbone_opt = (g.optimizer for g in step.all_groups)
    assert int(head_opt.iterations.numpy()) == step.train_data.steps
    assert int(backbone_opt.iterations.numpy()) == 0
    head_before = [v.numpy().copy() for v in step.head_variables]
    backbone_before = [v.numpy().copy() for v in step.backbone_variables]
    step.run_steps(step.train_iterator(1), 1)
    phase2_lr = 0.01 * cfg.train.unfreeze_lr_factor

    def median_step(before, variables):
        return float(
            np.median(
                np.concatenate(
                    [np.abs(v.numpy() - b).ravel() for b, v in zip(before, variables, strict=True)]
                )
            )
        )

    backbone_step = median_step(backbone_before, step.backbone_variables)
    head_step = median_step(head_before, step.head_variables)
    # A fresh Adam's first update is lr * m / (sqrt(v) + eps) with bias correction = lr * sign(g), nearly exactly.
    assert backbone_step == pytest.approx(0.1 * phase2_lr, rel=0.02)
    assert int(backbone_opt.iterations.numpy()) == 1
    assert 0 < head_step <= phase2_lr * 1.05 and head_step > 3 * backbone_step


def test_preprocessing_layers_match_keras_preprocess_input() -> None:
    """Each arch's preprocess_input, rebuilt from built-in layers (no Lambda), gives Keras's numbers."""
    from dltrain.models.pretrained import _preprocess

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    for arch, module in (
        ("ResNet50", keras.applications.resnet),
        ("ResNet50V2", keras.applications.resnet_v2),
        ("MobileNetV2", keras.applications.mobilenet_v2),
        ("DenseNet121", keras.applications.densenet),
    ):
        inputs = keras.Input((8, 8, 3))
        ours = keras.Model(inputs, _preprocess(inputs, arch))(x)
        np.testing.assert_allclose(
            ours, module.preprocess_input(x.copy()), rtol=1e-5, atol=1e-4, err_msg=arch
        )


ARCHS = [
    "MobileNetV3Small",
    *(pytest.param(a, marks=pytest.mark.slow) for a in (
        "ResNet50", "ResNet50V2", "MobileNetV2", "MobileNetV3Large", "EfficientNetB0", "EfficientNetB1",
        "EfficientNetB2", "EfficientNetB3", "EfficientNetV2B0", "ConvNeXtTiny", "DenseNet121",
    )),
]  # fmt: skip


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_steps_and_loads_in_safe_mode(tmp_path: Path, arch: str) -> None:
    from dltrain.config.schema import PretrainedModel
    from dltrain.models import build_model, with_outputs

    cfg = PretrainedModel(
        kind="pretrained", arch=arch, weights="none", image_size=[32, 32], dense=[8], dropout=0.1
    )
    model = build_model(cfg, input_shape=(28, 28, 1), num_outputs=3, scale=255.0)
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    y = np.array([0, 1, 2, 0])
    optimizer = keras.optimizers.Adam(1e-3)
    before = [v.numpy().copy() for v in model.trainable_variables]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True), from_logits=True)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    assert np.isfinite(float(tf.reduce_mean(loss)))
    assert any(
        not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables, strict=True)
    )
    path = tmp_path / "model.keras"
    with_outputs(model).save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # no Lambda anywhere
    for a, b in zip(loaded.weights, model.weights, strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), a.path
    # training=False as dltrain's steps, evaluate and predict call it: with training=None, a keras.applications
    # EfficientNet behind a Resizing layer gives different outputs call to call, as in training (a Keras quirk).
    logits = keras.Model(loaded.inputs, loaded.get_layer("logits").output)(x, training=False).numpy()
    np.testing.assert_allclose(logits, model(x, training=False).numpy(), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ CLI


@pytest.mark.slow
def test_resume_across_the_phase_boundary_is_bit_exact(tmp_path: Path, held: Path, small_pre: Path) -> None:
    cfg = _fine_tune_config(tmp_path / "ft.yaml", held, str(small_pre), epochs=2, freeze_epochs=1)
    ref = _fit(cfg, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = run_dir_from(ref.stdout)
    killed = _fit(cfg, tmp_path / "runs", env={"DLTRAIN_FAULT": "kill@epoch=2,step=3"})
    assert killed.returncode == -signal.SIGKILL
    run = next((tmp_path / "runs").iterdir())
    assert len(_rows(run)) == 1  # the frozen epoch, checkpointed; the first unfrozen one lost
    resumed = run_dltrain("fit", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "phase unfrozen" in resumed.stderr
    keys = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
    assert [[r[k] for k in keys] for r in _rows(run)] == [[r[k] for k in keys] for r in _rows(reference)]
    a = keras.saving.load_model(run / "model.keras")
    b = keras.saving.load_model(reference / "model.keras")
    for va, vb in zip(a.weights, b.weights, strict=True):
        assert np.array_equal(va.numpy(), vb.numpy()), va.path


def test_incompatible_weights_exit_3_naming_layer_and_shapes(
    tmp_path: Path, held: Path, small_pre: Path
) -> None:
    cfg = _fine_tune_config(tmp_path / "ft.yaml", held, str(small_pre))
    proc = _fit(cfg, tmp_path / "runs", "model.filters=[8,32]")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "conv2d" in proc.stderr and "(3, 3, 1, 16)" in proc.stderr and "(3, 3, 1, 8)" in proc.stderr
    assert not (tmp_path / "runs").exists()  # refused before the run directory
    missing = _fit(cfg, tmp_path / "runs", f"model.weights={tmp_path / 'nowhere'}")
    assert missing.returncode == 3 and "nowhere" in missing.stderr


def test_offline_imagenet_names_the_file_and_where_to_put_it(tmp_path: Path, held: Path) -> None:
    cfg = _write(
        tmp_path / "img.yaml",
        {"name": "img", "data": {"kind": "image_folder", "path": str(held), "image_size": [28, 28],
                                 "color_mode": "grayscale"},
         "model": {"kind": "pretrained", "arch": "MobileNetV3Small", "image_size": [32, 32]}},
    )  # fmt: skip
    home = tmp_path / "keras_home"
    home.mkdir()
    proc = _fit(cfg, tmp_path / "runs", env={"KERAS_HOME": str(home)})
    assert proc.returncode == 3, proc.stderr[-2000:]
    name = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    assert f"{home / 'models' / name}" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_transfer_from_a_pretrained_run_beats_scratch(tmp_path: Path, held: Path) -> None:
    """Identical configs but model.weights: the same epochs, seeds, data and rates."""
    npz = write_pretrain_npz(tmp_path / "pre.npz", per_class=1500)
    pre_cfg = _write(
        tmp_path / "pre.yaml",
        {"name": "pre", "seed": 1, "data": {"kind": "npz", "path": str(npz), "batch_size": 64},
         "model": {**CNN, "filters": [32, 64]}, "optimizer": {"kind": "adam", "learning_rate": 0.003},
         "train": {"epochs": 4}},
    )  # fmt: skip
    pre = _fit(pre_cfg, tmp_path / "runs")
    assert pre.returncode == 0, pre.stderr[-3000:]
    accuracy = {}
    for weights in (str(run_dir_from(pre.stdout)), "none"):
        cfg = _fine_tune_config(tmp_path / "ft.yaml", held, weights)
        proc = _fit(cfg, tmp_path / "runs", "model.filters=[32,64]")
        assert proc.returncode == 0, proc.stderr[-3000:]
        accuracy[weights == "none"] = float(_rows(run_dir_from(proc.stdout))[-1]["val_accuracy"])
    transfer, scratch = accuracy[False], accuracy[True]
    print(f"held-out val accuracy: transfer {transfer:.3f}, scratch {scratch:.3f}")
    assert transfer >= scratch + 0.03, (transfer, scratch)


@pytest.mark.slow
def test_a_keras_applications_run_and_its_weights_file_fill_the_backbone(tmp_path: Path) -> None:
    """Pretrain MobileNetV3Small (weights: none) on real Fashion-MNIST classes; a new model built with
    weights: RUN_DIR, or with the backbone's .weights.h5, starts from exactly those backbone weights."""
    from dltrain.config.schema import PretrainedModel
    from dltrain.models import build_model

    npz = write_pretrain_npz(tmp_path / "pre.npz", per_class=40)
    arch = {"kind": "pretrained", "arch": "MobileNetV3Small", "weights": "none", "image_size": [32, 32]}
    cfg = _write(
        tmp_path / "pre.yaml",
        {"name": "pre", "data": {"kind": "npz", "path": str(npz), "batch_size": 32}, "model": arch,
         "train": {"epochs": 1}},
    )  # fmt: skip
    proc = _fit(cfg, tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    source = keras.saving.load_model(run_dir_from(proc.stdout) / "model.keras", safe_mode=True)
    trained = source.get_layer("backbone")
    fresh = build_model(PretrainedModel(**arch), input_shape=(28, 28, 1), num_outputs=5, scale=255.0)
    assert not all(
        np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(trained.weights, fresh.get_layer("backbone").weights, strict=True)
    )
    trained.save_weights(tmp_path / "backbone.weights.h5")
    for weights in (str(run_dir_from(proc.stdout)), str(tmp_path / "backbone.weights.h5")):
        model = build_model(
            PretrainedModel(**{**arch, "weights": weights}),
            input_shape=(28, 28, 1),
            num_outputs=5,
            scale=255.0,
        )
        for a, b in zip(trained.weights, model.get_layer("backbone").weights, strict=True):
            assert np.array_equal(a.numpy(), b.numpy()), (weights, a.path)


@pytest.mark.slow
def test_lr_find_sweeps_the_frozen_model_or_with_the_flag_the_unfrozen_one(
    tmp_path: Path, held: Path, small_pre: Path
) -> None:
    """The same seed, batches and rates: the first step's loss (before any update) is the same, and the losses
    after it differ only because the unfrozen sweep also moves the backbone's convolutions (batch norm trains in
    both, so the forward passes start equal)."""
    cfg = _fine_tune_config(tmp_path / "ft.yaml", held, str(small_pre), frozen_batch_norm="train")
    losses = {}
    for unfrozen in ("false", "true"):
        flag = ["--unfrozen"] if unfrozen == "true" else []
        proc = run_dltrain(
            "lr-find", str(cfg), "--runs-dir", str(tmp_path / unfrozen), "--set", "lr_find.num_steps=20", *flag,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(run_dir_from(proc.stdout) / "lr_find" / "steps.csv") as f:
            losses[unfrozen] = [float(row["loss"]) for row in csv.DictReader(f)]
    frozen, unfrozen_losses = losses["false"], losses["true"]
    assert frozen[0] == unfrozen_losses[0]
    assert frozen[1:] != unfrozen_losses[1:]


@pytest.mark.slow
def test_a_fine_tuned_pretrained_run_evaluates_predicts_and_exports(tmp_path: Path) -> None:
    """Issue 13 item 4: a keras.applications fine-tune under the default precision (bfloat16 on a CPU with
    native bf16), through evaluate's views, predict (compared with Keras on the same arrays) and an ONNX export
    (the export's own check on the test split must pass)."""
    pre = np.load(write_pretrain_npz(tmp_path / "pre.npz", per_class=48))
    order = np.random.default_rng(0).permutation(len(pre["y_train"]))
    x, y = pre["x_train"][order], pre["y_train"][order]
    npz = tmp_path / "ft.npz"  # a test split too: export checks itself on it
    np.savez(npz, x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    cfg = _write(
        tmp_path / "ft.yaml",
        {"name": "ft", "data": {"kind": "npz", "path": str(npz), "batch_size": 32, "validation_split": 0.2},
         "model": {"kind": "pretrained", "arch": "MobileNetV3Small", "weights": "none", "image_size": [32, 32]},
         "optimizer": {"kind": "adam", "learning_rate": 1e-3, "backbone_lr_factor": 0.1},
         "train": {"epochs": 1, "freeze_epochs": 1}},
    )  # fmt: skip
    proc = _fit(cfg, tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    evaluated = run_dltrain("evaluate", str(run), "--split", "validation")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (run / "eval" / "validation" / "most_confused.csv").is_file()

    data = np.load(npz)
    inputs = tmp_path / "new.npz"
    np.savez(inputs, x=data["x_train"][:24])
    out = tmp_path / "pred.csv"
    predicted = run_dltrain("predict", str(run), str(inputs), "--output", str(out), "--top-k", "2")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.dtype_policy.name == "float32"  # saved in float32 whatever the training precision
    probs = model.predict(data["x_train"][:24], verbose=0)  # model.keras ends in the softmax
    assert len(rows) == 24
    for row, p in zip(rows, probs, strict=True):
        assert abs(float(row["probability"]) - float(p.max())) < 1e-4

    exported = run_dltrain("export", str(run), "--format", "onnx")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (run / "export" / "onnx" / "export.json").is_file()
