"""What ``dltrain predict`` reads, found and checked before TensorFlow starts (light: NumPy, Pillow).

Each reader returns ``Inputs``: the examples in the form the run's ``model.keras`` takes (image file paths,
decoded per batch by the training pipeline's own decoder; arrays; raw strings), one id per example, and the
labels when ``--labelled`` asks for them. A missing file, an empty folder, a corrupt image, a CSV without a
feature column or with a word in a numeric column is a ``DataError`` (exit 3) naming the file (and line and
column) before any model is loaded.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ARRAY_EXTENSIONS = (".npz", ".npy", ".idx", ".gz", "-ubyte")
TEXT_EXTENSIONS = (".txt",)


@dataclass
class Inputs:
    """Examples ready for the model: ``kind`` "image_files" (paths), "array", "text" (strings) or "columns" (csv)."""

    kind: str
    ids: list[str]
    x: Any
    truths: list[Any] | None = None
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    encoded: np.ndarray | None = None
    decode_checks: bool = False
    """image_files: every file is PNG, decoded and checked as it streams (not before), bad ones named or skipped."""
    skip_bad: bool = False
    """kind "columns" (csv): ``x`` holds the raw columns (name -> (n, 1)); this, the rows encoded as fit encoded
    them, for models from before model.keras took raw columns."""

    def __len__(self) -> int:
        return len(self.ids)


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def expand(inputs: Sequence[str | os.PathLike[str]], extensions: Sequence[str], what: str) -> list[str]:
    """Files named, matched by a glob, or found in a folder (recursively, sorted, by extension), in order.

    Raises:
        DataError: a path that does not exist, a glob that matches nothing, a folder without ``what``.
    """
    found: list[str] = []
    lowered = tuple(e.lower() for e in extensions)
    for item in inputs:
        text = os.fspath(item)
        if os.path.isdir(text):
            inside = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(text)
                for name in names
                if name.lower().endswith(lowered) and not name.startswith(".")
            )
            if not inside:
                raise DataError(
                    f"{text}: folder holds no {what} ({', '.join(extensions)}); give another folder."
                )
            found.extend(inside)
        elif os.path.isfile(text):
            found.append(text)
        elif _has_magic(text):
            matched = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not matched:
                raise DataError(
                    f"{text}: the pattern matches no file; check it (quote it so the shell keeps it)."
                )
            found.extend(matched)
        else:
            raise DataError(f"{text}: no such file or folder.")
    if not found:
        raise DataError(f"no {what} to predict; name files, folders or patterns.")
    return found


def _label_from_folder(path: str, class_names: list[str]) -> str:
    label = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if label not in class_names:
        raise DataError(
            f"{path}: --labelled takes the class from the folder name, but {label!r} is not one of the run's "
            f"classes ({', '.join(class_names)}); drop --labelled or put the file in its class folder."
        )
    return label


def image_inputs(inputs: Sequence[str], class_names: list[str], labelled: bool, skip_bad: bool) -> Inputs:
    """Image files, each checked as the training data was (what TensorFlow's decoder refuses is named)."""
    from dltrain.data.images import IMAGE_EXTENSIONS, check_image

    paths = expand(inputs, IMAGE_EXTENSIONS, "images")
    if all(p.lower().endswith(".png") for p in paths):
        # PNG is lossless: the stream decodes each file once (Pillow where its pixels are TensorFlow's, else the
        # training decoder) and names or skips a bad one there, instead of a decode here and another there.
        truths = [_label_from_folder(p, class_names) for p in paths] if labelled else None
        found = Inputs("image_files", paths, np.asarray(paths, dtype=object), truths, skip_bad=skip_bad)
        found.decode_checks = True
        return found
    good: list[str] = []
    skipped: list[str] = []
    for path in paths:
        problem = check_image(path)
        if problem is None:
            good.append(path)
        elif skip_bad:
            skipped.append(f"{path}: {problem}")
        else:
            raise DataError(f"{path}: {problem}. Remove or replace the file, or pass --skip-bad to skip it.")
    if not good:
        raise DataError(f"every one of the {len(paths)} images is unreadable ({skipped[0]}).")
    truths = [_label_from_folder(p, class_names) for p in good] if labelled else None
    return Inputs("image_files", good, np.asarray(good, dtype=object), truths, skipped)


def _read_array_file(path: str, labelled: bool) -> tuple[np.ndarray, np.ndarray | None]:
    from dltrain.data.formats import read_idx

    lower = path.lower()
    if lower.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except Exception as exc:  # zipfile, pickle and format errors all mean the same to a user
            raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}).") from None
        for key, ykey in (("x", "y"), ("x_test", "y_test"), ("images", "labels"), ("x_train", "y_train")):
            if key in arrays:
                return arrays[key], arrays.get(ykey)
        if len(arrays) == 1:
            return next(iter(arrays.values())), None
        raise DataError(f"{path}: holds {', '.join(sorted(arrays))}; name the inputs x (and the labels y).")
    if lower.endswith(".npy"):
        try:
            return np.load(path, allow_pickle=False), None
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc}).") from None
    return read_idx(Path(path)), None


def array_inputs(
    inputs: Sequence[str], input_shape: tuple[int, ...], class_names: list[str], labelled: bool
) -> Inputs:
    """Arrays of examples (.npz with ``x``/``x_test`` and optionally ``y``, .npy, IDX), checked against the
    model's input shape (a missing trailing channel of 1 is added)."""
    xs: list[np.ndarray] = []
    ids: list[str] = []
    truths: list[Any] = []
    for path in expand(inputs, ARRAY_EXTENSIONS, "arrays"):
        x, y = _read_array_file(path, labelled)
        if x.ndim == len(input_shape) and tuple(x.shape) == input_shape:
            x = x[None]  # one example
        if tuple(x.shape[1:]) != input_shape and tuple(x.shape[1:]) + (1,) == input_shape:
            x = x[..., None]
        if tuple(x.shape[1:]) != input_shape:
            raise DataError(
                f"{path}: examples of shape {tuple(x.shape[1:])} (array {tuple(x.shape)}), but the model takes "
                f"{input_shape}; give an array of shape (n, {', '.join(map(str, input_shape))})."
            )
        if not np.issubdtype(x.dtype, np.number):
            raise DataError(f"{path}: holds {x.dtype} values; the model takes numbers.")
        if labelled:
            if y is None:
                raise DataError(f"{path}: --labelled needs labels (a `y` array beside `x` in an .npz).")
            if len(y) != len(x):
                raise DataError(f"{path}: {len(x)} examples but {len(y)} labels.")
            truths.extend(
                class_names[int(v)] if class_names else float(v) for v in np.asarray(y).reshape(len(y))
            )
        xs.append(x)
        ids.extend(f"{path}#{i}" for i in range(len(x)))
    return Inputs("array", ids, np.concatenate(xs), truths if labelled else None)


def image_or_array_inputs(
    inputs: Sequence[str],
    input_shape: tuple[int, ...],
    class_names: list[str],
    labelled: bool,
    skip_bad: bool,
) -> Inputs:
    """mnist / fashion_mnist / idx runs take their arrays, or image files (8-bit greyscale, as the arrays)."""
    from dltrain.data.images import IMAGE_EXTENSIONS

    def is_image(item: str) -> bool:
        return (
            item.lower().endswith(IMAGE_EXTENSIONS)
            or os.path.isdir(item)
            and not any(n.lower().endswith(ARRAY_EXTENSIONS) for _, _, names in os.walk(item) for n in names)
        )

    if inputs and all(is_image(str(i)) for i in inputs):
        return image_inputs(inputs, class_names, labelled, skip_bad)
    return array_inputs(inputs, input_shape, class_names, labelled)


# ------------------------------------------------------------------------------------------ tables


def csv_inputs(
    inputs: Sequence[str],
    state: dict[str, Any],
    delimiter: str,
    task: str,
    class_names: list[str],
    labelled: bool,
) -> Inputs:
    """Raw CSV rows with the training feature columns, encoded with what fit learned (data/state.json).

    A category the training rows lacked gets the training rule for unseen categories (all zeros in one-hot,
    code 0 in an embedding), counted in a warning with its first file:line:column.
    """
    from dltrain.data.tabular import _Encoder, _Part, numeric_column, read_table

    columns = state.get("columns") or {}
    stats = state.get("statistics") or {}
    numeric, categorical = list(columns.get("numeric", [])), list(columns.get("categorical", []))
    label = columns.get("label")
    encoder = _Encoder(
        numeric,
        categorical,
        np.asarray([stats.get("mean", {})[n] for n in numeric], dtype=np.float64),
        np.asarray([stats.get("std", {})[n] for n in numeric], dtype=np.float64),
        {k: list(v) for k, v in (state.get("categories") or {}).items()},
        str(state.get("categorical_encoding", "one_hot")),
    )
    xs: list[np.ndarray] = []
    raw: dict[str, list[np.ndarray]] = {}
    ids: list[str] = []
    truths: list[Any] = []
    notes: list[str] = []
    for path in expand(inputs, (".csv", ".tsv", ".txt"), "CSV files"):
        table = read_table(Path(path), delimiter, key="INPUT")
        missing = [c for c in [*numeric, *categorical] if c not in table.header]
        if missing:
            raise DataError(
                f"{path}:{table.header_line}: missing feature column(s) {', '.join(map(repr, missing))}; the run "
                f"was trained on {', '.join(columns.get('features', []))} (the label column may be left out)."
            )
        for name in categorical:  # the first unseen category, named with its cell
            col = table.header.index(name)
            known = set(encoder.categories[name])
            new = [r for r, row in enumerate(table.rows) if row[col].strip() not in known]
            if new:
                notes.append(
                    f"{table.where(new[0], col)}: {len(new)} row(s) of {name!r} hold a category the training rows "
                    f"lacked (first {table.rows[new[0]][col].strip()!r}); encoded as "
                    f"{'all zeros' if encoder.encoding == 'one_hot' else 'code 0'}, as in training"
                )
        rows = np.arange(len(table.rows))
        x, _ = encoder.encode(_Part(table, rows), "predict")  # every numeric cell checked here, located
        xs.append(x)
        for name in numeric:
            raw.setdefault(name, []).append(x[:, numeric.index(name)])
        for name in categorical:
            col = table.header.index(name)
            raw.setdefault(name, []).append(
                np.asarray([row[col].strip() for row in table.rows], dtype=object)
            )
        ids.extend(f"{path}:{line}" for line in table.lines)
        if labelled:
            if label not in table.header:
                raise DataError(f"{path}:{table.header_line}: --labelled needs the label column {label!r}.")
            col = table.header.index(label)
            if task == "regression":
                truths.extend(numeric_column(table, col, what=" (the label)").tolist())
            else:
                for r, row in enumerate(table.rows):
                    cell = row[col].strip()
                    if cell not in class_names:
                        raise DataError(
                            f"{table.where(r, col)}: label {cell!r} is not one of the run's classes "
                            f"({', '.join(class_names)})."
                        )
                    truths.append(cell)
    columns_x = {name: np.concatenate(parts)[:, None] for name, parts in raw.items()}
    encoded = np.concatenate(xs).astype(np.float32)
    return Inputs("columns", ids, columns_x, truths if labelled else None, notes=notes, encoded=encoded)


def series_inputs(inputs: Sequence[str], state: dict[str, Any], delimiter: str) -> Inputs:
    """One forecast per CSV: the ``horizon`` steps after its last full window of ``window`` rows."""
    from dltrain.data.tabular import numeric_column, read_table
    from dltrain.data.timeseries import check_time_order

    columns = state.get("columns") or {}
    names, time_col = list(columns.get("inputs", [])), columns.get("time")
    window = int(state.get("window", 0))
    xs, ids = [], []
    for path in expand(inputs, (".csv", ".tsv", ".txt"), "CSV files"):
        table = read_table(Path(path), delimiter, key="INPUT")
        missing = [c for c in names if c not in table.header]
        if missing:
            raise DataError(
                f"{path}:{table.header_line}: missing column(s) {', '.join(map(repr, missing))}; the run reads "
                f"{', '.join(names)}."
            )
        if len(table.rows) < window:
            raise DataError(
                f"{path}: {len(table.rows)} rows, but a forecast needs the last {window} rows (data.window)."
            )
        if time_col and time_col in table.header:
            check_time_order(table, table.header.index(time_col))
        rows = np.arange(len(table.rows) - window, len(table.rows))
        values = np.stack([numeric_column(table, table.header.index(c), rows) for c in names], axis=1)
        xs.append(values.astype(np.float32))
        ids.append(f"{path}:{table.lines[-1]}")
    return Inputs("array", ids, np.stack(xs))


def text_inputs(
    inputs: Sequence[str], encoding: str, column: str | None, class_names: list[str], labelled: bool
) -> Inputs:
    """Text files (one file, one example; folders searched for .txt), or a CSV column of strings (``--column``)."""
    from dltrain.data.tabular import read_table
    from dltrain.data.text import read_example

    texts: list[str] = []
    ids: list[str] = []
    truths: list[Any] = []
    if column is not None:
        for path in expand(inputs, (".csv", ".tsv"), "CSV files"):
            table = read_table(Path(path), key="INPUT")
            col = table.column(column, "--column")
            texts.extend(row[col] for row in table.rows)
            ids.extend(f"{path}:{line}" for line in table.lines)
        if labelled:
            raise ConfigError("--labelled takes labels from class folders of .txt files; not with --column.")
    else:
        for path in expand(inputs, (".txt",), ".txt files"):
            texts.append(read_example(path, encoding))
            ids.append(path)
            if labelled:
                truths.append(_label_from_folder(path, class_names))
    return Inputs("text", ids, np.asarray(texts, dtype=object), truths if labelled else None)
