"""Dataset loaders on files the tests write: IDX, npz, the Keras cache, Fashion-MNIST folders, digits."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dltrain.cli import app
from dltrain.config import DigitsData, FashionMnistData, IdxData, MnistData, NpzData
from dltrain.data import load_splits
from dltrain.data.base import check_pair
from dltrain.data.sources import DOWNLOAD_HOST, _host_reachable, read_idx, write_idx
from dltrain.errors import DataError

RNG = np.random.default_rng(0)


def _images(n: int) -> tuple[np.ndarray, np.ndarray]:
    return RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def _idx_folder(folder: Path, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    (xtr, ytr), (xte, yte) = _images(60), _images(20)
    write_idx(folder / f"train-images-idx3-ubyte{ext}", xtr)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", ytr)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", xte)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", yte)


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path: Path, name: str) -> None:
    x, _ = _images(5)
    write_idx(tmp_path / name, x)
    if name.endswith(".gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / name), x)


def test_damaged_idx_files_are_named(tmp_path: Path) -> None:
    x, _ = _images(5)
    write_idx(tmp_path / "a.idx", x)
    data = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(data[:-100])
    with pytest.raises(DataError, match="short.idx.*truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x12\x34" + data[2:])
    with pytest.raises(DataError, match="magic.idx: not an IDX file"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(data)[:30])
    with pytest.raises(DataError, match="bad.gz"):
        read_idx(tmp_path / "bad.gz")


def test_mnist_from_an_npz_path_and_an_idx_folder(tmp_path: Path) -> None:
    (xtr, ytr), (xte, yte) = _images(50), _images(10)
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    splits = load_splits(MnistData(kind="mnist", path=tmp_path / "mnist.npz", validation_split=0.2), seed=1)
    assert splits.sizes() == {"train": 40, "validation": 10, "test": 10}
    assert splits.scale == 255.0 and splits.input_shape == (28, 28)
    _idx_folder(tmp_path / "idx", gz=False)
    splits = load_splits(MnistData(kind="mnist", path=tmp_path / "idx"), seed=1)
    assert splits.sizes()["test"] == 20


def test_mnist_from_the_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (xtr, ytr), (xte, yte) = _images(30), _images(10)
    (tmp_path / "datasets").mkdir()
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    splits = load_splits(MnistData(kind="mnist"), seed=1)
    assert splits.source.endswith("mnist.npz") and splits.sizes()["test"] == 10


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
    assert "offline" in message and "data.path" in message and "digits_cnn.yaml" in message
    config = tmp_path / "mnist.yaml"
    config.write_text(yaml.safe_dump({"name": "m", "data": {"kind": "mnist"}, "model": {"kind": "dense"}}))
    result = CliRunner().invoke(app, ["fit", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 3
    assert not (tmp_path / "runs").exists()


def test_fashion_mnist_from_a_folder_of_gzipped_idx(tmp_path: Path) -> None:
    _idx_folder(tmp_path / "fm", gz=True)
    splits = load_splits(FashionMnistData(kind="fashion_mnist", path=tmp_path / "fm"), seed=3)
    assert splits.class_names[0] == "T-shirt/top" and splits.num_classes == 10
    assert splits.sizes() == {"train": 54, "validation": 6, "test": 20}


def test_fashion_mnist_path_without_the_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="`data.path`.*four IDX files"):
        load_splits(FashionMnistData(kind="fashion_mnist", path=tmp_path / "empty"), seed=3)


def _rows(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x}


def test_digits_splits_are_disjoint_and_the_test_split_ignores_the_seed() -> None:
    a = load_splits(DigitsData(kind="digits"), seed=1)
    b = load_splits(DigitsData(kind="digits"), seed=2)
    assert sum(a.sizes().values()) == 1797
    assert a.x_val is not None and a.x_test is not None
    # sklearn's digits has a few exact duplicate images; compare by index-free content only loosely
    assert len(_rows(a.x_train) & _rows(a.x_test)) <= 5
    np.testing.assert_array_equal(a.x_test, b.x_test)  # same held-out images whatever the seed
    assert not np.array_equal(a.x_val, b.x_val)  # the validation draw follows the seed
    assert set(np.unique(a.y_val)) == set(range(10))  # stratified: every class in validation


def test_npz_problems_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((3, 2)))
    with pytest.raises(DataError, match="lacks y_train; it holds x_train"):
        load_splits(NpzData(kind="npz", path=tmp_path / "partial.npz"), seed=0)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz is not a readable .npz"):
        load_splits(NpzData(kind="npz", path=tmp_path / "junk.npz"), seed=0)


def test_bad_labels_and_shapes() -> None:
    x = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(DataError, match="label #2 is nan"):
        check_pair(x, np.array([0.0, 1.0, np.nan, 1.0]), "train", "f.npz")
    with pytest.raises(DataError, match="label #1 is 7"):
        check_pair(x, np.array([0, 7, 1, 1]), "train", "f.npz", num_classes=3)
    with pytest.raises(DataError, match="4 inputs but 3 labels"):
        check_pair(x, np.array([0, 1, 1]), "train", "f.npz")
    x_nan = x.copy()
    x_nan[1, 1] = np.nan
    with pytest.raises(DataError, match="input #1 contains NaN"):
        check_pair(x_nan, np.array([0, 1, 1, 0]), "train", "f.npz")


def test_idx_kind_names_the_missing_key(tmp_path: Path) -> None:
    cfg = IdxData(kind="idx", train_images=tmp_path / "nope", train_labels=tmp_path / "nope2")
    with pytest.raises(DataError, match="`data.train_images`"):
        load_splits(cfg, seed=0)


def test_fingerprint_changes_with_one_pixel() -> None:
    a = load_splits(DigitsData(kind="digits"), seed=1)
    before = a.fingerprint("test")
    assert a.x_test is not None
    a.x_test[0, 0, 0] ^= 1
    assert a.fingerprint("test") != before
