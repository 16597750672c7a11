"""The only module that imports Rich: tables and charts for people, JSON and CSV for scripts.

Commands hand over plain rows (dicts built from result objects); the same rows become a table,
CSV or JSON. Text from the data is never read as Rich markup: every cell is a ``Text``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console

# Tables written to a file or a pipe are read later, in logs and mails: give them room.
PIPE_WIDTH = 160

# Spreadsheets run a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _no_colour(stream: IO[str]) -> bool:
    return bool(os.environ.get("NO_COLOR")) or not stream.isatty()


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if _no_colour(stream):
        return Console(
            file=stream,
            no_color=True,
            highlight=False,
            emoji=False,
            color_system=None,
            width=_env_width() or PIPE_WIDTH,
        )
    return Console(file=stream, highlight=False, emoji=False, stderr=stderr)


def _env_width() -> int:
    try:
        return int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        return 0


# ---- messages on stderr ------------------------------------------------------------------


def info(text: str, style: str | None = None) -> None:
    """A message for the person at the terminal; stderr, so stdout stays the result."""
    console(stderr=True).print(_text(text, style), soft_wrap=True)


def warn(text: str) -> None:
    info(f"warning: {text}", "yellow")


def error(text: str) -> None:
    info(f"error: {text}", "bold red")


def _text(value: Any, style: str | None = None) -> Any:
    from rich.text import Text

    return Text("" if value is None else str(value), style=style or "")


# ---- JSON and CSV ------------------------------------------------------------------------


def emit_json(data: Any, out: IO[str] | None = None) -> None:
    """One JSON document on stdout, nothing else."""
    stream = out or sys.stdout
    stream.write(json.dumps(data, ensure_ascii=False, indent=2))
    stream.write("\n")
    stream.flush()


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet shows as text instead of running it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def emit_csv(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], out: IO[str] | None = None
) -> None:
    """CSV with a header row: numbers as they are, text made safe to open in a spreadsheet."""
    import csv

    writer = csv.writer(out or sys.stdout, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            ["" if row.get(c) is None else spreadsheet_safe(row.get(c)) for c in columns]
        )


# ---- tables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    justify: Literal["left", "center", "right"] = "left"
    # Picks a style from the whole row: red for overdue, and so on.
    style: Callable[[Mapping[str, Any]], str | None] | None = None
    format: Callable[[Any], str] | None = None
    no_wrap: bool = False


def table(
    columns: Sequence[Column],
    rows: Iterable[Mapping[str, Any]],
    *,
    title: str | None = None,
    empty: str = "Nothing to show.",
    caption: str | None = None,
) -> None:
    from rich.table import Table

    out = console()
    grid = Table(title=title, caption=caption, show_lines=False, header_style="bold")
    for column in columns:
        grid.add_column(
            column.header,
            justify=column.justify,
            no_wrap=column.no_wrap,
        )
    count = 0
    for row in rows:
        count += 1
        cells = []
        for column in columns:
            value = row.get(column.key)
            shown = column.format(value) if column.format else ("" if value is None else str(value))
            cells.append(_text(shown, column.style(row) if column.style else None))
        grid.add_row(*cells)
    if count == 0:
        out.print(_text(empty))
        return
    out.print(grid)


def key_values(pairs: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    """A two-column view of one record."""
    from rich.table import Table

    grid = Table(title=title, show_header=False, box=None, padding=(0, 2, 0, 0))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in pairs:
        grid.add_row(_text(label, "bold"), _text("" if value is None else value))
    console().print(grid)


def bar_chart(points: Sequence[tuple[str, int]], *, title: str, width: int = 40) -> None:
    """A horizontal bar chart drawn with block characters, one bar a label."""
    out = console()
    out.print(_text(title, "bold"))
    top = max((count for _, count in points), default=0)
    label_width = max((len(label) for label, _ in points), default=0)
    for label, count in points:
        length = round(count / top * width) if top else 0
        bar = "█" * length
        out.print(_text(f"{label.ljust(label_width)}  {bar} {count}"))


def heading(text: str) -> None:
    console().print(_text(text, "bold cyan"))


def line(text: str = "", style: str | None = None) -> None:
    console().print(_text(text, style), soft_wrap=True)


# ---- progress ----------------------------------------------------------------------------


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, for a person waiting at a terminal: the callback takes how
    much of ``total`` is done. Nothing is drawn when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield lambda done: None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    )
    task = bar.add_task(description, total=total)
    with bar:
        yield lambda done: bar.update(task, completed=min(done, total))
