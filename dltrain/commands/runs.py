"""``dltrain runs ls`` and ``dltrain runs compare``: a table of run directories, and runs side by side.

Light: reads run.json, config.yaml, metrics.csv and eval/*/metrics.json only (``dltrain.experiments.runs``).
"""

from __future__ import annotations

import json
from pathlib import Path

from dltrain.console import escape, result_line
from dltrain.console import stdout as _terminal
from dltrain.errors import RunDirError
from dltrain.experiments.runs import RunRow, compare_runs, list_runs, parse_filter, sort_rows

SIDE_KINDS = ("lr-find", "inspect", "sweep")


def _console():  # type: ignore[no-untyped-def]
    """The terminal's console; piped or redirected, a wide one so the table is never squeezed or cut."""
    if _terminal.is_terminal:
        return _terminal
    from rich.console import Console

    return Console(width=320, no_color=True)


def ls(runs_dir: Path, sort: str | None, filters: list[str], as_json: bool, show_all: bool) -> None:
    keep = [parse_filter(text) for text in filters]  # a bad filter is exit 2 before any reading
    if sort:
        sort_rows([], sort)
    rows = list_runs(runs_dir)
    side = [row for row in rows if row.kind in SIDE_KINDS]
    if not show_all:
        rows = [row for row in rows if row.kind not in SIDE_KINDS]
    rows = [row for row in rows if all(test(row) for test in keep)]
    if sort:
        rows = sort_rows(rows, sort)
    if as_json:
        result_line(json.dumps([row.to_json() for row in rows], indent=1))
        return
    _table(rows, f"{runs_dir}")
    if not show_all and side:
        counts: dict[str, int] = {}
        for row in side:
            counts[row.kind] = counts.get(row.kind, 0) + 1
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        result_line(f"also {parts} folder(s), not listed (--all lists them)")


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _table(rows: list[RunRow], title: str) -> None:
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    for column in ("name", "kind", "status", "data", "model", "epochs", "best", "test", "cpu_s", "started"):
        table.add_column(column, justify="right" if column in ("epochs", "cpu_s") else "left")
    for row in rows:
        status = row.status
        style = {"failed": "red", "dead": "red", "interrupted": "yellow", "running": "cyan"}.get(status)
        table.add_row(
            escape(row.name),
            row.kind,
            f"[{style}]{status}[/]" if style else status,
            _fmt(row.data),
            _fmt(row.model),
            _fmt(row.epochs),
            row.best,
            row.test,
            _fmt(row.cpu_s),
            (row.started or "")[:19].replace("T", " "),
        )
    _console().print(table, soft_wrap=True)
    notes = [row for row in rows if row.note and row.status in ("dead", "foreign", "incomplete", "failed")]
    for row in notes:
        result_line(f"  {row.name}: {row.status}: {row.note}")
    result_line(f"{len(rows)} run(s)")


def compare(runs: list[Path], output: Path | None, as_json: bool) -> None:
    from dltrain.report.plots import plot_compare_curves

    comparison = compare_runs(runs)
    target = output if output is not None else _free_name(Path("compare.png"))
    try:
        plot_compare_curves([row.name for row in comparison.rows], comparison.curves, target)
    except OSError as exc:
        raise RunDirError(f"{target}: cannot write the plot ({exc.strerror or exc}).") from None
    if as_json:
        result_line(json.dumps({**comparison.to_json(), "plot": str(target)}, indent=1, default=str))
        return
    from rich.table import Table

    names = [row.name for row in comparison.rows]
    table = Table(title="config keys that differ", title_justify="left")
    table.add_column("key")
    for name in names:
        table.add_column(escape(name))
    for key, values in comparison.differing.items():
        table.add_row(escape(key), *(escape(_show(v)) for v in values))
    if not comparison.differing:
        result_line("the configs are identical")
    else:
        _console().print(table, soft_wrap=True)
    scores = Table(title="results", title_justify="left")
    scores.add_column("")
    for name in names:
        scores.add_column(escape(name))
    for label, getter in (
        ("status", lambda r: r.status),
        ("epochs", lambda r: _fmt(r.epochs)),
        ("best", lambda r: r.best),
        ("test", lambda r: r.test),
        ("cpu_s", lambda r: _fmt(r.cpu_s)),
    ):
        scores.add_row(label, *(getter(row) for row in comparison.rows))
    _console().print(scores, soft_wrap=True)
    result_line(f"plot: {target}")


def _show(value: object) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _free_name(path: Path) -> Path:
    """``compare.png``, or ``compare-2.png``... when it exists: an earlier plot is never overwritten."""
    if not path.exists():
        return path
    for n in range(2, 10000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    return path
