"""``image_folder`` on folders of real Fashion-MNIST PNGs the tests write: the loader's checks (no
subprocess), the streaming pipeline, augmentation, and fit -> evaluate -> lr-find through the installed CLI."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dltrain.config import ImageFolderData
from dltrain.data import Splits, load_splits
from dltrain.data.builtin import DEBIAN_FASHION_DIR, FASHION_CLASSES
from dltrain.data.formats import read_idx_folder
from dltrain.data.images import IMAGE_EXTENSIONS, read_images, safe_folder_name, write_image_folder
from dltrain.errors import DataError
from tests.conftest import run_dir_from, run_dltrain

PER_CLASS = {"train": 24, "valid": 6, "test": 8}
CLASSES = sorted(safe_folder_name(n) for n in FASHION_CLASSES)


@pytest.fixture(scope="module")
def fashion() -> dict[str, np.ndarray]:
    """Real Fashion-MNIST, a few hundred images of it (the tests skip where the dataset is absent)."""
    if not DEBIAN_FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    arrays = read_idx_folder(DEBIAN_FASHION_DIR)
    if arrays is None:
        pytest.skip(f"Fashion-MNIST IDX files incomplete in {DEBIAN_FASHION_DIR}")
    return arrays


def _tint(images: np.ndarray) -> np.ndarray:
    """Grey images as real colour images (each channel a different share of the grey level)."""
    grey = images.astype(np.float32)
    return np.stack([grey, grey * 0.6, grey * 0.3], axis=-1).round().astype(np.uint8)


def _take(images: np.ndarray, labels: np.ndarray, per_class: int, skip: int = 0) -> tuple[np.ndarray, ...]:
    """``per_class`` images of every class, after skipping the first ``skip`` of each."""
    idx = np.concatenate([np.flatnonzero(labels == c)[skip : skip + per_class] for c in range(10)])
    return images[idx], labels[idx]


def make_split_folders(
    root: Path, data: dict[str, np.ndarray], rgb: bool = False, val_name: str = "valid"
) -> Path:
    """root/train, root/<val_name>, root/test, each with ten class folders of PNGs."""
    x, y = data["x_train"], data["y_train"]
    parts = {
        "train": _take(x, y, PER_CLASS["train"]),
        val_name: _take(x, y, PER_CLASS["valid"], skip=PER_CLASS["train"]),
        "test": _take(data["x_test"], data["y_test"], PER_CLASS["test"]),
    }
    for split, (images, labels) in parts.items():
        write_image_folder(root / split, _tint(images) if rgb else images, labels, FASHION_CLASSES)
    return root


def make_single_folder(
    root: Path, data: dict[str, np.ndarray], per_class: int = 30, rgb: bool = False
) -> Path:
    images, labels = _take(data["x_train"], data["y_train"], per_class)
    write_image_folder(root, _tint(images) if rgb else images, labels, FASHION_CLASSES)
    return root


def _cfg(root: Path, **data: Any) -> ImageFolderData:
    fields: dict[str, Any] = {"kind": "image_folder", "path": root, "image_size": [28, 28], **data}
    return ImageFolderData(**fields)


def _files(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def split_root(tmp_path_factory: pytest.TempPathFactory, fashion: dict[str, np.ndarray]) -> Path:
    return make_split_folders(tmp_path_factory.mktemp("split") / "data", fashion)


@pytest.fixture
def writable_split(tmp_path: Path, split_root: Path) -> Path:
    """A copy of the split layout a test may break."""
    return Path(shutil.copytree(split_root, tmp_path / "data"))


# ------------------------------------------------------------------------------------------ loading


def test_split_layout_reads_sorted_classes_and_every_file_once(split_root: Path) -> None:
    splits = load_splits(_cfg(split_root, color_mode="grayscale"), seed=1)
    assert splits.class_names == CLASSES
    assert splits.input_kind == "image_files" and splits.input_shape == (28, 28, 1) and splits.scale == 255
    assert splits.sizes() == {"train": 240, "validation": 60, "test": 80}
    for split, folder in (("train", "train"), ("validation", "valid"), ("test", "test")):
        x, y = splits.get(split)
        assert set(x.tolist()) == _files(split_root / folder) and len(set(x.tolist())) == len(x)
        assert splits.manifest[split] == x.tolist()
        # Each file's label is its class folder.
        assert [Path(p).parent.name for p in x] == [CLASSES[i] for i in y]
    assert any("data.validation_split not used" in note for note in splits.notes)
    assert splits.state["image"]["color_mode"] == "grayscale" and splits.state["image"]["cache"] is False


@pytest.mark.parametrize("val_name", ["val", "validation", "Valid"])
def test_validation_folder_aliases(tmp_path: Path, fashion: dict[str, np.ndarray], val_name: str) -> None:
    root = make_split_folders(tmp_path / "data", fashion, val_name=val_name)
    splits = load_splits(_cfg(root), seed=1)
    x_val, _ = splits.get("validation")
    assert set(x_val.tolist()) == _files(root / val_name)


def test_two_validation_folders_are_an_error(writable_split: Path) -> None:
    shutil.copytree(writable_split / "valid", writable_split / "val")
    with pytest.raises(DataError, match=r"`data.path`: .* has 2 validation folders \(valid, val\)"):
        load_splits(_cfg(writable_split), seed=1)


def test_without_a_validation_folder_validation_is_carved_from_train(writable_split: Path) -> None:
    shutil.rmtree(writable_split / "valid")
    splits = load_splits(_cfg(writable_split, validation_split=0.25), seed=1)
    assert splits.sizes() == {"train": 180, "validation": 60, "test": 80}
    train, val = set(splits.manifest["train"]), set(splits.manifest["validation"])
    assert not train & val and train | val == _files(writable_split / "train")
    assert np.bincount(splits.y_val).tolist() == [6] * 10  # stratified


def test_single_folder_carves_test_with_a_fixed_seed_and_validation_with_the_run_seed(
    tmp_path: Path, fashion: dict[str, np.ndarray]
) -> None:
    root = make_single_folder(tmp_path / "data", fashion, per_class=30, rgb=True)
    a = load_splits(_cfg(root, validation_split=0.2, test_split=0.2), seed=1)
    b = load_splits(_cfg(root, validation_split=0.2, test_split=0.2), seed=2)
    assert a.class_names == CLASSES and a.input_shape == (28, 28, 3)
    assert a.sizes() == {"train": 192, "validation": 48, "test": 60}
    parts = [set(a.manifest[s]) for s in ("train", "validation", "test")]
    assert sum(len(p) for p in parts) == 300 and set.union(*parts) == _files(root)
    assert a.manifest["test"] == b.manifest["test"]  # the same test images whatever the seed
    assert a.manifest["validation"] != b.manifest["validation"]
    assert a.state["image"]["layout"] == "single folder"


def test_missing_folder_names_the_path_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"`data.path`: .*nowhere does not exist"):
        load_splits(_cfg(tmp_path / "nowhere"), seed=1)


def test_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"`data.path`: .*x.png is a file"):
        load_splits(_cfg(tmp_path / "x.png"), seed=1)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"`data.path`: .*empty holds no class folders \(it is empty\)"):
        load_splits(_cfg(tmp_path / "empty"), seed=1)


def test_images_without_class_folders(tmp_path: Path, fashion: dict[str, np.ndarray]) -> None:
    images, labels = _take(fashion["x_train"], fashion["y_train"], 2)
    written = write_image_folder(tmp_path / "sorted", images, labels, FASHION_CLASSES)
    (tmp_path / "loose").mkdir()
    for i, path in enumerate(written):
        path.rename(tmp_path / "loose" / f"{i}.png")
    with pytest.raises(DataError, match=r"holds no class folders \(it holds 20 images but no class folders"):
        load_splits(_cfg(tmp_path / "loose"), seed=1)


def test_class_folder_without_images(writable_split: Path) -> None:
    empty = writable_split / "train" / "Bag"
    shutil.rmtree(empty)
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as info:
        load_splits(_cfg(writable_split), seed=1)
    assert str(empty) in info.value.message and "`data.path`" in info.value.message
    assert "holds no images" in info.value.message


def test_one_class_is_not_enough(tmp_path: Path, fashion: dict[str, np.ndarray]) -> None:
    images, labels = _take(fashion["x_train"], fashion["y_train"], 3)
    write_image_folder(tmp_path / "one", images[labels == 0], labels[labels == 0], FASHION_CLASSES)
    with pytest.raises(DataError, match="one class folder .*needs two"):
        load_splits(_cfg(tmp_path / "one"), seed=1)


def test_class_folders_must_match_between_train_and_valid(writable_split: Path) -> None:
    (writable_split / "valid" / "Bag").rename(writable_split / "valid" / "Bags")
    with pytest.raises(DataError) as info:
        load_splits(_cfg(writable_split), seed=1)
    message = info.value.message
    assert "class folders of" in message and str(writable_split / "valid") in message
    assert "lacks Bag" in message and "has Bags" in message


def test_test_split_and_a_test_folder_conflict(split_root: Path) -> None:
    with pytest.raises(DataError, match=r"`data.test_split` is 0.2 but .*test already holds the test split"):
        load_splits(_cfg(split_root, test_split=0.2), seed=1)


def _corrupt(folder: Path) -> list[Path]:
    """Break three files for real: a truncated PNG, a PNG with a flipped byte, text named .jpg."""
    files = sorted(folder.rglob("*.png"))
    truncated, flipped = files[3], files[40]
    truncated.write_bytes(truncated.read_bytes()[:100])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    fake = files[80].with_suffix(".jpg")
    fake.write_text("this is not a JPEG\n")
    return [truncated, flipped, fake]


def test_a_corrupt_image_stops_with_its_name(writable_split: Path) -> None:
    bad = _corrupt(writable_split / "train")
    with pytest.raises(DataError) as info:
        load_splits(_cfg(writable_split), seed=1)
    message = info.value.message
    assert message.startswith(f"{bad[0]}: cannot be decoded")
    assert "(2 more in" in message and "`data.bad_images: skip`" in message


def test_corrupt_images_skipped_with_a_count(writable_split: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = _corrupt(writable_split / "train")
    with caplog.at_level(logging.WARNING):
        splits = load_splits(_cfg(writable_split, bad_images="skip"), seed=1)
    assert "skipped 3 unreadable image(s)" in caplog.text
    assert any("skipped 3 unreadable images" in note for note in splits.notes)
    assert splits.state["skipped_images"] == {"count": 3, "files": sorted(str(p) for p in bad)}
    listed = [item for items in splits.manifest.values() for item in items]
    assert not {str(p) for p in bad} & set(listed)
    assert splits.sizes()["train"] == 240 - 2  # the .jpg was an extra file; two PNGs were lost


def test_a_tiff_named_png_is_bad_for_tensorflow(writable_split: Path) -> None:
    from PIL import Image

    target = sorted((writable_split / "test").rglob("*.png"))[0]
    Image.open(target).save(target, format="TIFF")
    with pytest.raises(DataError, match=r"TIFF image, which TensorFlow cannot decode"):
        load_splits(_cfg(writable_split), seed=1)


def test_image_extensions_are_what_tensorflow_decodes() -> None:
    assert set(IMAGE_EXTENSIONS) == {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


# ------------------------------------------------------------------------------------------ pipeline


def _pipeline(splits: Splits, split: str, batch_size: int = 32) -> Any:
    from dltrain.data.pipeline import make_pipeline

    return make_pipeline(splits, split, batch_size)


def _held_bytes(obj: Any) -> int:
    """Bytes of every array and tensor an object holds in its attributes (one level down)."""
    import tensorflow as tf

    total = 0
    for value in vars(obj).values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif isinstance(value, tf.Tensor):
            total += int(np.prod(value.shape)) * (value.dtype.size if value.dtype != tf.string else 8)
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            total += _held_bytes(value)
    return total


def test_streaming_pipeline_holds_paths_not_pixels(split_root: Path) -> None:
    from dltrain.data.pipeline.images import ImageFilePipeline

    splits = load_splits(_cfg(split_root, image_size=[64, 64]), seed=1)
    pipe = _pipeline(splits, "train")
    assert isinstance(pipe, ImageFilePipeline) and pipe.cached is None
    decoded = splits.sizes()["train"] * 64 * 64 * 3
    assert _held_bytes(pipe) < decoded / 20
    batch_x, batch_y = next(iter(pipe.evaluation()))
    assert batch_x.shape == (32, 64, 64, 3) and batch_x.dtype.name == "float32"

    cached = _pipeline(load_splits(_cfg(split_root, image_size=[64, 64], cache=True), seed=1), "train")
    assert cached.cached is not None and _held_bytes(cached) >= decoded  # the pixels, decoded once
    streamed = np.concatenate([x.numpy() for x, _ in pipe.evaluation()])
    from_cache = np.concatenate([x.numpy() for x, _ in cached.evaluation()])
    np.testing.assert_array_equal(streamed, from_cache)


@pytest.mark.parametrize(("color_mode", "channels"), [("grayscale", 1), ("rgb", 3)])
def test_pipeline_pixels_match_read_images(
    tmp_path: Path, fashion: dict[str, np.ndarray], color_mode: str, channels: int
) -> None:
    root = make_single_folder(tmp_path / "data", fashion, per_class=3, rgb=color_mode == "rgb")
    for size in ([28, 28], [20, 36]):
        splits = load_splits(_cfg(root, image_size=size, color_mode=color_mode, validation_split=0.0), seed=1)
        x, _ = splits.get("train")
        streamed = np.concatenate([b.numpy() for b, _ in _pipeline(splits, "train").evaluation()])
        plotted = read_images(x.tolist(), (size[0], size[1]), channels)
        assert streamed.shape == plotted.shape == (30, size[0], size[1], channels)
        assert np.array_equal(streamed, np.round(streamed))  # whole grey levels, as a uint8 input
        diff = np.abs(streamed - plotted.astype(np.float32))
        assert diff.max() <= (0 if size == [28, 28] else 1), (size, diff.max())
    if color_mode == "grayscale":  # no resize: exactly the pixels of the dataset
        images, _ = _take(fashion["x_train"], fashion["y_train"], 3)
        by_name = dict(zip([f"{i:05d}.png" for i in range(len(images))], images, strict=True))
        x, _ = load_splits(_cfg(root, color_mode="grayscale", validation_split=0.0), seed=1).get("train")
        np.testing.assert_array_equal(
            read_images(x.tolist(), (28, 28), 1)[..., 0], [by_name[Path(p).name] for p in x]
        )


def test_other_formats_decode_in_grayscale_and_rgb(tmp_path: Path, fashion: dict[str, np.ndarray]) -> None:
    images, labels = _take(fashion["x_train"], fashion["y_train"], 1)
    for fmt in ("jpg", "gif", "bmp", "webp"):
        write_image_folder(tmp_path / "data", _tint(images), labels, FASHION_CLASSES, fmt=fmt)
    for color_mode, channels in (("grayscale", 1), ("rgb", 3)):
        splits = load_splits(_cfg(tmp_path / "data", color_mode=color_mode, validation_split=0.0), seed=1)
        assert splits.sizes()["train"] == 40
        streamed = np.concatenate([b.numpy() for b, _ in _pipeline(splits, "train").evaluation()])
        assert streamed.shape == (40, 28, 28, channels) and streamed.max() > 100
        plotted = read_images(splits.x_train.tolist(), (28, 28), channels)
        # JPEG to grey takes libjpeg's luma in TensorFlow and Pillow's RGB -> L: close, not equal.
        assert np.abs(streamed - plotted).mean() < 3


def test_epoch_order_is_seeded_and_skip_batches_resumes_inside_an_epoch(split_root: Path) -> None:
    from dltrain.data.pipeline import epoch_order

    splits = load_splits(_cfg(split_root), seed=1)
    pipe = _pipeline(splits, "train", batch_size=32)
    assert pipe.steps == 8
    labels = np.concatenate([y.numpy() for _, y in pipe.train(seed=5, epoch=2)])
    np.testing.assert_array_equal(labels, splits.y_train[epoch_order(240, 5, 2, True)])
    full = [x.numpy() for x, _ in pipe.train(seed=5, epoch=2)]
    resumed = [x.numpy() for x, _ in pipe.train(seed=5, epoch=2, skip_batches=3)]
    assert len(resumed) == 5
    for a, b in zip(full[3:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [1, 2, 7, 30, 32, 33, 97])
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_shard_batches_splits_every_global_batch_among_workers(size: int, shards: int) -> None:
    """Multi-worker image input: every shard gets one row per global batch (an empty one where the last batch
    has fewer examples than shards), the rows of a batch are disjoint and together are the global batch."""
    from dltrain.data.pipeline.images import shard_batches

    batch_size = 12 if shards == 3 else 16
    order = np.random.default_rng(size).permutation(size)
    parts = [shard_batches(order, batch_size, shards, shard) for shard in range(shards)]
    steps = -(-size // batch_size)
    for rows, lengths in parts:
        assert rows.shape == (steps, batch_size // shards) and lengths.shape == (steps,)
    for step in range(steps):
        shares = [rows[step, : lengths[step]] for rows, lengths in parts]
        glued = np.concatenate(shares)
        np.testing.assert_array_equal(glued, order[step * batch_size : (step + 1) * batch_size])
        assert len(set(glued.tolist())) == len(glued)  # disjoint
    if size % batch_size and size % batch_size < shards:  # the last batch leaves a shard empty, not missing
        assert min(int(lengths[-1]) for _, lengths in parts) == 0


def test_worker_datasets_decode_only_their_share_in_step_with_each_other(split_root: Path) -> None:
    """The per-worker datasets of ``distribute_datasets_from_function`` (a real ``InputContext`` per worker):
    the same number of batches each, an empty [0, h, w, c] one where a worker's share is empty, and together
    the pixels and labels of the one-process pipeline, resumed batches skipped on every worker."""
    import tensorflow as tf

    splits = load_splits(_cfg(split_root), seed=1)
    pipe = _pipeline(splits, "train", batch_size=48)  # 240 examples: 5 global batches
    order = np.random.default_rng(3).permutation(240)[:194]  # 4 global batches and one of 2 examples
    whole = [(x.numpy(), y.numpy()) for x, y in pipe.dataset(order, skip_batches=1)]
    for workers in (2, 3):
        parts = []
        for worker in range(workers):
            context = tf.distribute.InputContext(workers, worker, workers)
            parts.append([(x.numpy(), y.numpy()) for x, y in pipe.worker_dataset(order, 1, context)])
        assert [len(p) for p in parts] == [len(whole)] * workers == [4] * workers
        for step, (x, y) in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([p[step][0] for p in parts]), x)
            np.testing.assert_array_equal(np.concatenate([p[step][1] for p in parts]), y)
        last = [p[-1][0].shape for p in parts]  # 2 examples: among 3 workers, the last one's share is empty
        assert last == ([(1, 28, 28, 3)] * 2 + [(0, 28, 28, 3)] * (workers - 2))
    # 2 workers of 2 replicas each: batches alternate replicas
    two_local = tf.distribute.InputContext(2, 1, 4)
    mine = [y.numpy() for _, y in pipe.worker_dataset(order, 1, two_local)]
    assert len(mine) == 8 and [len(y) for y in mine[:2]] == [12, 12]
    np.testing.assert_array_equal(np.concatenate(mine[:2]), whole[0][1][24:])


# ------------------------------------------------------------------------------------------ augmentation


def test_augmentation_is_active_in_training_only(split_root: Path) -> None:
    import keras

    from dltrain.models.common import input_stem

    augment = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.1, "translation": 0.1, "contrast": 0.3}
    splits = load_splits(_cfg(split_root, augment=augment), seed=4)
    assert splits.stem["augment"]["seed"] == 4
    inputs, x = input_stem(splits.input_shape, splits.scale, splits.stem)
    model = keras.Model(inputs, x)
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.startswith("augment_")] == [
        "augment_flip", "augment_rotation", "augment_zoom", "augment_translation", "augment_contrast"
    ]  # fmt: skip
    batch = next(iter(_pipeline(splits, "train").evaluation()))[0].numpy()
    first = model(batch, training=False).numpy()
    second = model(batch, training=False).numpy()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, batch / 255.0, atol=1e-6)  # only the rescaling
    trained = model(batch, training=True).numpy()
    again = model(batch, training=True).numpy()
    assert np.abs(trained - first).mean() > 0.01 and np.abs(again - trained).mean() > 0.01
    assert trained.min() >= 0.0 and trained.max() <= 1.0  # contrast clips to the rescaled range


def test_no_augmentation_asked_adds_no_layer(split_root: Path) -> None:
    assert load_splits(_cfg(split_root), seed=1).stem == {}


# ------------------------------------------------------------------------------------------ CLI


def _write_config(path: Path, data: dict[str, Any], **extra: Any) -> Path:
    cfg = {
        "name": "folder",
        "seed": 5,
        "data": {"kind": "image_folder", "batch_size": 32, "image_size": [28, 28], **data},
        "model": {"kind": "cnn", "filters": [8, 16], "dense": [32]},
        "optimizer": {"kind": "adam", "learning_rate": 3e-3},
        "train": {"epochs": 2},
    }
    cfg.update(extra)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _manifest(run: Path) -> list[tuple[str, str]]:
    with open(run / "data" / "manifest.csv") as fh:
        return [(row["split"], row["item"]) for row in csv.DictReader(fh)]


def test_cli_data_error_exits_3_before_tensorflow(tmp_path: Path, split_root: Path) -> None:
    root = Path(shutil.copytree(split_root, tmp_path / "data"))
    bad = _corrupt(root / "train")[0]
    cfg = _write_config(tmp_path / "bad.yaml", {"path": str(root)})
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert str(bad) in proc.stderr and "data.bad_images" in proc.stderr
    assert not (tmp_path / "runs").exists()  # before any run directory or model
    shutil.rmtree(root / "test" / "Bag")
    (root / "test" / "Bag").mkdir()
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 3 and f"`data.path`: {root / 'test' / 'Bag'} holds no images" in proc.stderr


@pytest.mark.slow  # about 50 s: fit and two evaluates, each a fresh process
def test_fit_evaluate_on_train_valid_test_folders_and_a_renamed_class(
    tmp_path: Path, split_root: Path
) -> None:
    root = Path(shutil.copytree(split_root, tmp_path / "data"))
    augment = {"flip": "horizontal", "translation": 0.05}
    cfg = _write_config(
        tmp_path / "split.yaml", {"path": str(root), "color_mode": "grayscale", "augment": augment}
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished"
    assert record["data"]["class_names"] == CLASSES and record["data"]["input_kind"] == "image_files"
    assert record["data"]["input_shape"] == [28, 28, 1]
    assert record["data"]["sizes"] == {"train": 240, "validation": 60, "test": 80}
    state = json.loads((run / "data" / "state.json").read_text())
    assert state["class_names"] == CLASSES and state["stem"]["augment"]["flip"] == "horizontal"
    assert state["image"]["image_size"] == [28, 28] and state["image"]["color_mode"] == "grayscale"
    manifest = _manifest(run)
    assert len(manifest) == len({item for _, item in manifest}) == 380  # every file once
    folder_of = {"train": "train", "validation": "valid", "test": "test"}
    assert {item for _, item in manifest} == _files(root)
    assert all(Path(item).relative_to(root).parts[0] == folder_of[split] for split, item in manifest)
    with open(run / "metrics.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2

    proc = run_dltrain("evaluate", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["examples"] == 80 and metrics["accuracy"] > 0.3  # 10 classes: chance is 0.1
    with open(run / "eval" / "test" / "per_class.csv") as fh:
        assert [row["class"] for row in csv.DictReader(fh)] == CLASSES
    with open(run / "eval" / "test" / "top_losses.csv") as fh:
        top = list(csv.DictReader(fh))
    test_files = {item for split, item in manifest if split == "test"}
    assert len(top) == 16 and all(row["item"] in test_files for row in top)
    assert all(Path(row["item"]).parent.name == row["true"] for row in top)
    assert (run / "eval" / "test" / "top_losses.png").stat().st_size > 10_000  # the images, via read_images

    # The classes are part of the run: a renamed class folder is refused, not silently mislabelled.
    (root / "train" / "Bag").rename(root / "train" / "Bags")
    (root / "test" / "Bag").rename(root / "test" / "Bags")
    (root / "valid" / "Bag").rename(root / "valid" / "Bags")
    proc = run_dltrain("evaluate", str(run))
    assert proc.returncode == 3 and "restore the original data or retrain" in proc.stderr


def test_fit_evaluate_lr_find_on_a_single_rgb_folder_with_cache(
    tmp_path: Path, fashion: dict[str, np.ndarray]
) -> None:
    root = make_single_folder(tmp_path / "data", fashion, per_class=30, rgb=True)
    cfg = _write_config(
        tmp_path / "single.yaml",
        {
            "path": str(root),
            "validation_split": 0.2,
            "test_split": 0.2,
            "cache": True,
            "image_size": [24, 24],
        },
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    record = json.loads((run / "run.json").read_text())
    assert record["data"]["input_shape"] == [24, 24, 3] and record["data"]["class_names"] == CLASSES
    assert record["data"]["sizes"] == {"train": 192, "validation": 48, "test": 60}
    manifest = _manifest(run)
    assert sorted(item for _, item in manifest) == sorted(_files(root))
    assert [s for s, _ in manifest].count("test") == 60
    proc = run_dltrain("evaluate", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["examples"] == 60 and metrics["accuracy"] > 0.2
    with open(run / "eval" / "test" / "top_losses.csv") as fh:
        test_items = {item for split, item in manifest if split == "test"}
        assert all(row["item"] in test_items for row in csv.DictReader(fh))

    proc = run_dltrain(
        "lr-find", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--set", "lr_find.num_steps=20"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = (run_dir_from(proc.stdout) / "lr_find" / "steps.csv").read_text().splitlines()
    assert len(steps) > 10  # the sweep ran over the cached images (6 batches an epoch: into a second epoch)


def test_sixteen_bit_png_reads_like_tensorflow(tmp_path: Path, fashion: dict[str, np.ndarray]) -> None:
    from PIL import Image

    images, labels = _take(fashion["x_train"], fashion["y_train"], 1)
    expected = {}
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        name = safe_folder_name(FASHION_CLASSES[int(label)])
        (tmp_path / "data" / name).mkdir(parents=True)
        deep = pixels.astype(np.uint16) * 256 + (i * 37 % 256)  # 16-bit grey; the low byte is noise
        Image.fromarray(deep).save(tmp_path / "data" / name / "deep.png")
        expected[name] = pixels
    for color_mode, channels in (("grayscale", 1), ("rgb", 3)):
        splits = load_splits(_cfg(tmp_path / "data", color_mode=color_mode, validation_split=0.0), seed=1)
        streamed = np.concatenate([b.numpy() for b, _ in _pipeline(splits, "train").evaluation()])
        plotted = read_images(splits.x_train.tolist(), (28, 28), channels)
        np.testing.assert_array_equal(streamed, plotted)  # TensorFlow keeps the high byte, and so do plots
        np.testing.assert_array_equal(plotted[..., 0], [expected[name] for name in CLASSES])


@pytest.mark.slow  # three fits, about 50 s
def test_sigkill_and_resume_inside_an_epoch_streams_to_identical_weights(
    tmp_path: Path, split_root: Path
) -> None:
    """Step-exact resume skips the epoch's first batches without reading them, and the augmentation layers'
    random state comes back from the checkpoint: the resumed run ends bit-identical."""
    import keras

    augment = {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1, "translation": 0.1, "contrast": 0.1}
    cfg = _write_config(
        tmp_path / "r.yaml",
        {"path": str(split_root), "color_mode": "grayscale", "image_size": [24, 24], "augment": augment},
        train={"epochs": 3, "checkpoint_every_steps": 3},
    )
    proc = run_dltrain("fit", str(cfg), "--runs-dir", str(tmp_path / "whole"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    whole = run_dir_from(proc.stdout)
    killed = run_dltrain(
        "fit", str(cfg), "--runs-dir", str(tmp_path / "killed"), env={"DLTRAIN_FAULT": "kill@epoch=2,step=7"}
    )
    assert killed.returncode != 0
    (run,) = list((tmp_path / "killed").iterdir())
    resumed = run_dltrain("fit", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing at the next batch" in resumed.stderr  # mid-epoch: batches skipped, not replayed
    with open(whole / "metrics.csv") as a, open(run / "metrics.csv") as b:
        losses = [[row["loss"] for row in csv.DictReader(fh)] for fh in (a, b)]
    assert losses[0] == losses[1] and len(losses[0]) == 3
    want = keras.models.load_model(whole / "model.keras").get_weights()
    got = keras.models.load_model(run / "model.keras").get_weights()
    assert max(float(np.abs(x - y).max()) for x, y in zip(want, got, strict=True)) == 0.0


def test_image_checks_are_cached_by_path_size_and_mtime(
    writable_split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dltrain.data import images

    monkeypatch.setenv("DLTRAIN_CACHE_DIR", str(tmp_path / "cache"))
    load_splits(_cfg(writable_split), seed=1)  # every file checked once and its verdict stored
    assert (tmp_path / "cache" / "image_checks.sqlite3").is_file()
    target = sorted((writable_split / "train").rglob("*.png"))[0]
    st = target.stat()
    # Same size and modification time, different (broken) bytes: the cached verdict stands (no re-decode).
    target.write_bytes(b"\0" * st.st_size)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    paths = [str(p) for p in sorted((writable_split / "train").rglob("*.png"))]
    assert images._bad_images(paths) == {}
    # A changed modification time (what any rewrite of the file gives) is checked again.
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    bad = images._bad_images(paths)
    assert list(bad) == [paths.index(str(target))] and "not an image" in bad[paths.index(str(target))]
    # A cache folder that cannot be written: every file is checked, nothing fails.
    monkeypatch.setenv("DLTRAIN_CACHE_DIR", str(target))  # a file, not a folder
    assert list(images._bad_images(paths)) == [paths.index(str(target))]
