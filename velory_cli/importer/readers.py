"""The readers: a file's rows, whatever its format, each with the number an admin finds it at.

A reader (``Reader``) hands the import a file's data rows in batches, in the file's order. Each
row carries its number as the admin sees it: the spreadsheet row (the header is row 1), the
element of a JSON array (from 1) or the line of a JSON Lines file; what the file holds there,
for the rejects file; and the text of each field, by the file's header. A reader that reads a
row at a time makes its batches with ``batches_of``.
"""

from __future__ import annotations

import csv
import itertools
import json
import operator
import re
import secrets
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, Any, NamedTuple, Protocol

from velory_cli.importer.columns import (
    ALIASES,
    FIELDS,
    NOTES,
    SERIAL,
    ColumnMap,
    UnknownHeader,
    map_columns,
)
from velory_cli.importer.report import RowError, add_error
from velory_cli.importer.sources import (
    FORMAT_CSV,
    FORMAT_JSON,
    FORMAT_JSONL,
    FORMAT_SNIPE_IT,
    MAX_LINE_CHARS,
    MAX_RECORD_CHARS,
    Encoding,
    LineSource,
    LineTooLong,
    Source,
    bounded_lines,
    choose_format,
    file_over_limit,
    first_lines,
    over_limit,
    sniff_delimiter,
    text_stream,
)
from velory_cli.models import SPREADSHEET_QUOTED_STARTS, joined_notes

# No inventory has a header of more columns than this.
MAX_COLUMNS = 10_000
# No JSON element is longer than this in an inventory.
MAX_JSON_ELEMENT_CHARS = 16 * 1024 * 1024
# A cell is never longer than its line (MAX_LINE_CHARS); a quoted one over many lines may be:
# over 1 MiB it rejects its row, over 64 MiB (most likely a quote never closed) the file.
_CSV_FIELD_LIMIT = MAX_RECORD_CHARS + 1


def _marker() -> str:
    """What stands in for a line over 1 MiB among the lines a reader reads: no file has it."""
    return f"velory-line-over-limit-{secrets.token_hex(16)}"


class FileProblem(Exception):
    """The whole file cannot be imported; ``row`` is where it showed, if anywhere."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row


class Row(NamedTuple):
    """A data row as a reader hands it over."""

    number: int  # where the admin finds it: spreadsheet row, JSON element or JSON Lines line
    original: Any  # what the file holds there (CSV cells, a JSON object), for the rejects file
    texts: Sequence[str]  # the text of each field in FIELDS order, "" where there is none
    names: Sequence[str | None]  # the column of each field as the file spells it, for errors
    errors: list[RowError] | None  # problems found while reading it (a JSON value not text)


@dataclass(slots=True)
class Batch:
    """A chunk of rows, held by column: most checks then run once over a whole column."""

    numbers: Sequence[int]
    originals: list[Any]
    columns: list[Sequence[str]]  # per field, its texts as read ("" where there is none)
    names: Sequence[str | None] | None  # the column names, when every row has the same
    row_names: list[Sequence[str | None]] | None = None  # else each row's
    errors: list[list[RowError] | None] | None = None  # problems found while reading a row
    stripped: bool = False  # the texts of the named columns are stripped already

    def __len__(self) -> int:
        return len(self.originals)

    def row(self, index: int) -> Row:
        names = self.names if self.names is not None else self.row_names[index]  # type: ignore[index]
        return Row(
            self.numbers[index],
            self.originals[index],
            tuple(column[index] for column in self.columns),
            names,
            self.errors[index] if self.errors is not None else None,
        )


def _batch_of(rows: list[Row]) -> Batch:
    names = rows[0].names
    uniform = all(row.names is names for row in rows)
    errors = [row.errors for row in rows]
    return Batch(
        numbers=[row.number for row in rows],
        originals=[row.original for row in rows],
        columns=[list(column) for column in zip(*(row.texts for row in rows), strict=True)],
        names=names if uniform else None,
        row_names=None if uniform else [row.names for row in rows],
        errors=errors if any(errors) else None,
    )


def batches_of(rows: Iterator[Row], size: int) -> Iterator[Batch]:
    """The batches of a reader that reads a row at a time."""
    while chunk := list(itertools.islice(rows, size)):
        yield _batch_of(chunk)


class Reader(Protocol):
    """What the import reads a file through, whatever its format."""

    format: str  # one of sources' FORMAT_*: the rejects file is written in it
    delimiter: str  # the separator of a CSV file, which its rejects file keeps

    @property
    def header(self) -> list[str] | None:
        """The header row as the file has it, once read: a CSV rejects file repeats it."""
        ...

    def batches(self, size: int) -> Iterator[Batch]:
        """The data rows, ``size`` at a time (fewer where blank rows were left out). A file
        that cannot be imported at all raises ``FileProblem`` where it shows."""
        ...

    def ignored_columns(self) -> list[str]:
        """The columns the file has that no field takes, for a warning."""
        ...

    def close(self) -> None:
        """Let go of the file, which the caller opened and closes."""
        ...


class _TextReader:
    """The part every reader of a text stream shares."""

    format: str = FORMAT_CSV
    delimiter: str = ","

    def __init__(self, text: IO[str] | None) -> None:
        self.text = text

    def batches(self, size: int) -> Iterator[Batch]:
        return iter(())

    @property
    def header(self) -> list[str] | None:
        return None

    def ignored_columns(self) -> list[str]:
        return []

    def close(self) -> None:
        # Let go of the text layer without closing the file under it (it may be stdin).
        if self.text is not None:
            with suppress(ValueError, OSError):
                self.text.detach()  # type: ignore[attr-defined]
            self.text = None


def open_reader(
    source: Source, encoding: Encoding, overrides: Mapping[int, str] | None = None
) -> Reader:
    """The reader for ``source`` read as ``encoding``: by its extension, else by its first
    character; CSV unless it looks like JSON. Its header, if any, is read and checked here.
    ``overrides`` names the header of a field outright (``--column``)."""
    text = text_stream(source, encoding)
    try:
        return _reader_for(source, text, overrides or {})
    except BaseException:
        # Let go of the text layer without closing the file under it: it is read again (in
        # another encoding), or it is stdin.
        with suppress(ValueError, OSError):
            text.detach()
        raise


def _reader_for(source: Source, text: IO[str], overrides: Mapping[int, str]) -> Reader:
    lines, first_char, skipped = first_lines(text)
    kind = choose_format(source.suffix, first_char)
    if not first_char:
        empty = _TextReader(text)  # nothing but blank lines: no rows, which is no error
        empty.format = kind
        return empty
    if kind == FORMAT_JSON:
        return _JsonReader(text, lines, overrides, skipped)
    if kind == FORMAT_JSONL:
        return _JsonLinesReader(text, lines, overrides, skipped)
    return _CsvReader(text, lines, source.suffix, overrides, skipped)


class _CsvReader(_TextReader):
    """A CSV table, a batch at a time by column. Its header is the first row that is not
    blank; a row's number is the one a spreadsheet shows it at (blank rows count)."""

    format = FORMAT_CSV

    def __init__(
        self,
        text: IO[str],
        lines: list[str],
        suffix: str,
        overrides: Mapping[int, str],
        skipped: int = 0,
    ) -> None:
        super().__init__(text)
        self.lines = lines
        self.overrides = overrides
        self.skipped = skipped  # the blank lines before the header: rows, as Excel counts
        header_line = lines[-1]
        if "\x00" in header_line:
            raise FileProblem("this is not a table: the file holds binary data", row=None)
        if not header_line.endswith(("\n", "\r")) and text.read(1):
            raise FileProblem(
                "this is not a table: its first line is longer than any header", row=None
            )
        self.delimiter, names_separator = sniff_delimiter(header_line, suffix)
        if names_separator:
            del lines[-1]
        self._header: list[str] | None = None
        self.columns: ColumnMap | None = None

    @property
    def header(self) -> list[str] | None:
        return self._header

    def batches(self, size: int) -> Iterator[Batch]:
        assert self.text is not None
        if csv.field_size_limit() < _CSV_FIELD_LIMIT:
            csv.field_size_limit(_CSV_FIELD_LIMIT)
        marker = _marker()
        held: deque[tuple[str, int]] = deque()
        lines = bounded_lines(self.text, self.lines, marker + "\n", held)
        reader = csv.reader(lines, delimiter=self.delimiter, strict=True)
        number = self.skipped
        try:
            for cells in reader:
                number += 1
                if cells == [marker]:
                    raise FileProblem(
                        "this is not a table: its first line is longer than any header",
                        row=number,
                    )
                if len(cells) > MAX_COLUMNS:
                    raise FileProblem(
                        f"this is not a table: its header has {len(cells):,} columns "
                        f"(more than {MAX_COLUMNS:,})",
                        row=number,
                    )
                # Blank lines above the header (after a sep= line) are rows too, and skipped.
                if any(cell.strip() for cell in cells):
                    self._header = cells
                    self.columns = table_columns(cells, number, self.overrides)
                    break
            if self.columns is None:
                return
            positions, names = self.columns.positions, self.columns.names
            # A field's texts in one pass of C over the rows: an itemgetter a used column.
            getters = [operator.itemgetter(p) if p is not None else None for p in positions]
            # A full row is as wide as the header, and a blank row never is (but for a header of
            # one column, which takes the careful way for every row).
            full_width = max(len(self._header or ()), 2)
            while True:
                batch: list[list[str]] = []
                first = number + 1
                lines_before = reader.line_num
                try:
                    # extend() keeps what it read before an error: the row of a bad one is known.
                    batch.extend(itertools.islice(reader, size))
                finally:
                    number += len(batch)
                if not batch:
                    return
                # No line is over 1 MiB, so only a quoted cell over several lines can be: a
                # batch of more lines than rows has one, and its cells are measured.
                long_cells = reader.line_num - lines_before > len(batch) and any(
                    len(cell) > MAX_LINE_CHARS for cells in batch for cell in cells
                )
                # A line over 1 MiB read in this batch (``held``) takes the careful way.
                if not held and not long_cells and min(map(len, batch)) >= full_width:
                    empty = ("",) * len(batch)
                    columns: list[Sequence[str]] = [
                        _stripped(list(map(get, batch))) if get is not None else empty
                        for get in getters
                    ]
                    yield Batch(
                        range(first, first + len(batch)), batch, columns, names, stripped=True
                    )
                    continue
                rows: list[Row] = []
                for offset, cells in enumerate(batch):
                    width = len(cells)
                    if width == 1 and cells[0] == marker:
                        rows.append(self._long_row(first + offset, *held.popleft()))
                        continue
                    if held and any(marker in cell for cell in cells):
                        # The long line is a line of a quoted cell over many lines.
                        rows.append(self._long_cell(first + offset, cells, marker, held))
                        continue
                    if long_cells and any(len(cell) > MAX_LINE_CHARS for cell in cells):
                        rows.append(self._long_lines_cell(first + offset, cells))
                        continue
                    if not cells or (width == 1 and not cells[0].strip()):
                        continue  # a blank line: Excel leaves them, they are no device
                    values = tuple(
                        _unquoted(cells[p].strip()) if p is not None and p < width else ""
                        for p in positions
                    )
                    rows.append(Row(first + offset, cells, values, names, None))
                if rows:
                    yield _batch_of(rows)
        except csv.Error as exc:
            raise FileProblem(_csv_problem(exc), row=number + 1) from None
        except LineTooLong as exc:
            raise FileProblem(file_over_limit(exc.length), row=number + 1) from None

    def _long_row(self, number: int, prefix: str, length: int) -> Row:
        """The row of a line over 1 MiB, rejected: its column is the cell the line grows past
        1 MiB in, its texts the cells before that one (its serial, mostly), for errors and
        repeats; the rejects file has those cells and an empty one for the rest."""
        assert self.columns is not None
        cells = next(csv.reader([prefix], delimiter=self.delimiter, strict=False), [""])
        long_cell = max(len(cells) - 1, 0)
        header = self._header or []
        column = header[long_cell] if long_cell < len(header) else None
        texts = tuple(
            _unquoted(cells[p].strip()) if p is not None and p < long_cell else ""
            for p in self.columns.positions
        )
        errors = add_error(None, number, column, f"the line is {over_limit(length)}")
        return Row(number, [*cells[:long_cell], ""], texts, self.columns.names, errors)

    def _long_cell(
        self, number: int, cells: list[str], marker: str, held: deque[tuple[str, int]]
    ) -> Row:
        """The row of a quoted cell one of whose lines is over 1 MiB (read through, and
        ``marker`` in its place), rejected; the rejects file has the cell empty."""
        assert self.columns is not None
        long_cell = next(index for index, cell in enumerate(cells) if marker in cell)
        length = 0
        for _ in range(cells[long_cell].count(marker)):
            length += held.popleft()[1]
        return self._rejected_cell(number, cells, long_cell, length)

    def _long_lines_cell(self, number: int, cells: list[str]) -> Row:
        """The row of a quoted cell over 1 MiB of lines each shorter, rejected as a cell over
        1 MiB; the rejects file has the cell empty."""
        long_cell = next(i for i, cell in enumerate(cells) if len(cell) > MAX_LINE_CHARS)
        return self._rejected_cell(number, cells, long_cell, len(cells[long_cell]))

    def _rejected_cell(self, number: int, cells: list[str], long_cell: int, length: int) -> Row:
        """``cells`` rejected for the cell at ``long_cell``, ``length`` characters long."""
        assert self.columns is not None
        kept = [*cells[:long_cell], "", *cells[long_cell + 1 :]]
        header = self._header or []
        column = header[long_cell] if long_cell < len(header) else None
        texts = tuple(
            _unquoted(kept[p].strip()) if p is not None and p < len(kept) else ""
            for p in self.columns.positions
        )
        errors = add_error(None, number, column, f"the cell is {over_limit(length)}")
        return Row(number, kept, texts, self.columns.names, errors)

    def ignored_columns(self) -> list[str]:
        return list(self.columns.ignored) if self.columns else []


def _stripped(texts: list[str]) -> list[str]:
    """The texts of a column stripped and unquoted (``_unquoted``), one pass of C each; none
    at all when the column holds no white space anywhere (serials, emails, dates mostly),
    which one split finds out: the joined text splits into one part as long as itself only
    when no white space is in it. (A part count alone cannot see white space at either end
    of the joined text.)"""
    joined = "".join(texts)
    parts = joined.split(None, 1)
    if joined and not (len(parts) == 1 and len(parts[0]) == len(joined)):
        texts = list(map(str.strip, texts))
    if "'" in joined:
        texts = list(map(_unquoted, texts))
    return texts


def _unquoted(text: str) -> str:
    """A cell without the ``'`` a spreadsheet-safe CSV (velory's own export) puts before a
    text that starts like a formula, or with ``'``: exactly one is taken off, so an export
    reads back as it was. Any other ``'`` is the cell's own."""
    if text[:1] == "'" and text[1:2].startswith(SPREADSHEET_QUOTED_STARTS):
        return text[1:]
    return text


def table_columns(
    header: list[str], row: int, overrides: Mapping[int, str] | None = None
) -> ColumnMap:
    """The column map of a table's header (at ``row``), or why the file cannot be imported."""
    try:
        columns = map_columns(header, overrides, row=row)
    except UnknownHeader as exc:
        raise FileProblem(str(exc), row=row) from None
    if not columns.has(SERIAL):
        found = ", ".join(h.strip() for h in header if h.strip()) or "no column names"
        raise FileProblem(
            f"no serial column: name one {_accepted('serial')} (found {found})", row=row
        )
    # No date column is no problem for the file: only a row that would create a device needs a
    # date, and a file of corrections to known devices (new emails) has none.
    return columns


def _accepted(name: str, word: str = "of") -> str:
    aliases = [f'"{alias}"' for alias in ALIASES[name]]
    if word == "or":
        return ", ".join(aliases[:-1]) + " or " + aliases[-1]
    return "of " + ", ".join(aliases)


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return (
            'a quoted cell runs over 64 MiB: most likely a quote (") that is never closed runs '
            "the rest of the file into one cell"
        )
    if "unexpected end of data" in text:
        return 'the file ends inside a quoted field: a quote (") is never closed'
    if "expected after" in text:
        return f"a quoted field has text after its closing quote ({text})"
    return f"this is not a CSV table: {text}"


def _note_text(note: Any) -> str | None:
    """The text of one note of a JSON list of notes: a text, or an object with one."""
    if isinstance(note, str):
        return note
    if isinstance(note, dict) and isinstance(note.get("text"), str):
        return str(note["text"])
    return None


class _JsonKeys:
    """The column map of each distinct set of keys the objects of a JSON file use."""

    def __init__(self, overrides: Mapping[int, str]) -> None:
        self.overrides = overrides
        self.maps: dict[tuple[str, ...], tuple[list[str], ColumnMap]] = {}
        self.ignored_names: dict[str, None] = {}

    def row(self, number: int, obj: dict[str, Any]) -> Row:
        """The row of one object, its fields found by the column map of its keys."""
        keys = tuple(obj)
        known = self.maps.get(keys)
        if known is None:
            columns = self._map(keys, number)
            known = (list(keys), columns)
            if len(self.maps) < 1000:  # a file of ever-new keys is not worth remembering
                self.maps[keys] = known
            for name in columns.ignored:
                if len(self.ignored_names) < 100:
                    self.ignored_names.setdefault(name, None)
        key_list, columns = known
        values: list[str] = []
        errors: list[RowError] | None = None
        for index, position in enumerate(columns.positions):
            value = obj[key_list[position]] if position is not None else None
            if isinstance(value, str):
                values.append(value)
                continue
            if index == NOTES and isinstance(value, list):
                # velory's own JSON export: the notes as `show` has them, [{at, actor, text}].
                texts = [_note_text(note) for note in value]
                if None not in texts:
                    values.append(joined_notes(text for text in texts if text is not None))
                    continue
                values.append("")
                errors = add_error(
                    errors,
                    number,
                    columns.names[index],
                    "a list of notes holds texts or objects with a text",
                )
                continue
            values.append("")
            if value is not None:
                # Numbers arrive as their text (parse_int/parse_float); anything else is wrong.
                kind = (
                    "true or false"
                    if isinstance(value, bool)
                    else "an object"
                    if isinstance(value, dict)
                    else "a list"
                )
                errors = add_error(
                    errors, number, columns.names[index], f"must be text, not {kind}"
                )
        return Row(number, obj, values, columns.names, errors)

    def _map(self, keys: tuple[str, ...], number: int) -> ColumnMap:
        """The column map of a set of keys. A key named with ``--column`` must be in the first
        object; later ones may leave it out, as JSON objects leave out what they lack."""
        try:
            return map_columns(keys, self.overrides, row=number)
        except UnknownHeader as exc:
            if not self.maps:
                raise FileProblem(str(exc), row=number) from None
        present = {index: name for index, name in self.overrides.items() if name in keys}
        return map_columns(keys, present, row=number)

    def ignored(self) -> list[str]:
        return list(self.ignored_names)

    def long_row(self, decoder: json.JSONDecoder, number: int, prefix: str, message: str) -> Row:
        """The row of an object over 1 MiB, rejected with ``message``: what its first 1 MiB
        (``prefix``) names whole (its serial, mostly) for errors and repeats, and the key whose
        value runs past it as the column, where one does."""
        values, column = _prefix_values(decoder, prefix)
        error = RowError(number, column, message)
        try:
            row = self.row(number, values)
        except FileProblem:  # a key named with --column is past the first 1 MiB
            count = len(FIELDS)
            return Row(number, values, ("",) * count, (None,) * count, [error])
        return row._replace(errors=[error, *(row.errors or ())])


class _JsonReader(_TextReader):
    """A JSON array of objects, element by element: never the whole array in memory."""

    format = FORMAT_JSON

    def __init__(
        self, text: IO[str], lines: list[str], overrides: Mapping[int, str], skipped: int = 0
    ) -> None:
        super().__init__(text)
        self.buffer = "".join(lines)
        self.position = 0
        # Line breaks in the text already dropped from the buffer (blank lines first).
        self.lines_before = skipped
        self.eof = False
        self.keys = _JsonKeys(overrides)

    def _fill(self) -> bool:
        if self.eof or self.text is None:
            return False
        chunk = self.text.read(1024 * 1024)
        if not chunk:
            self.eof = True
            return False
        self.lines_before += self.buffer.count("\n", 0, self.position)
        self.buffer = self.buffer[self.position :] + chunk
        self.position = 0
        return True

    def _next_char(self) -> str:
        """The next character that is not white space ("" at the end of the file)."""
        while True:
            buffer, position = self.buffer, self.position
            while position < len(buffer) and buffer[position] in " \t\r\n\ufeff":
                position += 1
            self.position = position
            if position < len(buffer):
                return buffer[position]
            if not self._fill():
                return ""

    def _where(self, offset: int) -> str:
        line = self.lines_before + self.buffer.count("\n", 0, offset) + 1
        column = offset - self.buffer.rfind("\n", 0, offset)
        return f"line {line}, column {column}"

    def batches(self, size: int) -> Iterator[Batch]:
        return batches_of(self.rows(), size)

    def rows(self) -> Iterator[Row]:
        decoder = json.JSONDecoder(parse_int=str, parse_float=str)
        if self._next_char() != "[":
            raise FileProblem(
                "this is not a JSON array of objects (it does not start with '[')", row=None
            )
        self.position += 1
        element = 0
        while True:
            char = self._next_char()
            if char == "]":
                self.position += 1
                break
            if element:
                if char != ",":
                    raise FileProblem(
                        f"not valid JSON at {self._where(self.position)}: "
                        + ("expected ',' or ']'" if char else "the array is never closed"),
                        row=element + 1,
                    )
                self.position += 1
                char = self._next_char()
            if not char:
                raise FileProblem("not valid JSON: the array is never closed", row=element + 1)
            element += 1
            value = self._decode(decoder, element)
            if isinstance(value, _LongElement):
                message = f"the element is {over_limit(value.length)}"
                yield self.keys.long_row(decoder, element, value.prefix, message)
                continue
            if not isinstance(value, dict):
                raise FileProblem(
                    f"element {element} of the array is not an object (a row of named values)",
                    row=element,
                )
            yield self.keys.row(element, value)
        if self._next_char():
            raise FileProblem(
                f"not valid JSON at {self._where(self.position)}: more after the array's end",
                row=None,
            )

    def _decode(self, decoder: json.JSONDecoder, element: int) -> Any:
        """The element at ``position``, or a ``_LongElement`` for one over 1 MiB, read through
        and never held whole."""
        while True:
            try:
                value, end = decoder.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError as exc:
                if len(self.buffer) - self.position <= MAX_LINE_CHARS and self._fill():
                    continue  # the element goes on in the next piece of the file
                problem = f"not valid JSON at {self._where(exc.pos)}: {exc.msg}"
                prefix = self.buffer[self.position : self.position + MAX_LINE_CHARS]
                length = self._skip_element()
                if length is None or length <= MAX_LINE_CHARS:
                    raise FileProblem(problem, row=element) from None
                if length > MAX_RECORD_CHARS:
                    raise FileProblem(file_over_limit(length, "an element"), row=element) from None
                return _LongElement(prefix, length)
            except RecursionError:
                raise FileProblem(_TOO_DEEP, row=element) from None
            if end >= len(self.buffer) and self._fill():
                continue  # a number or word may go on in the next piece
            if self.buffer.find("\\u", self.position, end) != -1:
                _check_escapes(value, element)
            self.position = end
            return value

    def _skip_element(self) -> int | None:
        """Read past the element at ``position`` by its brackets and strings alone, holding
        a piece of the file at a time, and return its length; None when the file ends in it.
        Stops counting past ``MAX_RECORD_CHARS``."""
        depth, in_string, skip, length = 0, False, 0, 0
        while True:
            buffer, position = self.buffer, self.position + skip
            while True:
                found = (_IN_STRING if in_string else _OUTSIDE).search(buffer, position)
                if found is None:
                    break
                position = found.end()
                char = found.group()
                if char == "\\":
                    position += 1  # the escaped character (maybe in the next piece)
                elif char == '"':
                    in_string = not in_string
                elif char in "[{":
                    depth += 1
                else:
                    depth -= 1
                if depth <= 0 and not in_string:
                    length += position - self.position
                    self.position = position
                    return length
            skip = max(position - len(buffer), 0)
            length += len(buffer) - self.position
            self.position = len(buffer)
            if length > MAX_RECORD_CHARS or not self._fill():
                return length if length > MAX_RECORD_CHARS else None

    def ignored_columns(self) -> list[str]:
        return self.keys.ignored()


class _LongElement(NamedTuple):
    """An element of a JSON array over 1 MiB: its first 1 MiB, and its length."""

    prefix: str
    length: int


# What matters to the brackets of JSON text outside a string, and inside one.
_OUTSIDE = re.compile(r'["\[\]{}]')
_IN_STRING = re.compile(r'["\\]')

_TOO_DEEP = "not a row of named values: lists or objects nested too deeply"
# The parts of the first 1 MiB of an object over 1 MiB, each matched where the last ended (so
# the text is read once): its start, a key, a whole value of text, a number or a word.
_JSON_STRING = r'"[^"\\]*+(?:\\.[^"\\]*+)*+"'  # possessive: no memory a character
_OBJECT_START = re.compile(r"\ufeff?\s*\{")
_JSON_KEY = re.compile(rf"\s*({_JSON_STRING})\s*:\s*")
_JSON_SCALAR = re.compile(rf"({_JSON_STRING}|-?[0-9][0-9.eE+-]*|true|false|null)\s*([,}}])")


def _prefix_values(decoder: json.JSONDecoder, prefix: str) -> tuple[dict[str, Any], str | None]:
    """The keys of the object ``prefix`` starts that have a whole value of text, a number or
    a word in it, with their values; and the key whose value runs past its end, if one does
    (None where that is a nested value, or cannot be told)."""
    values: dict[str, Any] = {}
    start = _OBJECT_START.match(prefix)
    position = start.end() if start else len(prefix)
    while key := _JSON_KEY.match(prefix, position):
        position = key.end()
        scalar = _JSON_SCALAR.match(prefix, position)
        try:
            name = decoder.decode(key[1])
            if scalar is None:
                # Its value runs past the end, or is a list or an object: left out.
                cut = prefix.startswith('"', position) or prefix[position:].strip() == ""
                return values, name if cut and name not in values else None
            values.setdefault(name, decoder.decode(scalar[1]))
        except (ValueError, RecursionError):
            return values, None
        if scalar[2] == "}":
            break
        position = scalar.end()
    return values, None


def _check_escapes(value: Any, row: int) -> None:
    """Refuse a \\u escape that stands for half a character (a lone surrogate): it is no
    text, and could be neither stored nor printed."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise FileProblem(
            "a \\u escape stands for half a character (a lone surrogate), which is no text",
            row=row,
        ) from None


class _JsonLinesReader(_TextReader):
    """One JSON object a line; the line number is the row."""

    format = FORMAT_JSONL

    def __init__(
        self, text: IO[str], lines: list[str], overrides: Mapping[int, str], skipped: int = 0
    ) -> None:
        super().__init__(text)
        self.lines = lines
        self.skipped = skipped  # blank lines before the first object
        self.keys = _JsonKeys(overrides)

    def batches(self, size: int) -> Iterator[Batch]:
        return batches_of(self.rows(), size)

    def rows(self) -> Iterator[Row]:
        assert self.text is not None
        decoder = json.JSONDecoder(parse_int=str, parse_float=str)
        marker = _marker()
        held: deque[tuple[str, int]] = deque()
        number = self.skipped
        first_line = self.skipped + len(self.lines)  # the first that is not blank
        text: LineSource = self.text
        if self.lines and len(self.lines[0]) > MAX_LINE_CHARS and _ANSWER.match(self.lines[0]):
            # An API answer is one line, often over 1 MiB: read as one document if it is one.
            head = self.lines[0] + self.text.read(MAX_JSON_ELEMENT_CHARS)
            envelope = _snipe_answer(decoder, head)
            if envelope is not None:
                yield from self._envelope_rows(envelope)
                if any(line.strip() for line in bounded_lines(self.text, [], marker, held)):
                    raise FileProblem("more after the end of the JSON answer", row=None)
                return
            text = _Joined(head, self.text)
            self.lines = []
        lines = bounded_lines(text, self.lines, marker, held)
        try:
            for line in lines:
                number += 1
                if line is marker:
                    prefix, length = held.popleft()
                    yield self.keys.long_row(
                        decoder, number, prefix, f"the line is {over_limit(length)}"
                    )
                    continue
                stripped = line.strip().lstrip("\ufeff")
                if not stripped:
                    continue
                try:
                    value = decoder.decode(stripped)
                except json.JSONDecodeError as exc:
                    if number == first_line and stripped.startswith("{"):
                        # Not one object a line: maybe one object over many, as an API answers.
                        envelope = self._whole_document(decoder, line)
                        if envelope is not None:
                            yield from self._envelope_rows(envelope)
                            return
                    raise FileProblem(
                        f"line {number} is not valid JSON (column {exc.colno}): {exc.msg}",
                        row=number,
                    ) from None
                except RecursionError:
                    raise FileProblem(_TOO_DEEP, row=number) from None
                if "\\u" in stripped:
                    _check_escapes(value, number)
                if number == first_line and is_snipe_answer(value):
                    yield from self._envelope_rows(value)
                    if any(rest.strip() for rest in lines):
                        raise FileProblem("more after the end of the JSON answer", row=None)
                    return
                if not isinstance(value, dict):
                    raise FileProblem(
                        f"line {number} is not a JSON object (a row of named values)", row=number
                    )
                yield self.keys.row(number, value)
        except LineTooLong as exc:
            raise FileProblem(file_over_limit(exc.length), row=number + 1) from None

    def ignored_columns(self) -> list[str]:
        return self.keys.ignored()

    def _whole_document(self, decoder: json.JSONDecoder, first: str) -> Any:
        """The file as one JSON document from ``first`` on, if it is an API answer that
        velory reads (Snipe-IT's), else None. Such answers are a page of a few hundred rows."""
        assert self.text is not None
        return _snipe_answer(decoder, first + self.text.read(MAX_JSON_ELEMENT_CHARS))

    def _envelope_rows(self, envelope: dict[str, Any]) -> Iterator[Row]:
        """The assets of a Snipe-IT answer, each flattened to the fields velory imports; its
        row is the asset's place in ``rows``, from 1."""
        self.format = FORMAT_SNIPE_IT
        for element, asset in enumerate(envelope["rows"], start=1):
            if not isinstance(asset, dict):
                raise FileProblem(
                    f"element {element} of rows is not an object (an asset)", row=element
                )
            yield self.keys.row(element, snipe_asset(asset))


def _snipe_answer(decoder: json.JSONDecoder, text: str) -> Any:
    """``text`` as one JSON document if it is an API answer velory reads, else None."""
    try:
        value = decoder.decode(text.strip().lstrip("\ufeff"))
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if is_snipe_answer(value) else None


# How Snipe-IT's answer starts: {"total": N, "rows": [ (its other keys may come between).
_ANSWER = re.compile(r'\ufeff?\s*\{\s*"(?:total|rows|offset|limit)"\s*:')
_LINE_END = re.compile(r"\r\n?|\n")


class _Joined:
    """Text read from ``head`` (read from the file already), then from ``tail``, by line."""

    def __init__(self, head: str, tail: IO[str]) -> None:
        self.head, self.position, self.tail = head, 0, tail

    def readline(self, limit: int = -1, /) -> str:
        head, start = self.head, self.position
        end = len(head) if limit < 0 else min(len(head), start + limit)
        found = _LINE_END.search(head, start, end)
        stop = found.end() if found else end
        self.position = stop
        line = head[start:stop]
        if found or len(line) == limit or stop < len(head):
            return line
        self.head, self.position = "", 0  # read through: from here on, the file itself
        return line + self.tail.readline(limit - len(line) if limit >= 0 else -1)


def is_snipe_answer(value: Any) -> bool:
    """Snipe-IT's API answer: ``{"total": N, "rows": [assets]}``."""
    return isinstance(value, dict) and "total" in value and isinstance(value.get("rows"), list)


def snipe_asset(asset: dict[str, Any]) -> dict[str, Any]:
    """One Snipe-IT asset as the columns velory imports. Snipe-IT nests names in objects
    (``model.name``), keeps dates as ``{date, formatted}``, names the user in ``assigned_to``
    only when it is checked out to a person, and escapes text for HTML (``O&#039;Brien``)."""
    import html

    def text(value: Any) -> Any:
        return html.unescape(value) if isinstance(value, str) else value

    def name_of(value: Any) -> Any:
        return text(value.get("name")) if isinstance(value, dict) else text(value)

    def date_of(value: Any) -> Any:
        return value.get("date") if isinstance(value, dict) else value

    holder = asset.get("assigned_to")
    person = holder if isinstance(holder, dict) and holder.get("type") == "user" else {}
    flat = {
        "serial": text(asset.get("serial")),
        "model": name_of(asset.get("model")),
        "category": name_of(asset.get("category")),
        "email": text(person.get("email")),
        "full name": text(person.get("name")),
        "supplier": name_of(asset.get("supplier")),
        "purchase date": date_of(asset.get("purchase_date")) or "",
        "asset eol date": date_of(asset.get("asset_eol_date")) or "",
        "notes": text(asset.get("notes")),
    }
    return flat
