"""``text_folder``: text files in class folders, read and checked before TensorFlow starts (light zone).

Two layouts, as Keras' ``text_dataset_from_directory`` and fast.ai read them (``dltrain.data.folders``)::

    root/train/<class>/*.txt      root/valid/ (or val/, validation/) and root/test/ optional
    root/<class>/*.txt            validation and test carved with data.validation_split / data.test_split

One file is one example. Every file is decoded here with ``data.encoding``, so a missing folder, an empty
class, an undecodable byte or a file with no words is an exit 3 naming the path (and the byte) and the config
key, not a tf.data error mid-epoch. The splits hold the texts themselves (NumPy object arrays of str); the
model turns them into tokens (``dltrain.models.text``) with a vocabulary learned on the training split only.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from dltrain.config.schema import TextFolderData
from dltrain.data.folders import FolderKind, as_arrays, check_test_split, find_layout, scan_layout
from dltrain.data.loading import DATASETS
from dltrain.data.splits import TEST_SEED, Splits, carve_indices
from dltrain.errors import ConfigError, DataError

TEXT_EXTENSION = ".txt"
# A character TextVectorization keeps as (part of) a word: anything but whitespace and the ASCII punctuation
# its default standardisation ("lower_and_strip_punctuation") deletes. A text without one becomes all padding.
_WORD_CHAR = re.compile(r"""[^\s!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']""")


def _no_text_files(folder: Path, ignored: int) -> str:
    other = f" ({ignored} files of other types)" if ignored else ""
    return f"`data.path`: {folder} holds no .txt files{other}; remove the folder or add text files."


TEXT_FILES = FolderKind(
    data_kind="text_folder",
    extensions=(TEXT_EXTENSION,),
    files=".txt files",
    pattern="*.txt",
    empty_class=_no_text_files,
    split_names_need_train=True,
)


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


def read_example(path: str, encoding: str) -> str:
    """The text of one example file; a file that does not decode or holds no words is a ``DataError``."""
    text = read_text(path, encoding)
    if not has_words(text):
        raise DataError(
            f"{path}: holds no words ({len(text)} characters of spaces and punctuation); "
            "remove the file or give it its text."
        )
    return text


# ------------------------------------------------------------------------------------------ loading


@DATASETS.register("text_folder")
def load_text_folder(cfg: TextFolderData, seed: int) -> Splits:
    """Scan ``cfg.path``, decode every file and return the splits as texts (nothing here is drawn with ``seed``).

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
    layout = find_layout(root, TEXT_FILES, "text folder")
    check_test_split(layout, cfg.test_split)
    texts: dict[str, str] = {}

    def read(path: str) -> None:
        texts[path] = read_example(path, encoding)

    splits = scan_layout(layout, TEXT_FILES, read)

    notes: list[str] = []
    ignored = sum(s.ignored for s in splits.values())
    if ignored:
        notes.append(f"ignored {ignored} files that do not end in {TEXT_EXTENSION}")
    if "validation" in splits:
        notes.append(f"validation: {splits['validation'].folder} (data.validation_split not used)")
    arrays = {
        name: as_arrays([texts[path] for path in split.paths], split.labels) for name, split in splits.items()
    }
    x_train, y_train = arrays["train"]
    manifest = {"train": list(splits["train"].paths)}
    x_val = y_val = x_test = y_test = None
    if "validation" in splits:
        x_val, y_val = arrays["validation"]
        manifest["validation"] = list(splits["validation"].paths)
    if "test" in splits:
        x_test, y_test = arrays["test"]
        manifest["test"] = list(splits["test"].paths)
    elif cfg.test_split > 0:
        keep, held = carve_indices(y_train, cfg.test_split, TEST_SEED, "data.test_split")
        paths = manifest["train"]
        manifest["train"], manifest["test"] = [paths[i] for i in keep], [paths[i] for i in held]
        x_train, y_train, x_test, y_test = x_train[keep], y_train[keep], x_train[held], y_train[held]
        notes.append(f"test: {len(y_test)} texts carved from train with the fixed seed {TEST_SEED}")

    return Splits(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        class_names=layout.class_names,
        scale=1.0,
        source=str(root),
        notes=notes,
        task="classification",
        input_kind="text",
        shape=(),
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
                "layout": layout.name,
                "encoding": encoding,
                "standardize": "lower_and_strip_punctuation",
                "split": "whitespace",
                "vocabulary_from": "train",
            }
        },
        manifest=manifest,
    )
