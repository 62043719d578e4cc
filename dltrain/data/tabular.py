"""``csv``: a table, one example per row; a label column, numeric and categorical feature columns.

Parsing is strict and happens before TensorFlow is imported: a quoting error, a row with the wrong number of
fields, an empty cell or a word in a numeric column, a missing label, all stop the run (exit 3) with
``file:line:column``, the column's name and the fix. tf.data would fail mid-epoch without any of that.

Everything learned from the data (numeric statistics, category lists) comes from the training rows only:
validation and test rows are carved *before* the statistics are computed, so nothing about them leaks into
the model. The statistics become the model's input stem (``normalize``; categorical codes go through an
``embed`` stem), so ``model.keras`` takes the encoded rows and applies the same transform in evaluate.

Rules, documented in the README:

- Task (``data.task: auto``): a label column of words is a classification; numbers with a fractional part
  are a regression; whole numbers are classes when there are at most ``MAX_AUTO_CLASSES`` distinct values,
  else a regression. Two classes become a binary task. A word among mostly numeric labels is an error, as
  is a missing label (empty, NaN, NA, ?). ``data.task`` overrides.
- Categorical columns (``data.categorical`` unset): a feature column is categorical when at most half of its
  filled cells in the training file look like numbers. A mostly numeric column is numeric, and its non-numbers are errors
  (list the column in ``data.categorical`` if it really holds categories).
- Categories are the sorted distinct values of the training rows. A category first seen in validation or
  test is encoded as all zeros (one-hot) or code 0 (embedding) and counted in the notes.
- An empty cell is an error in a numeric column and in the label, and a category of its own (``""``) in a
  categorical column.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.config.schema import CsvData
from dltrain.data.loading import DATASETS
from dltrain.data.splits import CSV_TEST_SEED, Splits, carve_indices
from dltrain.errors import ConfigError, DataError

MAX_AUTO_CLASSES = 20
"""``data.task: auto``: whole-number labels with more distinct values than this are a regression."""
MISSING_CELLS = frozenset({"", "nan", "na", "n/a", "null", "none", "?", "-"})
"""Cells that mean "unknown": errors in numeric columns and in the label (never a class of their own); they
do not count when deciding whether a column is numeric."""
UNKNOWN_CODE = 0
"""Embedding code of a category the training rows did not have (known categories are 1, 2, ...)."""


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Table:
    """The cells of one CSV file as text, with the file line each row starts on (for error messages)."""

    path: Path
    header: list[str]
    header_line: int
    rows: list[list[str]]
    lines: list[int]

    def column(self, name: str, key: str) -> int:
        """The index of column ``name``; a missing one is a ``DataError`` naming ``key`` and the columns."""
        if name in self.header:
            return self.header.index(name)
        close = difflib.get_close_matches(name, self.header, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise DataError(
            f"{self.path}:{self.header_line}: `{key}` names column {name!r}, which the header does not have "
            f"(columns: {', '.join(self.header)}){hint}"
        )

    def where(self, row: int, col: int) -> str:
        """``file:line:column`` of cell (row, col) (1-based line and column, as editors count)."""
        return f"{self.path}:{self.lines[row]}:{col + 1}"


def _decode(path: Path, key: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"`{key}`: {path} not found. Check the path.") from None
    except IsADirectoryError:
        raise DataError(f"`{key}`: {path} is a folder; expected a CSV file.") from None
    except OSError as exc:
        raise DataError(f"`{key}`: cannot read {path} ({exc.strerror or exc}).") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}:{line}:{col}: byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8."
        ) from None


def read_table(path: Path, delimiter: str = ",", key: str = "data.path") -> Table:
    """Parse ``path`` strictly with the csv module: every row must have the header's number of fields.

    Blank lines are skipped; lines starting with ``#`` before the header are comments (a source or licence
    note). After the header, ``#`` is data (a colour such as ``#ff0000`` is a legitimate value).

    Raises:
        DataError: missing or unreadable file, quoting errors, no header, duplicate column names, a row
            with too few or too many fields, no data rows, each with ``file:line[:column]``.
    """
    path = Path(path)
    lines = io.StringIO(_decode(path, key), newline="")
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    starts: list[int] = []
    previous = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(
                f"{path}:{reader.line_num}: malformed CSV ({exc}); check the quotes on this line "
                f"(data.delimiter is {delimiter!r})."
            ) from None
        start, previous = previous + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line
        if header is None:
            if row[0].lstrip().startswith("#"):
                continue
            header, header_line = _check_header(path, start, [c.strip() for c in row]), start
            continue
        if len(row) != len(header):
            col = min(len(row), len(header))
            name = header[col] if col < len(header) else None
            what = f"it ends before column {name!r}" if name is not None else f"extra field {row[col]!r}"
            raise DataError(
                f"{path}:{start}:{col + 1}: this row has {len(row)} fields but the header (line {header_line}) "
                f"has {len(header)}: {what}. Fix the row (a value with {delimiter!r} in it needs quotes)."
            )
        rows.append(row)
        starts.append(start)
    if header is None:
        raise DataError(f"`{key}`: {path} is empty; expected a header row and data rows.")
    if not rows:
        raise DataError(f"`{key}`: {path} has a header (line {header_line}) but no data rows.")
    return Table(path, header, header_line, rows, starts)


def _check_header(path: Path, line: int, header: list[str]) -> list[str]:
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{path}:{line}:{i + 1}: column {i + 1} of the header has no name; name it.")
        if header.index(name) != i:
            raise DataError(
                f"{path}:{line}:{i + 1}: column name {name!r} appears twice (columns {header.index(name) + 1} "
                f"and {i + 1}); rename one."
            )
    return header


def parse_number(cell: str) -> float | None:
    """The finite number in ``cell``, or None (empty, a word, NaN or infinity)."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def numeric_column(
    table: Table, col: int, rows: np.ndarray | None = None, what: str = "", fix: str | None = None
) -> np.ndarray:
    """Column ``col`` of ``rows`` (default: all) as float64; the first cell that is not a finite number is a
    ``DataError`` with file:line:column, the column's name (and ``what`` it is) and ``fix`` (default: a
    hint for feature columns)."""
    index = np.arange(len(table.rows)) if rows is None else rows
    out = np.empty(len(index), dtype=np.float64)
    name = table.header[col]
    for k, r in enumerate(index):
        cell = table.rows[r][col]
        value = parse_number(cell)
        if value is None:
            problem = "is empty" if not cell.strip() else f"holds {cell.strip()!r}, not a finite number"
            hint = _fix(cell, name) if fix is None or not cell.strip() else fix
            raise DataError(f"{table.where(r, col)}: column {name!r}{what} {problem}. {hint}")
        out[k] = value
    return out


def _fix(cell: str, name: str) -> str:
    text = cell.strip()
    if text.lower() in MISSING_CELLS | {"inf", "-inf", "infinity"}:
        return "Fill it in or remove the row (dltrain does not guess missing values)."
    if parse_number(text.replace(",", ".")) is not None:
        return "Use a dot as the decimal separator."
    return f"If {name!r} holds categories, list it in data.categorical."


def mostly_numeric(cells: list[str]) -> bool:
    """More than half of the non-empty cells look like numbers. Missing-value markers (NaN, NA, ?) do not
    count, and a decimal comma counts as a number: such columns are numeric, so their bad cells are reported
    instead of silently turning the column into categories."""
    filled = [c.strip() for c in cells if c.strip().lower() not in MISSING_CELLS]
    if not filled:
        return True
    looks = sum(_looks_numeric(c) for c in filled)
    return 2 * looks > len(filled)


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell.replace(",", ".") if cell.count(",") == 1 else cell)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------- the loader


@dataclass
class _Part:
    """Rows ``rows`` of ``table`` that form one split."""

    table: Table
    rows: np.ndarray


def _files(cfg: CsvData) -> dict[str, Path]:
    if cfg.path is not None and cfg.train is not None:
        raise ConfigError(
            "`data.path` and `data.train` both set; give one CSV (path) or split files (train)."
        )
    if cfg.path is not None:
        extra = [k for k in ("validation", "test") if getattr(cfg, k) is not None]
        if extra:
            raise ConfigError(
                f"`data.{extra[0]}` goes with `data.train`, not `data.path`; use data.train instead of "
                "data.path, or drop it (the split is then carved from data.path)."
            )
        return {"train": Path(cfg.path)}
    if cfg.train is None:
        raise ConfigError(
            "`data.path` (one CSV) or `data.train` (with data.validation, data.test) is required."
        )
    files = {"train": Path(cfg.train)}
    for split, path in (("validation", cfg.validation), ("test", cfg.test)):
        if path is not None:
            files[split] = Path(path)
    return files


def _feature_columns(cfg: CsvData, table: Table) -> tuple[list[str], list[str]]:
    """(feature columns, categorical columns) in the training file's order."""
    table.column(cfg.label, "data.label")
    if cfg.features is not None:
        features = [table.header[table.column(name, "data.features")] for name in cfg.features]
        if cfg.label in features:
            raise ConfigError(f"`data.features` includes the label column {cfg.label!r}; remove it.")
    else:
        features = [name for name in table.header if name != cfg.label]
    if not features:
        raise DataError(f"{table.path}:{table.header_line}: the table has no column besides the label.")
    if cfg.categorical is not None:
        for name in cfg.categorical:
            table.column(name, "data.categorical")
            if name not in features:
                raise ConfigError(f"`data.categorical` lists {name!r}, which is not a feature column.")
        categorical = [f for f in features if f in cfg.categorical]
    else:
        categorical = [
            f for f in features if not mostly_numeric([r[table.header.index(f)] for r in table.rows])
        ]
    return features, categorical


def _label_cells(table: Table, label: str) -> list[str]:
    col = table.column(label, "data.label")
    cells = []
    for r, row in enumerate(table.rows):
        cell = row[col].strip()
        if cell.lower() in MISSING_CELLS:
            shown = "empty" if not cell else f"{cell!r}"
            raise DataError(
                f"{table.where(r, col)}: the label (column {label!r}, `data.label`) is {shown}; every row needs "
                "a label: fill it in or remove the row."
            )
        cells.append(cell)
    return cells


LABEL_FIX = "Most labels are numbers: correct this one, or set data.task: classification if they are classes."


def decide_task(configured: str, table: Table, label: str) -> tuple[str, str]:
    """(task, why) from the training labels: see the module docstring. ``binary`` is left to load_splits
    (two classes 0/1 under auto). Mostly numeric labels with a word among them are an error, not classes."""
    labels = _label_cells(table, label)
    if configured in ("classification", "binary"):
        return "classification", f"data.task is {configured}"
    if configured == "regression":
        return "regression", "data.task is regression"
    if not mostly_numeric(labels):
        return "classification", "the label column holds words"
    col = table.column(label, "data.label")
    values = numeric_column(table, col, what=" (the label, `data.label`)", fix=LABEL_FIX)
    if not np.all(values == np.round(values)):
        return "regression", "the labels are numbers with fractions"
    distinct = len(np.unique(values))
    if distinct > MAX_AUTO_CLASSES:
        return (
            "regression",
            f"the labels are {distinct} distinct whole numbers (more than {MAX_AUTO_CLASSES})",
        )
    return "classification", f"the labels are {distinct} distinct whole numbers"


def _class_key(cell: str) -> str:
    """One spelling per class: ``1``, ``1.0`` and `` 1`` are the same class when labels are numbers."""
    value = parse_number(cell)
    if value is not None and value == round(value):
        return str(int(value))
    return cell


def _class_names(labels: list[str]) -> list[str]:
    keys = {_class_key(c) for c in labels}
    if all(parse_number(k) is not None for k in keys):
        return sorted(keys, key=lambda k: float(k))
    return sorted(keys)


def _targets(part: _Part, label: str, task: str, names: list[str]) -> np.ndarray:
    table = part.table
    col = table.column(label, "data.label")
    cells = _label_cells(table, label)
    if task == "regression":
        what = " (the label, `data.label`)"
        return numeric_column(table, col, part.rows, what, LABEL_FIX).astype(np.float32)
    index = {name: i for i, name in enumerate(names)}
    out = np.empty(len(part.rows), dtype=np.int64)
    for k, r in enumerate(part.rows):
        key = _class_key(cells[r])
        if key not in index:
            raise DataError(
                f"{table.where(int(r), col)}: label {cells[r]!r} (column {label!r}) does not occur in the "
                f"training file; the classes are {', '.join(names)}."
            )
        out[k] = index[key]
    return out


def _carve(
    part: _Part, y: np.ndarray, fraction: float, seed: int, what: str, stratify: bool
) -> tuple[_Part, np.ndarray, _Part, np.ndarray]:
    keep, held = carve_indices(y, fraction, seed, what, stratify=stratify)
    return _Part(part.table, part.rows[keep]), y[keep], _Part(part.table, part.rows[held]), y[held]


@dataclass
class _Encoder:
    """What the training rows taught: numeric statistics and category lists."""

    numeric: list[str]
    categorical: list[str]
    mean: np.ndarray
    std: np.ndarray
    categories: dict[str, list[str]]
    encoding: str

    def input_names(self) -> list[str]:
        if self.encoding == "one_hot":
            one_hot = [f"{c}={v}" for c in self.categorical for v in self.categories[c]]
            return [*self.numeric, *one_hot]
        return [*self.numeric, *(f"{c} (code)" for c in self.categorical)]

    def encode(self, part: _Part, split: str) -> tuple[np.ndarray, dict[str, int]]:
        """The split's input matrix (float32) and, per categorical column, how many unseen categories."""
        table = part.table
        blocks = [
            numeric_column(table, table.column(name, "data.features"), part.rows)[:, None]
            for name in self.numeric
        ]
        unknown: dict[str, int] = {}
        for name in self.categorical:
            col = table.column(name, "data.features")
            lookup = {v: i for i, v in enumerate(self.categories[name])}
            idx = np.array([lookup.get(table.rows[r][col].strip(), -1) for r in part.rows], dtype=np.int64)
            if np.any(idx < 0):
                unknown[name] = int(np.sum(idx < 0))
            if self.encoding == "one_hot":
                block = np.zeros((len(idx), len(lookup)), dtype=np.float64)
                seen = idx >= 0
                block[np.flatnonzero(seen), idx[seen]] = 1.0
            else:
                block = np.where(idx >= 0, idx + 1, UNKNOWN_CODE).astype(np.float64)[:, None]
            blocks.append(block)
        return np.concatenate(blocks, axis=1).astype(np.float32), unknown

    def stem(self, embedding_dim: int) -> dict[str, Any]:
        mean, std = self.mean.tolist(), self.std.tolist()
        if self.encoding == "one_hot":
            width = sum(len(self.categories[c]) for c in self.categorical)
            # One-hot columns pass unchanged (mean 0, std 1): only the numeric columns are standardised.
            return {"normalize": {"mean": mean + [0.0] * width, "std": std + [1.0] * width}} if mean else {}
        stem: dict[str, Any] = {}
        if self.categorical:
            columns = [{"name": c, "input_dim": len(self.categories[c]) + 1} for c in self.categorical]
            stem["embed"] = {"numeric": len(self.numeric), "columns": columns, "output_dim": embedding_dim}
        if mean:
            stem["normalize"] = {"mean": mean, "std": std}
        return stem


def _fit_encoder(
    part: _Part, features: list[str], categorical: list[str], encoding: str
) -> tuple[_Encoder, list[str]]:
    """Statistics and categories from the training rows only; notes about constant columns."""
    table = part.table
    numeric = [f for f in features if f not in categorical]
    notes = []
    if numeric:
        matrix = np.stack(
            [numeric_column(table, table.column(n, "data.features"), part.rows) for n in numeric], axis=1
        )
        mean, std = matrix.mean(axis=0), matrix.std(axis=0)
        constant = [n for n, s in zip(numeric, std, strict=True) if s == 0]
        if constant:
            notes.append(f"constant in the training rows (left unscaled): {', '.join(constant)}")
        std = np.where(std > 0, std, 1.0)
    else:
        mean = std = np.zeros(0)
    categories = {}
    for name in categorical:
        col = table.column(name, "data.features")
        categories[name] = sorted({table.rows[r][col].strip() for r in part.rows})
    return _Encoder(numeric, categorical, mean, std, categories, encoding), notes


def _check_columns(table: Table, needed: list[str], key: str) -> None:
    for name in needed:
        table.column(name, key)


@DATASETS.register("csv")
def load_csv(cfg: CsvData, seed: int) -> Splits:
    """Read, split, check and encode a table (see the module docstring for the rules)."""
    files = _files(cfg)
    tables = {
        split: read_table(path, cfg.delimiter, f"data.{'path' if cfg.path else split}")
        for split, path in files.items()
    }
    train_table = tables["train"]
    features, categorical = _feature_columns(cfg, train_table)
    for split, table in tables.items():
        if split != "train":
            _check_columns(table, [cfg.label, *features], f"data.{split}")
    numeric = [f for f in features if f not in categorical]
    for table in tables.values():  # every cell is checked before any split is carved
        for name in numeric:
            numeric_column(table, table.column(name, "data.features"))
    task, why = decide_task(cfg.task, train_table, cfg.label)
    labels = _label_cells(train_table, cfg.label)
    names = _class_names(labels) if task == "classification" else []
    stratify = task == "classification"
    parts = {split: _Part(t, np.arange(len(t.rows))) for split, t in tables.items()}
    ys = {split: _targets(part, cfg.label, task, names) for split, part in parts.items()}
    notes = [f"task: {task} ({why})"]
    if cfg.path is not None and cfg.test_split > 0:
        parts["train"], ys["train"], parts["test"], ys["test"] = _carve(
            parts["train"], ys["train"], cfg.test_split, CSV_TEST_SEED, "data.test_split", stratify
        )
        notes.append(f"test: {len(ys['test'])} rows held out with a fixed seed")
    if "validation" not in parts and cfg.validation_split > 0:
        # Carved here, before any statistic is computed, so the validation rows never shape the transform.
        parts["train"], ys["train"], parts["validation"], ys["validation"] = _carve(
            parts["train"], ys["train"], cfg.validation_split, seed, "data.validation_split", stratify
        )
        notes.append(f"validation: {len(ys['validation'])} rows carved from train with seed {seed}")
    encoder, more = _fit_encoder(parts["train"], features, categorical, cfg.categorical_encoding)
    notes += more
    xs: dict[str, np.ndarray] = {}
    for split, part in parts.items():
        xs[split], unknown = encoder.encode(part, split)
        for name, count in unknown.items():
            how = "all zeros" if encoder.encoding == "one_hot" else f"code {UNKNOWN_CODE}"
            notes.append(f"{split}: {count} rows of {name!r} have a category the training rows lack ({how})")
    if categorical:
        notes.append(f"categorical ({encoder.encoding}): {', '.join(categorical)}")
    return Splits(
        x_train=xs["train"],
        y_train=ys["train"],
        x_val=xs.get("validation"),
        y_val=ys.get("validation"),
        x_test=xs.get("test"),
        y_test=ys.get("test"),
        class_names=names,
        scale=1.0,
        source=str(files["train"]),
        notes=notes,
        task=task,
        stem=encoder.stem(cfg.embedding_dim),
        target_names=[cfg.label] if task == "regression" else [],
        baselines=_mean_baselines(ys) if task == "regression" else {},
        baseline_name="training mean" if task == "regression" else "",
        state=_state(cfg, train_table, encoder, parts, features),
        manifest={
            split: [f"line {train_line}" for train_line in _lines(part)] for split, part in parts.items()
        },
    )


def _lines(part: _Part) -> list[int]:
    return [part.table.lines[int(r)] for r in part.rows]


def _mean_baselines(ys: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The naive regression: always predict the training rows' mean label (original units)."""
    mean = float(np.mean(ys["train"]))
    return {split: np.full((len(y), 1), mean, dtype=np.float32) for split, y in ys.items()}


def _state(
    cfg: CsvData, table: Table, encoder: _Encoder, parts: dict[str, _Part], features: list[str]
) -> dict[str, Any]:
    """What fit records in data/state.json: how a row becomes the model's input."""
    return {
        "columns": {
            "file": table.header,
            "label": cfg.label,
            "features": features,
            "numeric": encoder.numeric,
            "categorical": encoder.categorical,
            "inputs": encoder.input_names(),
        },
        # model.keras takes these raw columns, one named input each (dltrain.models.tabular.raw_columns);
        # the encoding below is built into it, and the training pipeline feeds the encoded row to the body.
        "model_inputs": "raw columns",
        "categorical_encoding": encoder.encoding,
        "categories": encoder.categories,
        "unknown_category": "all zeros" if encoder.encoding == "one_hot" else f"code {UNKNOWN_CODE}",
        "statistics": {
            "computed_on": "train",
            "rows": len(parts["train"].rows),
            "mean": dict(zip(encoder.numeric, encoder.mean.tolist(), strict=True)),
            "std": dict(zip(encoder.numeric, encoder.std.tolist(), strict=True)),
        },
        "files": {split: str(part.table.path) for split, part in parts.items()},
    }


RAW_OOV = "\x00[OOV]"  # what no cell holds: StringLookup maps it to the out-of-vocabulary index, as unseen


def raw_columns(x: np.ndarray, state: dict[str, Any]) -> dict[str, np.ndarray]:
    """Encoded rows (numeric columns, then one-hot blocks or codes) back to raw columns, each (n, 1): what a
    ``model.keras`` with raw-column inputs takes. An unseen category (all zeros, or code 0) becomes ``RAW_OOV``."""
    columns = state["columns"]
    categories = state.get("categories") or {}
    one_hot = state.get("categorical_encoding", "one_hot") == "one_hot"
    out: dict[str, np.ndarray] = {}
    pos = 0
    for name in columns["numeric"]:
        out[name] = x[:, pos : pos + 1].astype(np.float32)
        pos += 1
    for name in columns["categorical"]:
        vocabulary = np.asarray([RAW_OOV, *categories[name]], dtype=object)
        if one_hot:
            block = x[:, pos : pos + len(categories[name])]
            codes = (
                np.where(block.max(axis=1) > 0, block.argmax(axis=1) + 1, 0)
                if block.size
                else np.zeros(len(x))
            )
            pos += len(categories[name])
        else:
            codes = x[:, pos]
            pos += 1
        out[name] = vocabulary[np.asarray(codes, dtype=np.int64)][:, None]
    return out
