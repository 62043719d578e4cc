"""``text_folder``: the loader (layouts, bad folders and files), the text stem (vocabulary from the training
split only, masking, reload from raw strings) and fit -> evaluate -> lr-find through the installed CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dltrain.config import TextFolderData
from dltrain.data import load_splits
from dltrain.data.splits import TEST_SEED
from dltrain.data.text import load_text_folder
from dltrain.errors import ConfigError, DataError
from tests.conftest import run_dir_from, run_dltrain

# Each class has words of its own, so a tiny model can tell them apart in two epochs.
WORDS = {
    "sea": ["whale", "ship", "harpoon", "wave", "sail", "captain", "deck", "ocean"],
    "tea": ["bonnet", "ball", "letter", "carriage", "cousin", "parlour", "visit", "dance"],
}
# Words written only into validation / test files, or only into training files (see _write_texts).
ONLY_VALIDATION = "zephyrine"
ONLY_TEST = "quetzalcoatl"
ONLY_TRAIN = "marmalade"


def _sentence(cls: str, i: int, extra: str = "") -> str:
    words = WORDS[cls]
    picked = [words[(i * 3 + k) % len(words)] for k in range(5)]
    return f"The {picked[0]} and the {picked[1]}, {picked[2]}! {picked[3]} {picked[4]}. {extra}\n"


def _write_texts(folder: Path, n: int, extra: str = "", start: int = 0) -> list[Path]:
    paths = []
    for cls in WORDS:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + n):
            path = folder / cls / f"{i:03d}.txt"
            path.write_text(_sentence(cls, i, extra), encoding="utf-8")
            paths.append(path)
    return paths


def _split_layout(root: Path, val_name: str = "valid", n_train: int = 12) -> Path:
    _write_texts(root / "train", n_train, extra=ONLY_TRAIN)
    _write_texts(root / val_name, 4, extra=ONLY_VALIDATION, start=100)
    _write_texts(root / "test", 4, extra=ONLY_TEST, start=200)
    return root


def _cfg(path: Path, **extra: object) -> TextFolderData:
    return TextFolderData.model_validate({"kind": "text_folder", "path": str(path), **extra})


# ------------------------------------------------------------------------------------------ loader


@pytest.mark.parametrize("val_name", ["valid", "val", "validation", "VALID"])
def test_split_layout_reads_every_split_and_its_aliases(tmp_path: Path, val_name: str) -> None:
    root = _split_layout(tmp_path / "corpus", val_name)
    splits = load_splits(_cfg(root, validation_split=0.3), seed=1)
    assert splits.sizes() == {"train": 24, "validation": 8, "test": 8}  # the folder, not validation_split
    assert splits.class_names == ["sea", "tea"] and splits.task == "binary"
    assert splits.input_kind == "text" and splits.input_shape == ()
    assert splits.x_train.dtype == object and isinstance(splits.x_train[0], str)
    assert splits.x_train[0] == _sentence("sea", 0, ONLY_TRAIN)
    assert splits.stem == {"text": {"max_tokens": 20000, "sequence_length": 200, "embedding_dim": 64}}
    assert splits.manifest["validation"][0] == str(root / val_name / "sea" / "100.txt")
    assert splits.manifest["test"][-1] == str(root / "test" / "tea" / "203.txt")
    assert [int(y) for y in splits.y_test] == [0] * 4 + [1] * 4
    assert any(val_name in note for note in splits.notes)


def test_single_folder_layout_carves_test_with_a_fixed_seed_and_validation_with_the_run_seed(
    tmp_path: Path,
) -> None:
    files = _write_texts(tmp_path / "corpus", 20)
    cfg = _cfg(tmp_path / "corpus", test_split=0.2, validation_split=0.25)
    a, b = load_splits(cfg, seed=1), load_splits(cfg, seed=2)
    assert a.sizes() == {"train": 24, "validation": 8, "test": 8}
    assert np.bincount(a.y_test).tolist() == [4, 4]  # stratified
    assert a.manifest["test"] == b.manifest["test"]  # the same held-out texts whatever the run's seed
    assert a.manifest["validation"] != b.manifest["validation"]  # validation follows the run's seed
    listed = [p for split in ("train", "validation", "test") for p in a.manifest[split]]
    assert sorted(listed) == sorted(str(p) for p in files)  # every file in exactly one split
    # texts and manifest stay aligned through both carvings
    for text, path in zip(a.x_test, a.manifest["test"], strict=True):
        assert Path(path).read_text(encoding="utf-8") == text
    assert any(str(TEST_SEED) in note for note in a.notes)


def test_loader_ignores_other_files_and_reads_nested_folders(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    _write_texts(root, 3)
    (root / "sea" / "notes.md").write_text("not a text example")
    (root / "sea" / ".hidden.txt").write_text("editor backup")
    (root / "tea" / "more").mkdir()
    (root / "tea" / "more" / "x.TXT").write_text("A visit to the parlour.")
    raw = load_text_folder(_cfg(root), 0)
    assert len(raw.y_train) == 7 and raw.x_train[-1] == "A visit to the parlour."
    assert any("ignored 1 files" in note for note in raw.notes)


def test_encoding_is_configurable_and_a_bom_is_dropped(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    _write_texts(root, 2)
    (root / "sea" / "bom.txt").write_bytes("\ufeffSpray on the deck.".encode())
    (root / "tea" / "latin.txt").write_bytes("Un caf\xe9 au lait.".encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_text_folder(_cfg(root), 0)
    message = str(err.value)
    assert str(root / "tea" / "latin.txt") in message and "byte 6 (0xe9)" in message
    assert "data.encoding" in message
    raw = load_text_folder(_cfg(root, encoding="latin-1"), 0)
    assert "Un café au lait." in list(raw.x_train)
    (root / "tea" / "latin.txt").unlink()
    raw = load_text_folder(_cfg(root), 0)
    assert "Spray on the deck." in list(raw.x_train)  # no "\ufeff" glued to the first word


def _class_without_txt(root: Path) -> None:
    _write_texts(root, 2)
    (root / "poetry").mkdir()
    (root / "poetry" / "ode.md").write_text("Not a .txt file.")


def _text_without_words(root: Path) -> None:
    _write_texts(root, 2)
    (root / "sea" / "blank.txt").write_text(" ...!\n")


def _one_class(root: Path) -> None:
    (root / "only").mkdir(parents=True)
    (root / "only" / "a.txt").write_text("Hi there.")


def _two_validation_folders(root: Path) -> None:
    for name in ("train", "val", "valid"):
        _write_texts(root / name, 2)


def _extra_test_class(root: Path) -> None:
    _write_texts(root / "train", 2)
    _write_texts(root / "test", 2)
    (root / "test" / "cat").mkdir()
    (root / "test" / "cat" / "a.txt").write_text("Meow meow.")


BAD_FOLDERS = {
    "missing": (lambda root: None, ["does not exist"]),
    "file": (lambda root: root.write_text("x"), ["is a file"]),
    "empty-root": (lambda root: root.mkdir(), ["holds no class folders (it is empty)"]),
    "class-without-txt": (_class_without_txt, ["poetry holds no .txt files (1 files of other types)"]),
    "no-words": (_text_without_words, ["blank.txt: holds no words"]),
    "one-class": (_one_class, ["holds one class folder (only)"]),
    "test-without-train": (lambda root: _write_texts(root / "test", 2), ["has test/ but no train/ folder"]),
    "two-validation-folders": (_two_validation_folders, ["has 2 validation folders (valid, val); keep one"]),
    "extra-test-class": (_extra_test_class, ["has cat that", "Every split needs the same class folders"]),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_bad_folders_and_files_name_the_path_and_the_key(tmp_path: Path, case: str) -> None:
    make, expected = BAD_FOLDERS[case]
    root = tmp_path / "corpus"
    make(root)
    with pytest.raises(DataError) as err:
        load_text_folder(_cfg(root), 0)
    message = str(err.value)
    for part in expected:
        assert part in message, message
    assert str(root) in message and "\n" not in message
    if case != "no-words":  # a file's own problem names the file, not a key
        assert "`data.path`" in message


def test_config_conflicts_are_reported(tmp_path: Path) -> None:
    root = _split_layout(tmp_path / "corpus")
    with pytest.raises(DataError, match="`data.test_split` is 0.2 but .*test already holds the test split"):
        load_text_folder(_cfg(root, test_split=0.2), 0)
    with pytest.raises(ConfigError, match="`data.encoding` received 'utf-9'"):
        load_text_folder(_cfg(root, encoding="utf-9"), 0)
    with pytest.raises(ConfigError, match="`data.task` is regression"):
        load_text_folder(_cfg(root, task="regression"), 0)


def test_loader_module_stays_out_of_tensorflow() -> None:
    code = (
        "import sys, dltrain.data.text; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ text stem


def test_vocabulary_is_learned_from_the_training_texts_only(tmp_path: Path) -> None:
    """Validation carved with the seed: its files get a word of their own, which must not reach the
    vocabulary (carving depends on the labels and the seed only, so the second load holds out the same files)."""
    from dltrain.train.step import prepare_stem

    root = tmp_path / "corpus"
    _write_texts(root, 10, extra=ONLY_TRAIN)
    cfg = _cfg(root, validation_split=0.3, test_split=0.2, max_tokens=100)
    first = load_splits(cfg, seed=3)
    for path in first.manifest["validation"]:
        Path(path).write_text(_sentence("sea", 0, ONLY_VALIDATION))
    for path in first.manifest["test"]:
        Path(path).write_text(_sentence("tea", 0, ONLY_TEST))
    splits = load_splits(cfg, seed=3)
    assert splits.manifest == first.manifest
    assert all(ONLY_VALIDATION in text for text in splits.x_val) and all(
        ONLY_TEST in t for t in splits.x_test
    )
    vocabulary = prepare_stem(splits)["text"]["vocabulary"]
    assert vocabulary[:2] == ["", "[UNK]"]
    assert ONLY_TRAIN in vocabulary and "harpoon" in vocabulary and "parlour" in vocabulary
    assert ONLY_VALIDATION not in vocabulary and ONLY_TEST not in vocabulary
    assert "the" in vocabulary and "The" not in vocabulary and "whale," not in vocabulary  # standardised
    assert prepare_stem(splits)["text"]["vocabulary"] == vocabulary  # deterministic: resume rebuilds it


def _spec(vocabulary: list[str], sequence_length: int) -> dict[str, object]:
    return {
        "max_tokens": 50,
        "sequence_length": sequence_length,
        "embedding_dim": 4,
        "vocabulary": vocabulary,
    }


@pytest.mark.parametrize(
    "model_cfg",
    [
        {"kind": "rnn", "cell": "lstm", "units": [6]},
        {"kind": "rnn", "cell": "gru", "units": [6, 4], "bidirectional": True},
        {"kind": "dense", "units": [5]},
    ],
    ids=["lstm", "bidirectional-gru", "dense"],
)
def test_padding_is_masked_so_the_sequence_length_does_not_change_a_short_texts_output(
    model_cfg: dict[str, object],
) -> None:
    """Weights copied between a model padding to 4 tokens and one padding to 12 give the same outputs for
    texts of at most 4 tokens only if the padding is masked (an RNN stops at the text's end; the dense model
    averages the real tokens only)."""
    import tensorflow as tf

    from dltrain.config import Config
    from dltrain.models import build_model
    from dltrain.models.text import adapt_vocabulary

    texts = np.array(
        ["The whale and the ship.", "A ball, a letter; a visit!", "deck deck deck"], dtype=object
    )
    vocabulary = adapt_vocabulary(texts, {"max_tokens": 50, "sequence_length": 4})
    cfg = Config.model_validate(
        {"name": "t", "data": {"kind": "text_folder", "path": "x"}, "model": model_cfg}
    ).model
    short, long = (
        build_model(cfg, input_shape=(), num_outputs=3, scale=1.0, stem={"text": _spec(vocabulary, n)})
        for n in (4, 12)
    )
    long.set_weights(short.get_weights())
    batch = tf.constant(["the whale", "a visit to the", "unseen words here"])
    np.testing.assert_allclose(np.asarray(short(batch)), np.asarray(long(batch)), atol=1e-6)
    if model_cfg["kind"] == "dense":
        kinds = [type(layer).__name__ for layer in short.layers]
        assert "GlobalAveragePooling1D" in kinds and "Flatten" not in kinds


# ------------------------------------------------------------------------------------------ end to end


def test_fit_evaluate_and_lr_find_on_a_text_folder(tmp_path: Path) -> None:
    """Under MirroredStrategy on two logical CPUs: strings go through the distributed input pipeline."""
    root = _split_layout(tmp_path / "corpus", n_train=24)
    cfg_path = tmp_path / "text.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "name": "e2e_text",
                "seed": 5,
                "data": {
                    "kind": "text_folder",
                    "path": str(root),
                    "batch_size": 8,
                    "max_tokens": 64,
                    "sequence_length": 8,
                    "embedding_dim": 8,
                },
                "model": {"kind": "rnn", "cell": "gru", "units": [8]},
                "optimizer": {"kind": "adam", "learning_rate": 1e-2},
                "train": {"epochs": 2},
                "runtime": {"strategy": "mirrored"},
            }
        )
    )
    env = {"DLTRAIN_CPU_DEVICES": "2"}
    proc = run_dltrain("fit", str(cfg_path), "--runs-dir", str(tmp_path / "runs"), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_from(proc.stdout)
    record = json.loads((run / "run.json").read_text())
    assert record["runtime"]["replicas"] == 2
    assert record["data"]["input_kind"] == "text" and record["data"]["sizes"]["validation"] == 8

    vocabulary = (run / "data" / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    assert vocabulary[:2] == ["", "[UNK]"]
    assert ONLY_TRAIN in vocabulary and "harpoon" in vocabulary
    assert ONLY_VALIDATION not in vocabulary and ONLY_TEST not in vocabulary
    state = json.loads((run / "data" / "state.json").read_text())
    assert state["stem"]["text"]["vocabulary_file"] == "data/vocabulary.txt"
    with open(run / "data" / "manifest.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["split"] for r in rows} == {"train", "validation", "test"} and len(rows) == 48 + 8 + 8

    proc = run_dltrain("evaluate", str(run), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["examples"] == 8 and 0.0 <= metrics["accuracy"] <= 1.0
    with open(run / "eval" / "test" / "top_losses.csv") as fh:
        assert next(csv.DictReader(fh))["item"].endswith(".txt")

    # model.keras takes raw strings (built-in Keras layers only: no custom objects to register)
    import keras

    model = keras.models.load_model(run / "model.keras", compile=False)
    texts = np.array(["The whale and the harpoon.", "A dance, a ball!", "Unknown words only."], dtype=object)
    probabilities = model.predict(texts, verbose=0)
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    proc = run_dltrain(
        "lr-find",
        str(cfg_path),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--set",
        "lr_find.num_steps=20",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = next((tmp_path / "runs").glob("e2e_text-lrfind-*"))
    suggestion = json.loads((found / "lr_find" / "suggestion.json").read_text())
    assert suggestion["points"] > 10
