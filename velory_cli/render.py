"""The only module that imports Rich: tables and charts for people, JSON and CSV for scripts.

Commands hand over plain rows (dicts built from result objects); the same rows become a table,
CSV or JSON. Text from the data is never read as Rich markup: every cell is a ``Text``.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Literal

from velory_cli.errors import OutputUnwritable
from velory_cli.models import SPREADSHEET_QUOTED_STARTS

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

# Tables written to a file or a pipe are read later, in logs and mails: give them room.
PIPE_WIDTH = 160


class _Nowhere(io.StringIO):
    """Where output goes when the stream is closed altogether (``>&-``: Python's sys.stdout
    is None): the work is done and recorded, so the run ends normally, writing nothing."""

    def write(self, text: str) -> int:
        return len(text)


def _stream(stderr: bool = False) -> IO[str]:
    stream = sys.stderr if stderr else sys.stdout
    return _Nowhere() if stream is None else stream


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False  # closed under us


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = _stream(stderr)
    terminal = _is_terminal(stream)
    if os.environ.get("NO_COLOR") or not terminal:
        return Console(
            file=stream,
            no_color=True,
            highlight=False,
            emoji=False,
            color_system=None,
            # A terminal keeps its own width (Rich asks it); a pipe or file gets room.
            width=_env_width() or (None if terminal else PIPE_WIDTH),
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
    info(f"warning: {_one_line(text)}", "yellow")


def error(text: str) -> None:
    info(f"error: {_one_line(text)}", "bold red")


def _one_line(text: str) -> str:
    """A warning or error is one line, whatever the data it quotes holds (a line break in a
    stored address would otherwise start a line of its own in a log)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\u240a")


# Control characters from the data would reach the terminal as escape sequences (clearing the
# screen, retitling the window): each is shown as its visible symbol instead (ESC as ␛).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and line feed


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)
    return "\u2421" if code == 0x7F else "\ufffd"


def _text(value: Any, style: str | None = None) -> Any:
    from rich.text import Text

    text = "" if value is None else str(value)
    if text.isprintable():
        return Text(text, style=style or "")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Text(_CONTROL.sub(_visible, text), style=style or "")


# ---- results on stdout -------------------------------------------------------------------


@contextmanager
def _results_to(stream: IO[str]) -> Iterator[None]:
    """Write results to ``stream``: when it is stdout and the system refuses the write (a full
    disk, a file size limit), that is an OutputUnwritable (exit 73) with one line, not a
    traceback. A closed pipe stays a BrokenPipeError: the reader had all it wanted."""
    try:
        yield
        if stream is sys.stdout:
            stream.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        if stream is not sys.stdout:
            raise
        _drop_stdout()
        raise OutputUnwritable(f"cannot write the output: {exc.strerror or exc}") from None


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the exit does not try again to write what could not be
    written (and fail with a second message and exit 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):
        pass  # not a real file (a test's capture): nothing to drop


def _print(out: Console, renderable: RenderableType, **options: Any) -> None:
    with _results_to(out.file):
        out.print(renderable, **options)


# ---- JSON and CSV ------------------------------------------------------------------------


def emit_json(data: Any, out: IO[str] | None = None) -> None:
    """One JSON document on stdout, nothing else."""
    stream = out or _stream()
    with _results_to(stream):
        stream.write(json.dumps(data, ensure_ascii=False, indent=2))
        stream.write("\n")
        stream.flush()


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet shows as text instead of running it as a formula (and one
    that starts with ``'``, so that ``velory import`` reads every such cell back exactly)."""
    if isinstance(value, str) and value.startswith(SPREADSHEET_QUOTED_STARTS):
        return "'" + value
    return value


def emit_csv(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    out: IO[str] | None = None,
    *,
    bom: bool = False,
) -> None:
    """CSV with a header row: numbers as they are, text made safe to open in a spreadsheet.
    ``bom``: start with a UTF-8 byte order mark, without which Excel reads a file as the
    system's code page ("Ã…sa" for "Åsa"); for files, not for pipes."""
    import csv

    stream = out or _stream()
    writer = csv.writer(stream, lineterminator="\r\n")
    with _results_to(stream):
        if bom:
            stream.write("\ufeff")
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
    grid = Table(
        title=_text(title, "table.title") if title else None,
        caption=_text(caption, "table.caption") if caption else None,
        show_lines=False,
        header_style="bold",
    )
    for column in columns:
        grid.add_column(
            _text(column.header),
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
        _print(out, _text(empty))
        return
    _print(out, grid)


def key_values(pairs: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    """A two-column view of one record."""
    from rich.table import Table

    grid = Table(
        title=_text(title, "table.title") if title else None,
        show_header=False,
        box=None,
        padding=(0, 2, 0, 0),
    )
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in pairs:
        grid.add_row(_text(label, "bold"), _text("" if value is None else value))
    _print(console(), grid)


def bar_chart(points: Sequence[tuple[str, int]], *, title: str, width: int = 40) -> None:
    """A horizontal bar chart drawn with block characters, one bar a label."""
    out = console()
    _print(out, _text(title, "bold"))
    top = max((count for _, count in points), default=0)
    label_width = max((len(label) for label, _ in points), default=0)
    for label, count in points:
        length = round(count / top * width) if top else 0
        bar = "█" * length
        _print(out, _text(f"{label.ljust(label_width)}  {bar} {count}"))


def heading(text: str) -> None:
    _print(console(), _text(text, "bold cyan"))


def line(text: str = "", style: str | None = None) -> None:
    _print(console(), _text(text, style), soft_wrap=True)


# ---- progress ----------------------------------------------------------------------------


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, for a person waiting at a terminal: the callback takes how
    much of ``total`` is done. Nothing is drawn when stderr is not a terminal."""
    if not _is_terminal(_stream(stderr=True)):
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
