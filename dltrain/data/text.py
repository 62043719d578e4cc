"""``text_folder``: text files in class folders, read and checked before TensorFlow starts (light zone).

Two layouts, as Keras' ``text_dataset_from_directory`` and fast.ai read them::

    root/train/<class>/*.txt      root/valid/ (or val/, validation/) and root/test/ optional
    root/<class>/*.txt            validation and test carved with data.validation_split / data.test_split

One file is one example. Every file is decoded here with ``data.encoding``, so a missing folder, an empty
class, an undecodable byte or a file with no words is an exit 3 naming the path (and the byte) and the config
key, not a tf.data error mid-epoch. The splits hold the texts themselves (NumPy object arrays of str); the
model turns them into tokens (``dltrain.models.text``) with a vocabulary learned on the training split only.
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.data.builtin import DATASETS, RawData
from dltrain.data.splits import carve_indices
from dltrain.errors import ConfigError, DataError

TEXT_EXTENSION = ".txt"
VALIDATION_NAMES = ("valid", "val", "validation")
# The single-folder layout's test split is drawn with a fixed seed, not the experiment's (as for the digits and
# image folders), so configs with different seeds are still scored on the same held-out texts.
TEXT_TEST_SEED = 20240101
# A character TextVectorization keeps as (part of) a word: anything but whitespace and the ASCII punctuation
# its default standardisation ("lower_and_strip_punctuation") deletes. A text without one becomes all padding.
_WORD_CHAR = re.compile(r"""[^\s!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']""")


@dataclass
class _Split:
    """One split's files, in sorted order, with the index of their class folder and their decoded text."""

    folder: Path
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    ignored: int = 0  # files that do not end in .txt


# ------------------------------------------------------------------------------------------ scanning


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _subfolders(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_dir() and not _is_hidden(e.name))
    except OSError as exc:
        raise DataError(f"`data.path`: cannot read {folder} ({exc.strerror}).") from None


def _text_files(folder: Path) -> tuple[list[str], int]:
    """.txt files under ``folder`` (sub-folders too, as Keras reads them), sorted; and how many others."""
    found: list[str] = []
    ignored = 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            if name.lower().endswith(TEXT_EXTENSION):
                found.append(os.path.join(dirpath, name))
            else:
                ignored += 1
    return found, ignored


def _class_names(folder: Path) -> list[str]:
    names = _subfolders(folder)
    if not names:
        loose, _ = _text_files(folder)
        hint = (
            f"it holds {len(loose)} .txt files but no class folders; move them into <class>/ folders"
            if loose
            else "it is empty"
        )
        raise DataError(
            f"`data.path`: {folder} holds no class folders ({hint}). Expected {folder}/<class>/*.txt, or "
            "train/<class>/, valid/<class>/ and test/<class>/ folders."
        )
    return names


def _check_same_classes(split: Path, names: list[str], train_names: list[str], train: Path) -> None:
    missing = sorted(set(train_names) - set(names))
    extra = sorted(set(names) - set(train_names))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing)}")
        if extra:
            parts.append(f"has {', '.join(extra)} that {train} does not")
        raise DataError(
            f"`data.path`: the class folders of {split} differ from those of {train}: it {'; '.join(parts)}. "
            "Every split needs the same class folders."
        )


def _split_folders(root: Path) -> dict[str, Path]:
    """The split folders of the train/valid/test layout (names matched case-insensitively); {} when the root
    is itself the class folders."""
    by_lower: dict[str, list[str]] = {}
    for name in _subfolders(root):
        by_lower.setdefault(name.lower(), []).append(name)
    split_named = [name for key in ("test", *VALIDATION_NAMES) for name in by_lower.get(key, [])]
    if "train" not in by_lower:
        if split_named:
            # A class called "test" is possible, but a root with test/ and no train/ is far more often a
            # split layout whose train/ folder is missing or misspelt.
            raise DataError(
                f"`data.path`: {root} has {', '.join(n + '/' for n in split_named)} but no train/ folder. "
                f"The split layout needs {root}/train/<class>/*.txt; the single-folder layout, class folders only."
            )
        return {}
    found = {"train": root / by_lower["train"][0]}
    val = [name for key in VALIDATION_NAMES for name in by_lower.get(key, [])]
    if len(val) > 1:
        raise DataError(
            f"`data.path`: {root} has {len(val)} validation folders ({', '.join(val)}); keep one."
        )
    if val:
        found["validation"] = root / val[0]
    if "test" in by_lower:
        found["test"] = root / by_lower["test"][0]
    return found


# ------------------------------------------------------------------------------------------ reading


def check_encoding(encoding: str) -> str:
    """The codec name of ``encoding``; an unknown name is a config error (exit 2)."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(
            f"`data.encoding` received {encoding!r}, which is not a text encoding Python knows; "
            "use e.g. utf-8, latin-1 or cp1252."
        ) from None


def read_text(path: str, encoding: str) -> str:
    """The text of ``path``; a byte that does not decode is a ``DataError`` naming the file and its offset.

    A UTF-8 byte-order mark is dropped (Windows editors write one), so it does not stick to the first word.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}).") from None
    codec = "utf-8-sig" if encoding == "utf-8" else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: byte {exc.start} (0x{data[exc.start]:02x}) is not valid {encoding} ({exc.reason}). "
            f"Re-save the file as {encoding}, or set `data.encoding` to the one it was written in (e.g. cp1252)."
        ) from None


def has_words(text: str) -> bool:
    """Whether the model's tokenizer finds at least one word in ``text`` (else it becomes all padding)."""
    return _WORD_CHAR.search(text) is not None


def _scan_split(folder: Path, class_names: list[str], encoding: str) -> _Split:
    split = _Split(folder)
    for label, name in enumerate(class_names):
        files, ignored = _text_files(folder / name)
        if not files:
            other = f" ({ignored} files of other types)" if ignored else ""
            raise DataError(
                f"`data.path`: {folder / name} holds no .txt files{other}; remove the folder or add text files."
            )
        for path in files:
            text = read_text(path, encoding)
            if not has_words(text):
                raise DataError(
                    f"{path}: holds no words ({len(text)} characters of spaces and punctuation); "
                    "remove the file or give it its text."
                )
            split.texts.append(text)
        split.paths.extend(files)
        split.labels.extend([label] * len(files))
        split.ignored += ignored
    return split


def _as_arrays(split: _Split) -> tuple[np.ndarray, np.ndarray]:
    texts = np.empty(len(split.texts), dtype=object)  # object, not "<U{longest}": no padding to the longest
    texts[:] = split.texts
    return texts, np.array(split.labels, dtype=np.int64)


# ------------------------------------------------------------------------------------------ loading


@DATASETS.register("text_folder")
def load_text_folder(cfg: Any) -> RawData:
    """Scan ``cfg.path``, decode every file and return the splits as texts.

    Raises:
        ConfigError: ``data.encoding`` is not an encoding.
        DataError: a missing or empty folder, a class folder with no .txt files, class folders that differ
            between splits, a file that does not decode or holds no words.
    """
    encoding = check_encoding(cfg.encoding)
    if cfg.task == "regression":
        raise ConfigError(
            "`data.task` is regression, but text_folder labels are class folders; "
            "set it to auto, classification or binary."
        )
    root = Path(cfg.path)
    if not root.exists():
        raise DataError(f"`data.path`: {root} does not exist; point data.path at the text folder.")
    if not root.is_dir():
        raise DataError(
            f"`data.path`: {root} is a file; data.kind text_folder needs a folder of class folders."
        )
    folders = _split_folders(root)
    train_folder = folders.get("train", root)
    class_names = _class_names(train_folder)
    if len(class_names) < 2:
        raise DataError(
            f"`data.path`: {train_folder} holds one class folder ({class_names[0]}); a classifier needs two "
            "or more."
        )
    if "test" in folders and cfg.test_split > 0:
        raise DataError(
            f"`data.test_split` is {cfg.test_split} but {folders['test']} already holds the test split; "
            "set data.test_split: 0 or remove the folder."
        )
    splits = {"train": _scan_split(train_folder, class_names, encoding)}
    for name in ("validation", "test"):
        if name in folders:
            _check_same_classes(folders[name], _class_names(folders[name]), class_names, train_folder)
            splits[name] = _scan_split(folders[name], class_names, encoding)

    notes: list[str] = []
    ignored = sum(s.ignored for s in splits.values())
    if ignored:
        notes.append(f"ignored {ignored} files that do not end in {TEXT_EXTENSION}")
    if "validation" in splits:
        notes.append(f"validation: {splits['validation'].folder} (data.validation_split not used)")
    x_train, y_train = _as_arrays(splits["train"])
    manifest = {"train": list(splits["train"].paths)}
    x_val = y_val = x_test = y_test = None
    if "validation" in splits:
        x_val, y_val = _as_arrays(splits["validation"])
        manifest["validation"] = list(splits["validation"].paths)
    if "test" in splits:
        x_test, y_test = _as_arrays(splits["test"])
        manifest["test"] = list(splits["test"].paths)
    elif cfg.test_split > 0:
        keep, held = carve_indices(y_train, cfg.test_split, TEXT_TEST_SEED, "data.test_split")
        paths = manifest["train"]
        manifest["train"], manifest["test"] = [paths[i] for i in keep], [paths[i] for i in held]
        x_train, y_train, x_test, y_test = x_train[keep], y_train[keep], x_train[held], y_train[held]
        notes.append(f"test: {len(y_test)} texts carved from train with the fixed seed {TEXT_TEST_SEED}")

    return RawData(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        class_names=class_names,
        scale=1.0,
        source=str(root),
        notes=notes,
        task="classification",
        input_kind="text",
        input_shape=(),
        stem={
            "text": {
                "max_tokens": int(cfg.max_tokens),
                "sequence_length": int(cfg.sequence_length),
                "embedding_dim": int(cfg.embedding_dim),
            }
        },
        state={
            "text": {
                "root": str(root),
                "layout": "split folders" if folders else "single folder",
                "encoding": encoding,
                "standardize": "lower_and_strip_punctuation",
                "split": "whitespace",
                "vocabulary_from": "train",
            }
        },
        manifest=manifest,
    )
