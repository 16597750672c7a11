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
from functools import cache
from itertools import islice
from typing import IO, TYPE_CHECKING, Any, Literal

from velory_cli.errors import OutputUnwritable
from velory_cli.models import SPREADSHEET_QUOTED_STARTS

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

# Text written to a file or a pipe is never wrapped or cut to a width: whoever reads it later
# (a log, a mail, a pager) has a width of its own.
PIPE_WIDTH = 10_000


class _Nowhere(io.StringIO):
    """Where output goes when the stream is closed altogether (``>&-``: Python's sys.stdout
    is None): the work is done and recorded, so the run ends normally, writing nothing."""

    def write(self, text: str) -> int:
        return len(text)


def _stream(stderr: bool = False) -> IO[str]:
    stream = sys.stderr if stderr else sys.stdout
    return _Nowhere() if stream is None else stream


def stdout_is_terminal() -> bool:
    """Whether results go to a person at a terminal (tables then show the first rows only)."""
    return _is_terminal(_stream())


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False  # closed under us


def console(stderr: bool = False) -> Console:
    Console = _console_class()
    stream = _stream(stderr)
    terminal = _is_terminal(stream)
    if os.environ.get("NO_COLOR") or not terminal:
        return Console(
            file=stream,
            no_color=True,
            highlight=False,
            emoji=False,
            color_system=None,
            # A terminal keeps its own width (Rich asks it, COLUMNS first); a pipe or file
            # is never cut.
            width=(_env_width() or None) if terminal else PIPE_WIDTH,
        )
    return Console(file=stream, highlight=False, emoji=False, stderr=stderr)


@cache
def _console_class() -> type[Console]:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # Rich exits 1 here; a closed pipe means the reader had all it wanted, which the
            # command line turns into exit 0 (`velory digest --dry-run | head -1`).
            self.quiet = True
            raise BrokenPipeError

    return _Console


def _env_width() -> int:
    try:
        return int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        return 0


# ---- messages on stderr ------------------------------------------------------------------


def info(text: str, style: str | None = None) -> None:
    """A message for the person at the terminal; stderr, so stdout stays the result."""
    # Wrapped at words to a terminal's width; a pipe's width is unbounded, so a log gets one
    # line.
    console(stderr=True).print(_text(text, style))


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


# Rows written for stdout wait in memory up to this much, then in a temporary file.
SPOOL_BYTES = 8 * 1024 * 1024


@contextmanager
def _whole(stream: IO[str]) -> Iterator[IO[str]]:
    """Where rows read as they come are written: for stdout, a spool that stdout gets only
    once every row was read, so a store that fails half way (a corrupt page) leaves stdout
    empty, as every failure before the results does; memory stays flat all the same. Any
    other stream (an output file, which lands whole or not at all) is written directly."""
    if stream is not sys.stdout:
        yield stream
        return
    import shutil
    import tempfile

    with tempfile.SpooledTemporaryFile(
        max_size=SPOOL_BYTES, mode="w+", encoding="utf-8", newline=""
    ) as spool:
        try:
            yield spool
        except OSError as exc:
            # The spool is velory's own; a full temporary folder is the one way it fails.
            raise OutputUnwritable(
                f"cannot hold the output in the temporary folder: {exc.strerror or exc}"
            ) from None
        spool.seek(0)
        with _results_to(stream):
            shutil.copyfileobj(spool, stream)
            stream.flush()


def emit_json_array(items: Iterable[Any], out: IO[str] | None = None) -> int:
    """A JSON array written an element at a time, the same text ``emit_json`` writes for the
    list, without holding the list: the export of a million devices in flat memory. Returns
    how many elements it wrote."""
    count = 0
    with _whole(out or _stream()) as stream, _results_to(stream):
        for item in items:
            # Line breaks inside strings are escaped by dumps: each one here is the layout's.
            text = json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n  ")
            stream.write(("[\n  " if count == 0 else ",\n  ") + text)
            count += 1
        stream.write("\n]\n" if count else "[]\n")
        stream.flush()
    return count


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

    with _whole(out or _stream()) as stream, _results_to(stream):
        writer = csv.writer(stream, lineterminator="\r\n")
        if bom:
            stream.write("\ufeff")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                ["" if row.get(c) is None else spreadsheet_safe(row.get(c)) for c in columns]
            )


# ---- tables ------------------------------------------------------------------------------

# A listing at a terminal shows this many rows unless told otherwise (--limit, --all).
DEFAULT_LIMIT = 200
# Two spaces between columns, at a terminal and in a pipe alike.
GAP = 2
# Pipes and files: the widths come from the first rows, and grow when a later cell is wider.
PIPE_CHUNK = 1000


@dataclass(frozen=True)
class Column:
    """One column of a table: what it shows, and how much a reader needs it.

    ``need`` 1 marks the columns a row means nothing without (the serial, the user's email, the
    date, the days left): a terminal too narrow for them gets one record per block instead.
    The others are left out, from the highest ``need`` up, when they do not fit; a line under
    the table names them. ``no_wrap`` columns (serials, emails, dates, numbers) are always
    drawn whole on one line; the others wrap at words, never narrower than ``min_width``.
    """

    header: str
    key: str
    justify: Literal["left", "center", "right"] = "left"
    # Picks a style from the whole row: red for overdue, and so on.
    style: Callable[[Mapping[str, Any]], str | None] | None = None
    format: Callable[[Any], str] | None = None
    no_wrap: bool = False
    need: int = 5
    min_width: int = 10


@dataclass(frozen=True)
class Layout:
    """Which columns a terminal of ``width`` shows, and how wide each is drawn."""

    shown: list[int]  # indexes into the table's columns, in the table's order
    widths: dict[int, int]
    left_out: list[int]
    blocks: bool  # even the needed columns do not fit: one record per block


# Above every ``need`` a column is given.
LAST_NEED = 1_000


def cell_text(column: Column, row: Mapping[str, Any]) -> str:
    """What a cell shows: formatted, with control characters as visible symbols."""
    value = row.get(column.key)
    shown = column.format(value) if column.format else ("" if value is None else str(value))
    if shown.isprintable():
        return shown
    return _CONTROL.sub(_visible, shown.replace("\r\n", "\n").replace("\r", "\n"))


def plan_layout(columns: Sequence[Column], cells: Sequence[Sequence[str]], width: int) -> Layout:
    """Choose the columns that fit ``width`` whole, the most needed first, and their widths:
    each at least its longest word (a no_wrap column, its longest cell), extra room going to
    the most needed columns first, up to what their cells need."""
    from rich.cells import cell_len

    natural: list[int] = []
    narrowest: list[int] = []
    for index, column in enumerate(columns):
        texts = [column.header, *(row[index] for row in cells)]
        lines = [part for text in texts for part in text.split("\n")]
        longest = max((cell_len(part) for part in lines), default=0)
        natural.append(longest)
        if column.no_wrap:
            narrowest.append(longest)
        else:
            word = max((cell_len(w) for part in lines for w in part.split()), default=0)
            narrowest.append(min(longest, max(word, column.min_width)))

    widths: dict[int, int] = {}

    def cost(extra: int = 0, *, more: int = 0) -> int:
        count = len(widths) + more
        return sum(widths.values()) + extra + GAP * (count - 1)

    # A column with nothing in any row it would show is the last to get room: an empty
    # Replacement column should not push out the Notice that every row has.
    def need(index: int) -> int:
        column = columns[index]
        if column.need > 1 and cells and not any(row[index] for row in cells):
            return LAST_NEED
        return column.need

    by_need = sorted(range(len(columns)), key=lambda i: (need(i), i))
    for index in by_need:
        if columns[index].need <= 1:
            widths[index] = narrowest[index]
    if widths and cost() > width:
        return Layout(shown=[], widths={}, left_out=[], blocks=True)
    # The needed columns unwrapped where they can be; then the others, most needed first,
    # unwrapped; then any left that fit wrapped at words; then the room that is left goes
    # to the most needed columns first.
    for index in list(widths):
        if cost(natural[index] - widths[index]) <= width:
            widths[index] = natural[index]
    for narrowest_first in (False, True):
        for index in by_need:
            wanted = narrowest[index] if narrowest_first else natural[index]
            if index not in widths and cost(wanted, more=1) <= width:
                widths[index] = wanted
    room = width - cost()
    for index in by_need:
        if index in widths:
            extra = min(room, natural[index] - widths[index])
            widths[index] += extra
            room -= extra
    chosen = list(widths)
    shown = sorted(chosen)
    left_out = [i for i in range(len(columns)) if i not in chosen]
    return Layout(shown=shown, widths=widths, left_out=left_out, blocks=False)


def table(
    columns: Sequence[Column],
    rows: Iterable[Mapping[str, Any]],
    *,
    title: str | None = None,
    empty: str = "Nothing to show.",
    caption: str | None = None,
    limit: int | None = None,
    all_rows: bool = False,
    noun: str = "row",
    also: str = "--json or --csv",
    total: int | None = None,
) -> None:
    """A table for people: at a terminal, fitted to its width by choosing what to show (never
    by cutting a cell) and stopped after ``limit`` rows (default ``DEFAULT_LIMIT``; ``all_rows``:
    none); in a pipe or a file, every column and every row in full, written as the rows come.
    ``noun`` counts the rows in the line that says how many more there are; ``also`` names the
    options that show everything. ``total``: how many rows there are, when the caller can
    tell cheaply; a terminal then never reads the rows it does not show."""
    out = console()
    terminal = _is_terminal(out.file)
    if all_rows:
        limit = None
    elif limit is None and terminal:
        limit = DEFAULT_LIMIT
    if not terminal:
        _stream_table(out.file, columns, rows, title=title, empty=empty, limit=limit, noun=noun)
        if caption:
            _print(out, _text(caption), soft_wrap=True)
        return
    remaining = iter(rows)
    shown = list(islice(remaining, limit)) if limit is not None else list(remaining)
    more = total - len(shown) if total is not None else sum(1 for _ in remaining)
    if not shown:
        _print(out, _text(empty))
        return
    draw_table(out, columns, shown, title=title, caption=caption, also=also)
    if more:
        _print(out, _text(_more_line(more, noun, also), "dim"))


def _more_line(more: int, noun: str, also: str) -> str:
    from velory_cli.wording import count

    return f"… and {count(more, 'more ' + noun)}: --all shows them all, {also} gives every row"


def draw_table(
    out: Console,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
    also: str = "--json or --csv",
) -> None:
    """Draw ``rows`` on ``out`` within its width: the columns that fit whole, or one record per
    block, and the line naming what was left out."""
    cells = [[cell_text(column, row) for column in columns] for row in rows]
    layout = plan_layout(columns, cells, out.width)
    if layout.blocks:
        _draw_blocks(out, columns, rows, cells, title=title)
        return
    from rich import box
    from rich.table import Table

    grid = Table(
        title=_text(title, "table.title") if title else None,
        caption=_text(caption, "table.caption") if caption else None,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        header_style="bold",
        title_justify="left",
    )
    for index in layout.shown:
        column = columns[index]
        grid.add_column(
            _text(column.header),
            justify=column.justify,
            no_wrap=column.no_wrap,
            width=layout.widths[index],
            overflow="fold",
        )
    for row, texts in zip(rows, cells, strict=True):
        grid.add_row(*(_cell(columns[i], row, texts[i]) for i in layout.shown))
    _print(out, grid)
    if layout.left_out:
        names = ", ".join(columns[i].header for i in layout.left_out)
        _print(out, _text(f"not shown: {names} — a wider terminal, {also} shows them", "dim"))


def _cell(column: Column, row: Mapping[str, Any], shown: str) -> Any:
    from rich.text import Text

    return Text(shown, style=(column.style(row) if column.style else None) or "")


def _draw_blocks(
    out: Console,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    cells: Sequence[Sequence[str]],
    *,
    title: str | None,
) -> None:
    """One record per block, a field a line, the most needed fields first: for a terminal too
    narrow for even the needed columns side by side."""
    from rich.table import Table

    if title:
        _print(out, _text(title, "table.title"))
    order = sorted(range(len(columns)), key=lambda i: (columns[i].need, i))
    for number, (row, texts) in enumerate(zip(rows, cells, strict=True)):
        if number:
            _print(out, _text(""))
        grid = Table(show_header=False, box=None, padding=(0, 2, 0, 0), pad_edge=False)
        grid.add_column(no_wrap=True, style="bold")
        grid.add_column(overflow="fold")
        for index in order:
            if texts[index]:
                grid.add_row(_text(columns[index].header), _cell(columns[index], row, texts[index]))
        _print(out, grid)


def _stream_table(
    stream: IO[str],
    columns: Sequence[Column],
    rows: Iterable[Mapping[str, Any]],
    *,
    title: str | None,
    empty: str,
    limit: int | None,
    noun: str,
) -> None:
    """A table for a pipe or a file: every column, every cell whole on one line (a line break
    in a cell shown as ␊), written as the rows come, so a million rows cost little memory. The
    widths come from the first rows and grow when a later cell is wider."""
    source = iter(rows)
    remaining = islice(source, limit) if limit is not None else source
    right = [column.justify == "right" for column in columns]
    with _results_to(stream):
        widths: list[int] | None = None
        while True:
            chunk = [_pipe_cells(columns, row) for row in islice(remaining, PIPE_CHUNK)]
            if not chunk:
                break
            # Each cell's width, measured once: a cell of ASCII (nearly all) is its length.
            measured = [[_width(text) for text in cells] for cells in chunk]
            grown = [max(row[i] for row in measured) for i in range(len(columns))]
            if widths is None:
                widths = [max(_width(c.header), w) for c, w in zip(columns, grown, strict=True)]
                if title:
                    stream.write(_pipe_line(title) + "\n")
                headers = [c.header for c in columns]
                stream.write(_row_line(headers, [_width(h) for h in headers], widths, right) + "\n")
                stream.write("  ".join("─" * w for w in widths) + "\n")
            else:
                widths = [max(a, b) for a, b in zip(widths, grown, strict=True)]
            stream.write(
                "".join(
                    _row_line(cells, sizes, widths, right) + "\n"
                    for cells, sizes in zip(chunk, measured, strict=True)
                )
            )
        if widths is None:
            stream.write(empty + "\n")
    more = sum(1 for _ in source)
    if more:
        info(_more_line(more, noun, "--csv or --json"))


def _pipe_cells(columns: Sequence[Column], row: Mapping[str, Any]) -> list[str]:
    cells = []
    for column in columns:
        value = row.get(column.key)
        if column.format is not None:
            text = column.format(value)
        elif isinstance(value, str):
            text = value
        else:
            text = "" if value is None else str(value)
        if not text.isprintable():
            text = _pipe_line(cell_text(column, row))
        cells.append(text)
    return cells


def _pipe_line(text: str) -> str:
    return text.replace("\n", "\u240a") if "\n" in text else text


def _width(text: str) -> int:
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _row_line(
    cells: Sequence[str], sizes: Sequence[int], widths: Sequence[int], right: Sequence[bool]
) -> str:
    parts = [
        " " * (width - size) + text if to_right else text + " " * (width - size)
        for text, size, width, to_right in zip(cells, sizes, widths, right, strict=True)
    ]
    return "  ".join(parts).rstrip()


def key_values(pairs: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    """A two-column view of one record; values wrap at words at a terminal and are written
    whole, one line each, to a pipe or a file."""
    from rich.table import Table

    out = console()
    if not _is_terminal(out.file):
        labels = max((len(label) for label, _ in pairs), default=0)
        with _results_to(out.file):
            if title:
                out.file.write(_pipe_line(title) + "\n")
            for label, value in pairs:
                shown = _pipe_line(cell_text(Column(label, "v"), {"v": value}))
                out.file.write(f"{label.ljust(labels)}  {shown}".rstrip() + "\n")
        return

    grid = Table(
        title=_text(title, "table.title") if title else None,
        title_justify="left",
        show_header=False,
        box=None,
        padding=(0, 2, 0, 0),
    )
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in pairs:
        grid.add_row(_text(label, "bold"), _text("" if value is None else value))
    _print(out, grid)


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
    """A line of text, wrapped at words at a terminal, whole in a pipe or a file."""
    _print(console(), _text(text, style))


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
