"""Dataset loaders on files the tests write: IDX, npz, the Keras cache, Fashion-MNIST folders, digits."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dltrain.cli import app
from dltrain.config import DigitsData, FashionMnistData, IdxData, MnistData, NpzData, load_config
from dltrain.data import load_splits
from dltrain.data.builtin import DOWNLOAD_HOST, _host_reachable, keras_cache_dir
from dltrain.data.formats import read_idx, write_idx
from dltrain.data.splits import carve, check_pair, is_aligned
from dltrain.data.state import write_data_files
from dltrain.errors import DataError

DIGITS_TOTAL = 1797


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def _idx_folder(folder: Path, gz: bool, n_train: int = 60, n_test: int = 20) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    (xtr, ytr), (xte, yte) = _images(n_train, seed=1), _images(n_test, seed=2)
    write_idx(folder / f"train-images-idx3-ubyte{ext}", xtr)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", ytr)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", xte)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", yte)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


# ---------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize(
    "array",
    [
        _images(5)[0],
        np.arange(7, dtype=np.uint8),
        np.array([[-3, 0, 70000], [1, 2, 3]], dtype=np.int32),
        np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
    ],
    ids=["uint8-images", "uint8-labels", "int32", "float32"],
)
def test_idx_round_trip(tmp_path: Path, name: str, array: np.ndarray) -> None:
    path = tmp_path / name
    write_idx(path, array)
    is_gzip = path.read_bytes()[:2] == b"\x1f\x8b"
    assert is_gzip == name.endswith(".gz")
    back = read_idx(path)
    assert back.shape == array.shape and back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)
    # Read straight into an aligned, writable array, which TensorFlow can use in place (no later copy).
    assert is_aligned(back) and back.flags.writeable


def test_damaged_idx_files_are_named(tmp_path: Path) -> None:
    x, _ = _images(5)
    write_idx(tmp_path / "a.idx", x)
    data = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(data[:-100])
    with pytest.raises(DataError, match=r"short\.idx: IDX header says \[5, 28, 28\].*truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x12\x34" + data[2:])
    with pytest.raises(DataError, match=r"magic\.idx: not an IDX file \(bad magic number 1234"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "header.idx").write_bytes(data[:9])  # says 3 dims, holds 1 and a bit
    with pytest.raises(DataError, match=r"header\.idx: truncated IDX header"):
        read_idx(tmp_path / "header.idx")
    (tmp_path / "long.idx").write_bytes(data + b"\0" * 7)
    with pytest.raises(DataError, match=r"long\.idx: IDX header says \[5, 28, 28\] \(3920 bytes.*holds 3927"):
        read_idx(tmp_path / "long.idx")
    (tmp_path / "empty.idx").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.idx: not an IDX file"):
        read_idx(tmp_path / "empty.idx")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(data)[:30])
    with pytest.raises(DataError, match=r"bad\.gz: cannot read"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(DataError, match=r"nope\.idx: file not found"):
        read_idx(tmp_path / "nope.idx")


# -------------------------------------------------------------------------------------------- mnist


def test_mnist_from_an_npz_path(tmp_path: Path) -> None:
    (xtr, ytr), (xte, yte) = _images(50, seed=3), _images(10, seed=4)
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    splits = load_splits(MnistData(kind="mnist", path=tmp_path / "mnist.npz", validation_split=0.2), seed=1)
    assert splits.sizes() == {"train": 40, "validation": 10, "test": 10}
    assert splits.source == str(tmp_path / "mnist.npz")
    assert splits.scale == 255.0 and splits.input_shape == (28, 28) and splits.x_train.dtype == np.uint8
    assert splits.class_names == [str(i) for i in range(10)]
    assert splits.x_test is not None and splits.y_test is not None
    np.testing.assert_array_equal(splits.x_test, xte)
    np.testing.assert_array_equal(splits.y_test, yte)
    assert splits.x_val is not None  # train + validation is the file's train split, rearranged
    assert Counter(r.tobytes() for r in np.concatenate([splits.x_train, splits.x_val])) == Counter(
        r.tobytes() for r in xtr
    )


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnist_from_a_folder_of_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = _idx_folder(tmp_path / "idx", gz=gz)
    splits = load_splits(MnistData(kind="mnist", path=tmp_path / "idx", validation_split=0.1), seed=1)
    assert splits.sizes() == {"train": 54, "validation": 6, "test": 20}
    assert splits.x_test is not None
    np.testing.assert_array_equal(splits.x_test, arrays["x_test"])


def test_mnist_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"`data\.path`: .*nowhere\.npz not found"):
        load_splits(MnistData(kind="mnist", path=tmp_path / "nowhere.npz"), seed=1)


def test_mnist_from_the_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (xtr, ytr), (xte, yte) = _images(30, seed=5), _images(10, seed=6)
    (tmp_path / "datasets").mkdir()
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras_cache_dir() == tmp_path / "datasets"
    splits = load_splits(MnistData(kind="mnist"), seed=1)
    assert splits.source == str(tmp_path / "datasets" / "mnist.npz")
    assert splits.sizes() == {"train": 27, "validation": 3, "test": 10}
    assert splits.x_test is not None
    np.testing.assert_array_equal(splits.x_test, xte)


@pytest.mark.skipif(
    _host_reachable(DOWNLOAD_HOST), reason="this machine is online; the offline path is not taken"
)
def test_mnist_offline_says_what_to_do_and_fit_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    with pytest.raises(DataError) as err:
        load_splits(MnistData(kind="mnist"), seed=1)
    message = str(err.value)
    assert "offline" in message and DOWNLOAD_HOST in message
    assert f"Put the file in {tmp_path / 'empty' / 'datasets'}" in message  # the cache
    assert "`data.path`" in message and "configs/digits_cnn.yaml" in message
    config = tmp_path / "mnist.yaml"
    config.write_text(yaml.safe_dump({"name": "m", "data": {"kind": "mnist"}, "model": {"kind": "dense"}}))
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["fit", str(config), "--runs-dir", str(runs)])
    assert result.exit_code == 3, result.output
    assert "offline" in result.stderr and "run: " not in result.stdout
    assert not runs.exists()


# ------------------------------------------------------------------------------------ fashion_mnist


def test_fashion_mnist_from_a_folder_of_gzipped_idx(tmp_path: Path) -> None:
    arrays = _idx_folder(tmp_path / "fm", gz=True)
    assert all(p.name.endswith(".gz") for p in (tmp_path / "fm").iterdir())
    splits = load_splits(FashionMnistData(kind="fashion_mnist", path=tmp_path / "fm"), seed=3)
    assert splits.class_names[0] == "T-shirt/top" and splits.class_names[9] == "Ankle boot"
    assert splits.num_classes == 10 and splits.scale == 255.0
    assert splits.sizes() == {"train": 54, "validation": 6, "test": 20}
    assert splits.x_test is not None and splits.y_test is not None
    np.testing.assert_array_equal(splits.x_test, arrays["x_test"])
    np.testing.assert_array_equal(splits.y_test, arrays["y_test"])


def test_fashion_mnist_path_without_the_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"`data\.path`: .*empty does not hold the four IDX files"):
        load_splits(FashionMnistData(kind="fashion_mnist", path=tmp_path / "empty"), seed=3)
    _idx_folder(tmp_path / "three", gz=True)
    (tmp_path / "three" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_splits(FashionMnistData(kind="fashion_mnist", path=tmp_path / "three"), seed=3)


# ------------------------------------------------------------------------------------------- digits


def _keys(x: np.ndarray, y: np.ndarray) -> Counter[tuple[bytes, int]]:
    return Counter((row.tobytes(), int(label)) for row, label in zip(x, y, strict=True))


def test_digits_splits_partition_the_dataset() -> None:
    from sklearn.datasets import load_digits

    splits = load_splits(DigitsData(kind="digits"), seed=1)
    sizes = splits.sizes()
    assert sum(sizes.values()) == DIGITS_TOTAL
    assert sizes["test"] == round(DIGITS_TOTAL * 0.2)
    assert sizes["validation"] == round((DIGITS_TOTAL - sizes["test"]) * 0.1)
    assert splits.input_shape == (8, 8) and splits.scale == 16.0
    assert splits.x_val is not None and splits.y_val is not None
    assert splits.x_test is not None and splits.y_test is not None
    rows = [{r.tobytes() for r in x} for x in (splits.x_train, splits.x_val, splits.x_test)]
    assert sum(map(len, rows)) == DIGITS_TOTAL  # no image twice inside a split
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    bunch = load_digits()
    whole = _keys(bunch.images.astype(np.uint8), bunch.target)
    parts = (
        _keys(splits.x_train, splits.y_train)
        + _keys(splits.x_val, splits.y_val)
        + _keys(splits.x_test, splits.y_test)
    )
    assert parts == whole  # every image once, with its own label


def test_digits_test_split_ignores_the_seed_validation_follows_it() -> None:
    a = load_splits(DigitsData(kind="digits"), seed=1)
    b = load_splits(DigitsData(kind="digits"), seed=2)
    a2 = load_splits(DigitsData(kind="digits"), seed=1)
    assert a.x_test is not None and b.x_test is not None and a.x_val is not None and b.x_val is not None
    np.testing.assert_array_equal(a.x_test, b.x_test)  # same held-out images whatever the seed
    assert a.fingerprint("test") == b.fingerprint("test")
    assert {r.tobytes() for r in a.x_val} != {r.tobytes() for r in b.x_val}  # the draw follows the seed
    assert a.fingerprint("validation") != b.fingerprint("validation")
    assert a.fingerprint("validation") == a2.fingerprint("validation")  # and is reproducible
    assert a.fingerprint("train") == a2.fingerprint("train")


def test_digits_carving_is_stratified() -> None:
    splits = load_splits(DigitsData(kind="digits", test_split=0.2, validation_split=0.1), seed=5)
    assert splits.y_val is not None and splits.y_test is not None
    totals = Counter(np.concatenate([splits.y_train, splits.y_val, splits.y_test]).tolist())
    assert set(totals) == set(range(10))
    train_val = Counter(np.concatenate([splits.y_train, splits.y_val]).tolist())
    for name, labels, fraction, pool in (
        ("test", splits.y_test, 0.2, totals),
        ("validation", splits.y_val, 0.1, train_val),
    ):
        held = Counter(labels.tolist())
        assert set(held) == set(range(10)), name  # every class in every split
        for cls in range(10):
            assert abs(held[cls] - fraction * pool[cls]) <= 1.0, (name, cls, held[cls], pool[cls])


def test_carve_keeps_every_class_even_when_small() -> None:
    y = np.repeat(np.arange(3), [10, 5, 2])
    x = np.arange(len(y) * 2).reshape(len(y), 2)
    x_keep, y_keep, x_held, y_held = carve(x, y, 0.2, seed=0, what="data.validation_split")
    assert x_held is not None and y_held is not None
    assert len(y_held) == round(len(y) * 0.2) == 3
    assert sorted(y_held.tolist()) == [0, 1, 2]  # one of each class, the rare one included
    assert sorted(np.concatenate([x_keep[:, 0], x_held[:, 0]]).tolist()) == x[:, 0].tolist()
    assert carve(x, y, 0.0, seed=0, what="w")[2] is None
    with pytest.raises(DataError, match=r"data\.validation_split=0\.01 of 17 examples leaves an empty split"):
        carve(x, y, 0.01, seed=0, what="data.validation_split")


# ---------------------------------------------------------------------------------------------- npz


def test_npz_problems_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((3, 2)), x_test=np.zeros((1, 2)))
    with pytest.raises(
        DataError, match=r"`data\.path`: .*partial\.npz lacks y_train; it holds x_test, x_train"
    ):
        load_splits(NpzData(kind="npz", path=tmp_path / "partial.npz"), seed=0)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz is not a readable \.npz file"):
        load_splits(NpzData(kind="npz", path=tmp_path / "junk.npz"), seed=0)
    with pytest.raises(DataError, match=r"`data\.path`: .*absent\.npz not found"):
        load_splits(NpzData(kind="npz", path=tmp_path / "absent.npz"), seed=0)
    np.savez(tmp_path / "half.npz", x_train=np.zeros((4, 2)), y_train=np.zeros(4), x_test=np.zeros((1, 2)))
    with pytest.raises(DataError, match=r"half\.npz must hold x and y together"):
        load_splits(NpzData(kind="npz", path=tmp_path / "half.npz"), seed=0)


def _npz(path: Path, task: str = "classification", **arrays: np.ndarray) -> NpzData:
    np.savez(path, **arrays)
    return NpzData(kind="npz", path=path, validation_split=0.0, task=task)  # type: ignore[arg-type]


def test_a_good_npz_loads(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    y = np.array([0, 1, 2, 0, 1, 2])
    splits = load_splits(_npz(tmp_path / "ok.npz", x_train=x, y_train=y, x_test=x[:2], y_test=y[:2]), seed=0)
    assert splits.class_names == ["0", "1", "2"] and splits.scale == 1.0
    assert splits.sizes() == {"train": 6, "validation": 0, "test": 2}
    with pytest.raises(DataError, match="no validation split; set data.validation_split above 0"):
        splits.get("validation")


@pytest.mark.parametrize(
    ("arrays", "pattern"),
    [
        ({"y_train": np.array([0.0, 1.0, np.nan, 1.0])}, r"train label #2 is nan"),
        ({"y_train": np.array([0.0, 1.5, 1.0, 1.0])}, r"train label #1 is 1\.5"),
        ({"y_train": np.array([0, -1, 1, 1])}, r"train label #1 is -1"),
        ({"y_train": np.array([0, 1, 1])}, r"the train split has 4 inputs but 3 labels"),
        ({"y_train": np.array(["a", "b", "a", "b"])}, r"expected integer class indices"),
        ({"x_test": np.zeros((2, 3)), "y_test": np.array([1, 2])}, r"test label #1 is 2; .* 0\.\.1"),
        ({"x_test": np.zeros((2, 3)), "y_test": np.array([1])}, r"test split has 2 inputs but 1 labels"),
        ({"x_test": np.zeros((2, 5)), "y_test": np.array([1, 0])}, r"test inputs have shape \(5,\)"),
        ({"x_train": np.zeros((0, 3)), "y_train": np.zeros(0)}, r"the train split is empty"),
    ],
    ids=[
        "nan",
        "fraction",
        "negative",
        "lengths",
        "strings",
        "out-of-range",
        "test-lengths",
        "shape",
        "empty",
    ],
)
def test_bad_labels_and_shapes_name_the_file(
    tmp_path: Path, arrays: dict[str, np.ndarray], pattern: str
) -> None:
    base = {"x_train": np.zeros((4, 3), dtype=np.float32), "y_train": np.array([0, 1, 0, 1])}
    cfg = _npz(tmp_path / "bad.npz", **{**base, **arrays})
    with pytest.raises(DataError, match=rf"bad\.npz: .*{pattern}"):
        load_splits(cfg, seed=0)


def test_check_pair_directly() -> None:
    x = np.zeros((4, 3), dtype=np.float32)
    np.testing.assert_array_equal(check_pair(x, np.array([[0], [1], [2], [1]]), "train", "f"), [0, 1, 2, 1])
    assert check_pair(x, np.array([0.0, 1.0, 2.0, 1.0]), "train", "f").dtype == np.int64
    with pytest.raises(DataError, match=r"f\.npz: train label #1 is 7; expected a class index in 0\.\.2"):
        check_pair(x, np.array([0, 7, 1, 1]), "train", "f.npz", num_classes=3)
    with pytest.raises(DataError, match="label #3 is inf"):
        check_pair(x, np.array([0, 1, 1, np.inf]), "train", "f.npz")
    x_nan = x.copy()
    x_nan[1, 1] = np.nan
    with pytest.raises(DataError, match=r"f\.npz: train input #1 contains NaN"):
        check_pair(x_nan, np.array([0, 1, 1, 0]), "train", "f.npz")
    with pytest.raises(DataError, match="one class index per example"):
        check_pair(x, np.zeros((4, 3)), "train", "f.npz")


# ---------------------------------------------------------------------------------------------- idx


def test_idx_kind_loads_and_names_the_missing_key(tmp_path: Path) -> None:
    arrays = _idx_folder(tmp_path / "d", gz=False)
    d = tmp_path / "d"
    cfg = IdxData(
        kind="idx",
        train_images=d / "train-images-idx3-ubyte",
        train_labels=d / "train-labels-idx1-ubyte",
        test_images=d / "t10k-images-idx3-ubyte",
        test_labels=d / "t10k-labels-idx1-ubyte",
    )
    splits = load_splits(cfg, seed=0)
    assert splits.sizes() == {"train": 54, "validation": 6, "test": 20}
    assert splits.num_classes == 10 and splits.scale == 255.0
    assert splits.y_test is not None
    np.testing.assert_array_equal(splits.y_test, arrays["y_test"])
    missing = IdxData(kind="idx", train_images=tmp_path / "nope", train_labels=cfg.train_labels)
    with pytest.raises(DataError, match=rf"`data\.train_images`: {tmp_path / 'nope'} not found"):
        load_splits(missing, seed=0)
    folder = IdxData(kind="idx", train_images=d, train_labels=cfg.train_labels)  # a folder, not a file
    with pytest.raises(DataError, match=r"`data\.train_images`"):
        load_splits(folder, seed=0)
    half = IdxData(
        kind="idx", train_images=cfg.train_images, train_labels=cfg.train_labels, test_images=d / "x"
    )
    with pytest.raises(DataError, match=r"`data\.test_images`"):
        load_splits(half, seed=0)
    lonely = cfg.model_copy(update={"test_labels": None})
    with pytest.raises(DataError, match=r"`data\.test_images` and `data\.test_labels` go together"):
        load_splits(lonely, seed=0)


def test_fit_with_a_missing_data_file_exits_3_and_creates_no_run(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "m",
                "data": {"kind": "idx", "train_images": str(tmp_path / "nope"), "train_labels": "x"},
                "model": {"kind": "dense"},
            }
        )
    )
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["fit", str(config), "--runs-dir", str(runs)])
    assert result.exit_code == 3, result.output
    assert "`data.train_images`" in result.stderr and str(tmp_path / "nope") in result.stderr
    assert not runs.exists()


# -------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_changes_with_one_pixel_or_one_label() -> None:
    a = load_splits(DigitsData(kind="digits"), seed=1)
    before = a.fingerprint("test")
    assert len(before) == 16 and before == load_splits(DigitsData(kind="digits"), seed=1).fingerprint("test")
    assert a.x_test is not None and a.y_test is not None
    a.x_test[0, 0, 0] ^= 1
    after_pixel = a.fingerprint("test")
    assert after_pixel != before
    a.x_test[0, 0, 0] ^= 1
    assert a.fingerprint("test") == before
    a.y_test[-1] = (a.y_test[-1] + 1) % 10
    assert a.fingerprint("test") not in (before, after_pixel)


def test_task_is_inferred_from_the_targets(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    two = load_splits(_npz(tmp_path / "b.npz", "auto", x_train=x, y_train=np.arange(10) % 2), seed=0)
    assert (two.task, two.num_outputs, two.class_names) == ("binary", 1, ["0", "1"])
    three = load_splits(_npz(tmp_path / "c.npz", "auto", x_train=x, y_train=np.arange(10) % 3), seed=0)
    assert (three.task, three.num_outputs) == ("classification", 3)
    real = np.linspace(0.0, 1.0, 10) ** 2
    reg = load_splits(_npz(tmp_path / "r.npz", "auto", x_train=x, y_train=real), seed=0)
    assert (reg.task, reg.num_outputs, reg.y_train.shape, reg.class_names) == ("regression", 1, (10, 1), [])
    np.testing.assert_allclose(reg.target_mean, [real.mean()], rtol=1e-6)
    # Integer-valued targets are classes unless the config says regression.
    forced = load_splits(_npz(tmp_path / "f.npz", "regression", x_train=x, y_train=np.arange(10) % 3), seed=0)
    assert forced.task == "regression" and forced.y_train.dtype == np.float32
    with pytest.raises(DataError, match=r"train label #1 is 0\.0123.*set data.task: regression"):
        load_splits(_npz(tmp_path / "g.npz", "classification", x_train=x, y_train=real), seed=0)


def test_regression_statistics_come_from_the_training_part_only(tmp_path: Path) -> None:
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    y = np.linspace(-5.0, 5.0, 100) ** 3
    cfg = NpzData(kind="npz", path=tmp_path / "r.npz", validation_split=0.3)
    np.savez(cfg.path, x_train=x, y_train=y)
    splits = load_splits(cfg, seed=3)
    assert splits.sizes() == {"train": 70, "validation": 30, "test": 0}
    np.testing.assert_allclose(splits.target_mean, [splits.y_train.mean()], rtol=1e-5)
    assert abs(float(splits.target_mean[0]) - float(y.mean())) > 1e-3  # the carved part is left out


# ---------------------------------------------------------------------------------- runs made before

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


@pytest.mark.parametrize("name", ["digits", "colors", "images"])
def test_splits_are_the_ones_dltrain_0_1_0_recorded(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loaders still carve what the fixture runs recorded, so evaluate and resume accept old runs."""
    monkeypatch.chdir(LEGACY.parents[2])  # the configs' data paths are relative to the repository
    cfg = load_config(LEGACY / "configs" / f"{name}.yaml")
    splits = load_splits(cfg.data, cfg.seed)
    run = LEGACY / "runs" / name
    recorded = json.loads((run / "run.json").read_text())["data"]
    assert {k: v for k, v in recorded.items() if k in splits.describe()} == splits.describe()
    assert splits.notes == recorded["notes"]
    fingerprints = {split: splits.fingerprint(split) for split in recorded["fingerprints"]}
    if splits.input_kind != "image_files":
        # Image files count by modification time too, which a checkout does not keep: for them the same
        # files in the same order (manifest.csv, below) are the same fingerprints.
        assert fingerprints == recorded["fingerprints"]
    write_data_files(tmp_path, splits)
    for written in ("state.json", "manifest.csv"):
        assert (tmp_path / "data" / written).exists() == (run / "data" / written).exists(), written
        if not (run / "data" / written).exists():
            continue
        ours, theirs = (tmp_path / "data" / written).read_text(), (run / "data" / written).read_text()
        if written == "state.json":
            # Every encoding recorded then is recorded the same now; keys added since (a csv model's
            # "model_inputs": "raw columns") are the only difference.
            new = json.loads(ours)
            assert {k: v for k, v in new.items() if k in json.loads(theirs)} == json.loads(theirs)
            assert set(new) - set(json.loads(theirs)) <= {"model_inputs"}
        else:
            assert ours == theirs, written
