"""``timeseries_csv``: windows over a series in a CSV (rows in time order) forecast the target ahead.

The rows are split by time, never shuffled across the boundaries: the first part trains, the next
``validation_split`` validates, the last ``test_split`` tests. A window (``window`` input rows and the
``horizon`` rows it predicts) lies wholly inside one part, so no example of one split sees a value of another.
Inputs are standardised with the training part's statistics (the model's ``normalize`` stem, per column);
targets are the target column at t+1 .. t+horizon, standardised for training by ``load_splits`` from the
training windows. Each split carries the naive forecast (the last observed target value, repeated over the
horizon) that evaluate compares the model against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dltrain.config.schema import TimeseriesCsvData
from dltrain.data.loading import DATASETS
from dltrain.data.splits import Splits
from dltrain.data.tabular import Table, mostly_numeric, numeric_column, parse_number, read_table
from dltrain.errors import ConfigError, DataError


@dataclass(frozen=True)
class Part:
    """Rows [start, stop) of the series forming one split, and the windows cut from them."""

    split: str
    start: int
    stop: int
    window_starts: np.ndarray


def input_columns(cfg: TimeseriesCsvData, table: Table) -> list[str]:
    """The columns fed to the model: ``data.columns``, else every mostly numeric column but the time column."""
    time_col = cfg.time_column
    if cfg.columns is not None:
        for name in cfg.columns:
            table.column(name, "data.columns")
            if name == time_col:
                raise ConfigError(f"`data.columns` includes the time column {name!r}; remove it.")
        return list(cfg.columns)
    cols = [
        name
        for i, name in enumerate(table.header)
        if name != time_col and mostly_numeric([row[i] for row in table.rows])
    ]
    if not cols:
        raise DataError(f"{table.path}:{table.header_line}: no numeric column to read; set data.columns.")
    return cols


def check_time_order(table: Table, col: int) -> None:
    """Rows must go forward in time: numbers strictly increase; text (ISO dates) sorts strictly upwards."""
    cells = [row[col].strip() for row in table.rows]
    numbers = [parse_number(c) for c in cells]
    keys: list[Any] = numbers if all(v is not None for v in numbers) else cells
    for r in range(1, len(keys)):
        if not keys[r] > keys[r - 1]:
            raise DataError(
                f"{table.where(r, col)}: time {cells[r]!r} (column {table.header[col]!r}, `data.time_column`) "
                f"does not come after {cells[r - 1]!r} on line {table.lines[r - 1]}; sort the rows by time "
                "and remove duplicates."
            )


def split_parts(n_rows: int, cfg: TimeseriesCsvData) -> list[Part]:
    """Chronological parts train | validation | test and their window starts (every ``stride`` rows)."""
    span = cfg.window + cfg.horizon
    n_test = int(round(n_rows * cfg.test_split))
    n_val = int(round(n_rows * cfg.validation_split))
    bounds = [("train", 0, n_rows - n_val - n_test), ("validation", n_rows - n_val - n_test, n_rows - n_test)]
    bounds.append(("test", n_rows - n_test, n_rows))
    parts = []
    for split, start, stop in bounds:
        if stop == start and split != "train":
            continue
        if stop - start < span:
            key = "data.test_split" if split == "test" else "data.validation_split"
            fix = (
                f"lower {key}, data.window or data.horizon"
                if split != "train"
                else "lower data.validation_split / data.test_split, data.window or data.horizon"
            )
            raise DataError(
                f"the {split} part of the series has {stop - start} rows but one window needs "
                f"window + horizon = {span}; {fix}."
            )
        starts = np.arange(start, stop - span + 1, cfg.stride, dtype=np.int64)
        parts.append(Part(split, start, stop, starts))
    return parts


def windows(
    values: np.ndarray, target: np.ndarray, starts: np.ndarray, window: int, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs (n, window, columns), targets (n, horizon), last-value forecast (n, horizon))."""
    x = values[starts[:, None] + np.arange(window)]
    y = target[starts[:, None] + window + np.arange(horizon)]
    last = target[starts + window - 1]
    return (
        x.astype(np.float32),
        y.astype(np.float32),
        np.repeat(last[:, None], horizon, axis=1).astype(np.float32),
    )


@DATASETS.register("timeseries_csv")
def load_timeseries(cfg: TimeseriesCsvData, seed: int) -> Splits:
    """Read the series, split it by time and cut the windows (see the module docstring); the split is
    chronological, so ``seed`` draws nothing."""
    if cfg.task not in ("auto", "regression"):
        raise ConfigError(
            f"`data.task` is {cfg.task} but timeseries_csv forecasts numbers; set it to auto or regression."
        )
    table = read_table(cfg.path, cfg.delimiter, "data.path")
    target_col = table.column(cfg.target, "data.target")
    if cfg.time_column is not None:
        check_time_order(table, table.column(cfg.time_column, "data.time_column"))
    columns = input_columns(cfg, table)
    values = np.stack([numeric_column(table, table.column(c, "data.columns")) for c in columns], axis=1)
    target = (
        values[:, columns.index(cfg.target)]
        if cfg.target in columns
        else numeric_column(table, target_col, what=" (the target, `data.target`)")
    )
    parts = split_parts(len(table.rows), cfg)
    train = parts[0]
    mean = values[train.start : train.stop].mean(axis=0)
    std = values[train.start : train.stop].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
        p.split: windows(values, target, p.window_starts, cfg.window, cfg.horizon) for p in parts
    }
    time_col = table.column(cfg.time_column, "data.time_column") if cfg.time_column else None

    def item(row: int) -> str:
        when = f" ({table.rows[row][time_col].strip()})" if time_col is not None else ""
        return f"line {table.lines[row]}{when}"

    notes = [
        f"{p.split}: {len(p.window_starts)} windows from lines {table.lines[p.start]}-{table.lines[p.stop - 1]}"
        for p in parts
    ]
    target_names = (
        [cfg.target] if cfg.horizon == 1 else [f"{cfg.target}[t+{k}]" for k in range(1, cfg.horizon + 1)]
    )
    return Splits(
        x_train=out["train"][0],
        y_train=out["train"][1],
        x_val=out["validation"][0] if "validation" in out else None,
        y_val=out["validation"][1] if "validation" in out else None,
        x_test=out["test"][0] if "test" in out else None,
        y_test=out["test"][1] if "test" in out else None,
        scale=1.0,
        source=str(cfg.path),
        notes=notes,
        task="regression",
        stem={"normalize": {"mean": mean.tolist(), "std": std.tolist()}},
        target_names=target_names,
        baselines={split: triple[2] for split, triple in out.items()},
        baseline_name="last value",
        # The forecast of a window is named by the line (and time) of the first value it predicts.
        manifest={p.split: [item(int(s) + cfg.window) for s in p.window_starts] for p in parts},
        state={
            "columns": {"inputs": columns, "target": cfg.target, "time": cfg.time_column},
            "window": cfg.window,
            "horizon": cfg.horizon,
            "stride": cfg.stride,
            "statistics": {
                "computed_on": "train",
                "lines": [table.lines[train.start], table.lines[train.stop - 1]],
                "mean": dict(zip(columns, mean.tolist(), strict=True)),
                "std": dict(zip(columns, std.tolist(), strict=True)),
            },
            "parts": {p.split: [table.lines[p.start], table.lines[p.stop - 1]] for p in parts},
        },
    )
