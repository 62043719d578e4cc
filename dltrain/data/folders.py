"""Class-folder datasets: the one scanner behind ``image_folder`` and ``text_folder`` (light zone).

Two layouts, as Keras' ``*_dataset_from_directory`` and fast.ai read them::

    root/train/<class>/<files>    root/valid/ (or val/, validation/) and root/test/ optional
    root/<class>/<files>          validation and test carved with data.validation_split / data.test_split

Which files count is a ``FolderKind`` (image extensions, or .txt); files and folders starting with ``.`` or
``__`` are hidden. Folder names are matched case-insensitively, files are listed in sorted order (sub-folders
of a class folder too), so the same tree always gives the same splits. Problems are ``DataError`` naming
``data.path`` and the folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dltrain.errors import DataError

log = logging.getLogger(__name__)

VALIDATION_NAMES = ("valid", "val", "validation")
"""Names of the validation folder in the split layout (one of them, in any case)."""


@dataclass(frozen=True)
class FolderKind:
    """What one kind of class-folder dataset counts as an example, and how its messages name things."""

    data_kind: str
    """The ``data.kind`` ("image_folder"), for messages."""
    extensions: tuple[str, ...]
    """File name endings that make an example, lower case (matched case-insensitively)."""
    files: str
    """The examples in messages: "images", ".txt files"."""
    pattern: str
    """An example file name in messages: "*.png"."""
    empty_class: Callable[[Path, int], str]
    """The message for a class folder without examples (its path, the number of other files in it)."""
    split_names_need_train: bool = False
    """A root with test/ or valid/ but no train/ is an error (a misspelt split layout) rather than classes
    named "test" or "valid"."""


@dataclass
class FolderSplit:
    """One split's files, in sorted order, with the index of their class folder."""

    folder: Path
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    ignored: int = 0  # files that are not examples of the kind


@dataclass(frozen=True)
class Layout:
    """Where the splits of a root are: split folders (train, and validation and test when there), or none
    (the root holds the class folders), and the training split's class names."""

    root: Path
    folders: dict[str, Path]
    train_folder: Path
    class_names: list[str]

    @property
    def name(self) -> str:
        return "split folders" if self.folders else "single folder"


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def subfolders(folder: Path) -> list[str]:
    """The visible sub-folders of ``folder``, sorted."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_dir() and not is_hidden(e.name))
    except OSError as exc:
        raise DataError(f"`data.path`: cannot read {folder} ({exc.strerror}).") from None


def example_files(folder: Path, kind: FolderKind) -> tuple[list[str], int]:
    """The example files under ``folder`` (sub-folders too, as Keras reads them), sorted; and how many
    other files there are.

    Symbolic links to folders are followed once: a link back to a folder already being read (``cat/loop -> .``)
    is skipped with a warning, so a loop cannot repeat a class's files.
    """
    found: list[str] = []
    ignored = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            log.warning("skipped %s: a link to a folder already read (a loop)", dirpath)
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            if is_hidden(name):
                continue
            if name.lower().endswith(kind.extensions):
                found.append(os.path.join(dirpath, name))
            else:
                ignored += 1
    return found, ignored


def check_each_file_once(splits: dict[str, Sequence[str]]) -> None:
    """A file reached twice (through a link, or a hard link) would sit in two splits or two classes: the held-out
    scores would not be honest. Raise ``DataError`` naming both paths."""
    first: dict[str, tuple[str, str]] = {}
    for split, paths in splits.items():
        for path in paths:
            real = os.path.realpath(path)
            try:
                st = os.stat(real)
                key = f"{st.st_dev}:{st.st_ino}"
            except OSError:
                key = real
            if key in first:
                other_split, other = first[key]
                where = "the same split" if other_split == split else f"{other_split} and {split}"
                raise DataError(
                    f"`data.path`: {path} is the same file as {other} ({where}): one file is read more than once "
                    "(a link, or a hard link). Remove the duplicate so that held-out scores stay honest."
                )
            first[key] = (split, path)


def class_names(folder: Path, kind: FolderKind) -> list[str]:
    """The class folders of one split folder; none is an error saying what the folder holds instead."""
    names = subfolders(folder)
    if not names:
        loose, _ = example_files(folder, kind)
        hint = (
            f"it holds {len(loose)} {kind.files} but no class folders; move them into <class>/ folders"
            if loose
            else "it is empty"
        )
        raise DataError(
            f"`data.path`: {folder} holds no class folders ({hint}). Expected {folder}/<class>/{kind.pattern}, "
            "or train/<class>/, valid/<class>/ and test/<class>/ folders."
        )
    return names


def check_same_classes(split: Path, names: list[str], train_names: list[str], train: Path) -> None:
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


def split_folders(root: Path, kind: FolderKind) -> dict[str, Path]:
    """The split folders of the train/valid/test layout (names matched case-insensitively); {} when the root
    is itself the class folders."""
    by_lower: dict[str, list[str]] = {}
    for name in subfolders(root):
        by_lower.setdefault(name.lower(), []).append(name)
    if "train" not in by_lower:
        split_named = [name for key in ("test", *VALIDATION_NAMES) for name in by_lower.get(key, [])]
        if kind.split_names_need_train and split_named:
            # A class called "test" is possible, but a root with test/ and no train/ is far more often a
            # split layout whose train/ folder is missing or misspelt.
            raise DataError(
                f"`data.path`: {root} has {', '.join(n + '/' for n in split_named)} but no train/ folder. "
                f"The split layout needs {root}/train/<class>/{kind.pattern}; the single-folder layout, class "
                "folders only."
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


def find_layout(root: Path, kind: FolderKind, what: str) -> Layout:
    """Check ``root`` (``data.path``, "the ``what``") and find its layout and the training classes.

    Raises:
        DataError: the root is missing or a file, holds no class folders, or only one.
    """
    if not root.exists():
        raise DataError(f"`data.path`: {root} does not exist; point data.path at the {what}.")
    if not root.is_dir():
        raise DataError(
            f"`data.path`: {root} is a file; data.kind {kind.data_kind} needs a folder of class folders."
        )
    folders = split_folders(root, kind)
    train_folder = folders.get("train", root)
    names = class_names(train_folder, kind)
    if len(names) < 2:
        raise DataError(
            f"`data.path`: {train_folder} holds one class folder ({names[0]}); a classifier needs two or more."
        )
    return Layout(root, folders, train_folder, names)


def scan_split(
    folder: Path, names: list[str], kind: FolderKind, visit: Callable[[str], None] | None = None
) -> FolderSplit:
    """The example files of each class folder of ``folder``, labelled by the index of the class in ``names``.

    ``visit`` is called on every file, in order, once its class folder has been listed (the text loader
    reads and checks each file there, so the first problem in folder order is the one reported).
    """
    split = FolderSplit(folder)
    for label, name in enumerate(names):
        files, ignored = example_files(folder / name, kind)
        if not files:
            raise DataError(kind.empty_class(folder / name, ignored))
        if visit is not None:
            for path in files:
                visit(path)
        split.paths.extend(files)
        split.labels.extend([label] * len(files))
        split.ignored += ignored
    return split


def scan_layout(
    layout: Layout, kind: FolderKind, visit: Callable[[str], None] | None = None
) -> dict[str, FolderSplit]:
    """Scan train, then validation and test where they have folders (whose classes must be train's)."""
    splits = {"train": scan_split(layout.train_folder, layout.class_names, kind, visit)}
    for name in ("validation", "test"):
        if name in layout.folders:
            folder = layout.folders[name]
            check_same_classes(folder, class_names(folder, kind), layout.class_names, layout.train_folder)
            splits[name] = scan_split(folder, layout.class_names, kind, visit)
    return splits


def check_test_split(layout: Layout, test_split: float) -> None:
    """``data.test_split`` carves a test split only where there is no test/ folder."""
    if "test" in layout.folders and test_split > 0:
        raise DataError(
            f"`data.test_split` is {test_split} but {layout.folders['test']} already holds the test split; "
            "set data.test_split: 0 or remove the folder."
        )


def as_arrays(items: Sequence[str], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Items (paths or texts) as an object array of str, and labels as int64.

    Object, not "<U{longest}": each string once in memory, shared with the manifest (a fixed-width str array
    would cost 4 bytes a character of the longest item, for every item).
    """
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out, np.array(labels, dtype=np.int64)
