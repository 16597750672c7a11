"""Files in, validated rows and a row-numbered report out: ``velory import``.

The file is read as it comes from Excel or another asset system: CSV with ``,`` ``;`` or tab
between fields, any line ends, UTF-8 with or without a byte-order mark or Windows-1252; a JSON
array of objects; or JSON Lines. Rows stream through in chunks, so a file of a million rows
takes no more memory than one of a thousand: each chunk is checked, its serials are looked up
with one query, and its inserts, updates and history are written a chunk at a time. The whole
import is one transaction; a file with an invalid row writes nothing unless ``skip_invalid``.

Every problem is reported with the row an admin finds it at: the spreadsheet row (the header is
row 1), the element of a JSON array (from 1) or the line of a JSON Lines file, and the column as
the file spells it.
"""

from __future__ import annotations

import csv
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields
from typing import IO, Any

from velory_cli import dates
from velory_cli.errors import InputUnreadable, OutputUnwritable
from velory_cli.importer.sources import (
    FORMAT_CSV,
    FORMAT_JSON,
    FORMAT_JSONL,
    Encoding,
    Source,
    check_encoding,
    choose_format,
    detect_encoding,
    first_lines,
    open_source,
    sniff_delimiter,
    text_stream,
)
from velory_cli.lifecycle import ACTIVE, REMOVED
from velory_cli.models import SOURCE_IMPORTED
from velory_cli.store import SERIALS_INDEX, Store

# The fields an import fills, in the order rows carry them.
FIELDS = (
    "serial",
    "model",
    "category",
    "user_email",
    "user_name",
    "distributor",
    "purchase_date",
    "renewal_date",
    "notes",
)
SERIAL, MODEL, CATEGORY, EMAIL, USER_NAME, DISTRIBUTOR, PURCHASED, RENEWAL, NOTES = range(9)

# PRODUCT.md's table: the headers each field accepts, the most telling first. Where two columns
# of a file match one field, the one whose header comes earlier here wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "serial": ("serial", "serial number", "serial no", "serialnumber", "sn"),
    "model": ("model", "model name", "device"),
    "category": ("category", "type"),
    "user_email": ("email", "e-mail", "user email", "email address", "checked out to: email"),
    "user_name": ("full name", "user name", "user", "employee"),
    "distributor": ("distributor", "supplier", "vendor", "reseller"),
    "purchase_date": ("purchase date", "purchased", "order date"),
    "renewal_date": (
        "renewal date",
        "renewal",
        "lease end",
        "end of lease",
        "eol date",
        "asset eol date",
    ),
    "notes": ("notes", "note", "comment", "comments", "asset notes"),
}

# The device columns the stored values of the fields 1..8 live in, for history details.
STORED_FIELDS = (
    "model",
    "category",
    "user_email",
    "user_name",
    "distributor",
    "purchase_date",
    "renewal_date",
    "import_notes",
)

# The action of the history entries an import writes.
IMPORT_ACTION = "import"

CHUNK_ROWS = 5000
# A progress bar is worth drawing only for files that take a while.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024
# No JSON element is longer than this in an inventory.
MAX_JSON_ELEMENT_CHARS = 16 * 1024 * 1024
# How many rows of errors a table for people shows; --json and --rejects have them all.
SHOWN_ERRORS = 200

_HEADER_NOISE = re.compile(r"[\s_\-.:\ufeff]+")
# Excel shows a long number it has read from a serial as 6.37702E+15; the digits are gone.
_SCIENTIFIC = re.compile(r"[+-]?\d(?:[.,]\d+)?[eE][+-]?\d{1,3}", re.ASCII)
_SCIENTIFIC_LINES = re.compile(r"^" + _SCIENTIFIC.pattern + r"$", re.ASCII | re.MULTILINE)
# Control characters: none in a field velory imports; line breaks and tabs are fine in notes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_NOTES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# An address as people write one: no spaces, one @, dots only between parts, a dotted domain.
_LOCAL = r"[^\s@.,;:<>()\[\]\\\"]+"
_LABEL = r"[^\s@.,;:<>()\[\]\\\"'`]+"
_EMAIL = re.compile(rf"{_LOCAL}(?:\.{_LOCAL})*@{_LABEL}(?:\.{_LABEL})+")
# Many addresses, one a line, checked in one call (none of the parts can hold a line break).
_EMAIL_LINES = re.compile(rf"{_EMAIL.pattern}(?:\n{_EMAIL.pattern})*")


def normalise_header(name: str) -> str:
    """A header as velory compares it: any case, without spaces, ``_ - . :`` or a BOM."""
    return _HEADER_NOISE.sub("", name).lower()


def _alias_index() -> dict[str, tuple[int, int]]:
    """Each normalised alias: its field and rank. Two aliases may normalise alike ("serial
    number" and "serialnumber"); the earlier rank stands."""
    index: dict[str, tuple[int, int]] = {}
    for field_index, name in enumerate(FIELDS):
        for rank, alias in enumerate(ALIASES[name]):
            index.setdefault(normalise_header(alias), (field_index, rank))
    return index


_ALIAS_INDEX = _alias_index()


# ---- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    """One problem: the row it is on (None for the whole file), the column as the file spells
    it (None when it is not about one column), and what is wrong."""

    row: int | None
    column: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class ImportReport:
    """What an import did (or, dry run, would do), row by row where something is wrong."""

    source: str
    dry_run: bool
    skip_invalid: bool
    format: str | None = None
    encoding: str | None = None
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # A problem with the whole file (not a table, no serial column, invalid JSON): nothing read.
    file_error: RowError | None = None
    written: bool = False

    @property
    def failed(self) -> bool:
        """True when nothing was (or would be) written because the data is invalid."""
        return self.file_error is not None or (self.rejected > 0 and not self.skip_invalid)

    @property
    def exit_code(self) -> int:
        from velory_cli.errors import ExitCode

        return int(ExitCode.DATA_INVALID) if self.failed else int(ExitCode.OK)

    @property
    def valid(self) -> int:
        return self.rows - self.rejected

    def to_dict(self) -> dict[str, Any]:
        errors = [e.to_dict() for e in self.errors]
        if self.file_error is not None:
            errors.append(self.file_error.to_dict())
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "dry_run": self.dry_run,
            "errors": errors,
            "file": self.source,
            "format": self.format,
            "encoding": self.encoding,
            "rows": self.rows,
            "valid": self.valid,
            "written": self.written,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class ImportOptions:
    skip_invalid: bool = False
    dry_run: bool = False
    date_order: dates.DateOrder | None = None
    term_months: int = 36
    encoding: str | None = None


# ---- reading rows --------------------------------------------------------------------------


class FileProblem(Exception):
    """The whole file cannot be imported; ``row`` is where it showed, if anywhere."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row


@dataclass(frozen=True)
class ColumnMap:
    """Which column feeds which field, as a file's header says."""

    positions: tuple[int | None, ...]  # per field: the column's position, or None
    names: tuple[str | None, ...]  # per field: the header as the file spells it
    ignored: tuple[str, ...]  # columns velory does not import, each named once

    def has(self, field_index: int) -> bool:
        return self.positions[field_index] is not None


def map_columns(headers: Sequence[str]) -> ColumnMap:
    """Match a header to the fields: any case, without spaces, ``_ - . :``; where two columns
    match one field, the alias earlier in PRODUCT.md's table wins, then the earlier column."""
    best: dict[int, tuple[int, int]] = {}  # field: (alias rank, position)
    losers: list[int] = []
    for position, raw in enumerate(headers):
        key = normalise_header(raw)
        if not key:
            continue  # an empty header: a column without a name holds nothing velory can use
        hit = _ALIAS_INDEX.get(key)
        if hit is None:
            losers.append(position)
            continue
        field_index, rank = hit
        current = best.get(field_index)
        if current is None or rank < current[0]:
            if current is not None:
                losers.append(current[1])
            best[field_index] = (rank, position)
        else:
            losers.append(position)
    positions = tuple(best[i][1] if i in best else None for i in range(len(FIELDS)))
    names = tuple(headers[p].strip() if p is not None else None for p in positions)
    used_by = {
        p: n for p, n in zip(positions, names, strict=True) if p is not None and n is not None
    }
    ignored: list[str] = []
    seen: set[str] = set()
    for position in sorted(losers):
        name = headers[position].strip()
        if name in seen:
            continue
        seen.add(name)
        winner = _winner_for(normalise_header(name), positions, used_by)
        if winner is None:
            ignored.append(name)
        elif winner == name:
            ignored.append(f"{name} (the first {name} is used)")
        else:
            ignored.append(f"{name} ({winner} is used)")
    return ColumnMap(positions=positions, names=names, ignored=tuple(ignored))


def _winner_for(key: str, positions: Sequence[int | None], used_by: dict[int, str]) -> str | None:
    hit = _ALIAS_INDEX.get(key)
    if hit is None:
        return None
    position = positions[hit[0]]
    return used_by.get(position) if position is not None else None


# A data row as a reader hands it over: its number, what the file holds there (CSV cells or a
# JSON object), the text of each field in FIELDS order ("" where there is none), the column
# names for its errors, and errors found while reading it.
_Row = tuple[int, Any, Sequence[str], Sequence[str | None], list[RowError] | None]

# A row once checked one by one: a list (a repeated serial adds its error later) of
_NUMBER, _KEY, _VALUES, _ERRORS, _ORIGINAL, _NAMES, _SERIAL = range(7)
_NO_VALUES = ("",) * 9  # the values of a rejected row, which holds only its serial
# The parts of a stored device as Store.import_lookup returns it.
_POSITION, _ID, _STATUS = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)
_STORED_VALUES = operator.itemgetter(slice(5, None))
# number, serial key (None without a usable serial), the values to store (None when rejected),
# errors (None when valid), what the file holds, column names, the serial as written.


@dataclass(slots=True)
class _Batch:
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

    def row(self, index: int) -> _Row:
        names = self.names if self.names is not None else self.row_names[index]  # type: ignore[index]
        return (
            self.numbers[index],
            self.originals[index],
            tuple(column[index] for column in self.columns),
            names,
            self.errors[index] if self.errors is not None else None,
        )


def _batch_of(rows: list[_Row]) -> _Batch:
    names = rows[0][3]
    uniform = all(row[3] is names for row in rows)
    errors = [row[4] for row in rows]
    return _Batch(
        numbers=[row[0] for row in rows],
        originals=[row[1] for row in rows],
        columns=[list(column) for column in zip(*(row[2] for row in rows), strict=True)],
        names=names if uniform else None,
        row_names=None if uniform else [row[3] for row in rows],
        errors=errors if any(errors) else None,
    )


class _Reader:
    """A file's rows, whatever its format, with the file's own numbering, in batches."""

    format: str = FORMAT_CSV
    delimiter: str = ","

    def __init__(self, text: IO[str] | None) -> None:
        self.text = text

    def rows(self) -> Iterator[_Row]:
        return iter(())

    def batches(self, size: int) -> Iterator[_Batch]:
        rows = self.rows()
        while chunk := list(itertools.islice(rows, size)):
            yield _batch_of(chunk)

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


def open_reader(source: Source, encoding: Encoding) -> _Reader:
    text = text_stream(source, encoding)
    try:
        return _reader_for(source, text)
    except BaseException:
        # Let go of the text layer without closing the file under it: it is read again (in
        # another encoding), or it is stdin.
        with suppress(ValueError, OSError):
            text.detach()
        raise


def _reader_for(source: Source, text: IO[str]) -> _Reader:
    lines, first_char = first_lines(text)
    kind = choose_format(source.suffix, first_char)
    if not first_char:
        empty = _Reader(text)  # nothing but blank lines: no rows, which is no error
        empty.format = kind
        return empty
    if kind == FORMAT_JSON:
        return _JsonReader(text, lines)
    if kind == FORMAT_JSONL:
        return _JsonLinesReader(text, lines)
    return _CsvReader(text, lines, source.suffix)


class _CsvReader(_Reader):
    format = FORMAT_CSV

    def __init__(self, text: IO[str], lines: list[str], suffix: str) -> None:
        super().__init__(text)
        self.lines = lines
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

    def batches(self, size: int) -> Iterator[_Batch]:
        assert self.text is not None
        reader = csv.reader(
            itertools.chain(self.lines, self.text), delimiter=self.delimiter, strict=True
        )
        number = 0
        try:
            for cells in reader:
                number += 1
                if cells:  # blank lines above the header are rows too, and skipped
                    self._header = cells
                    self.columns = _table_columns(cells, number)
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
                try:
                    # extend() keeps what it read before an error: the row of a bad one is known.
                    batch.extend(itertools.islice(reader, size))
                finally:
                    number += len(batch)
                if not batch:
                    return
                if min(map(len, batch)) >= full_width:
                    empty = ("",) * len(batch)
                    columns: list[Sequence[str]] = [
                        _stripped(list(map(get, batch))) if get is not None else empty
                        for get in getters
                    ]
                    yield _Batch(
                        range(first, first + len(batch)), batch, columns, names, stripped=True
                    )
                    continue
                rows: list[_Row] = []
                for offset, cells in enumerate(batch):
                    width = len(cells)
                    if not cells or (width == 1 and not cells[0].strip()):
                        continue  # a blank line: Excel leaves them, they are no device
                    values = tuple(
                        cells[p] if p is not None and p < width else "" for p in positions
                    )
                    rows.append((first + offset, cells, values, names, None))
                if rows:
                    yield _batch_of(rows)
        except csv.Error as exc:
            raise FileProblem(_csv_problem(exc), row=number + 1) from None

    def ignored_columns(self) -> list[str]:
        return list(self.columns.ignored) if self.columns else []


def _stripped(texts: list[str]) -> list[str]:
    """The texts of a column stripped, one pass of C; none at all when the column holds no
    white space anywhere (serials, emails, dates mostly), which one split finds out."""
    if len("".join(texts).split(None, 1)) <= 1:
        return texts
    return list(map(str.strip, texts))


def _table_columns(header: list[str], row: int) -> ColumnMap:
    columns = map_columns(header)
    if not columns.has(SERIAL):
        found = ", ".join(h.strip() for h in header if h.strip()) or "no column names"
        raise FileProblem(
            f"no serial column: name one {_accepted('serial')} (found {found})", row=row
        )
    if not (columns.has(PURCHASED) or columns.has(RENEWAL)):
        raise FileProblem(
            "no date column: every device needs a purchase date (a column named "
            f"{_accepted('purchase_date', 'or')}) or a renewal date "
            f"({_accepted('renewal_date', 'or')})",
            row=row,
        )
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
            'a field is far too long: most likely a quote (") that is never closed runs the '
            "rest of the file into one cell"
        )
    if "unexpected end of data" in text:
        return 'the file ends inside a quoted field: a quote (") is never closed'
    if "expected after" in text:
        return f"a quoted field has text after its closing quote ({text})"
    return f"this is not a CSV table: {text}"


class _JsonKeys:
    """The column map of each distinct set of keys the objects of a JSON file use."""

    def __init__(self) -> None:
        self.maps: dict[tuple[str, ...], tuple[list[str], ColumnMap]] = {}
        self.ignored_names: dict[str, None] = {}

    def row(self, number: int, obj: dict[str, Any]) -> _Row:
        """The row of one object, its fields found by the column map of its keys."""
        keys = tuple(obj)
        known = self.maps.get(keys)
        if known is None:
            columns = map_columns(keys)
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
                errors = _add(errors, number, columns.names[index], f"must be text, not {kind}")
        return number, obj, values, columns.names, errors

    def ignored(self) -> list[str]:
        return list(self.ignored_names)


class _JsonReader(_Reader):
    """A JSON array of objects, element by element: never the whole array in memory."""

    format = FORMAT_JSON

    def __init__(self, text: IO[str], lines: list[str]) -> None:
        super().__init__(text)
        self.buffer = "".join(lines)
        self.position = 0
        self.lines_before = 0  # line breaks in the text already dropped from the buffer
        self.eof = False
        self.keys = _JsonKeys()

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

    def rows(self) -> Iterator[_Row]:
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
        while True:
            try:
                value, end = decoder.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError as exc:
                if len(self.buffer) - self.position < MAX_JSON_ELEMENT_CHARS and self._fill():
                    continue  # the element goes on in the next piece of the file
                raise FileProblem(
                    f"not valid JSON at {self._where(exc.pos)}: {exc.msg}", row=element
                ) from None
            except RecursionError:
                raise FileProblem(_TOO_DEEP, row=element) from None
            if end >= len(self.buffer) and self._fill():
                continue  # a number or word may go on in the next piece
            if self.buffer.find("\\u", self.position, end) != -1:
                _check_escapes(value, element)
            self.position = end
            return value

    def ignored_columns(self) -> list[str]:
        return self.keys.ignored()


_TOO_DEEP = "not a row of named values: lists or objects nested too deeply"


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


class _JsonLinesReader(_Reader):
    """One JSON object a line; the line number is the row."""

    format = FORMAT_JSONL

    def __init__(self, text: IO[str], lines: list[str]) -> None:
        super().__init__(text)
        self.lines = lines
        self.keys = _JsonKeys()

    def rows(self) -> Iterator[_Row]:
        assert self.text is not None
        decoder = json.JSONDecoder(parse_int=str, parse_float=str)
        number = 0
        for line in itertools.chain(self.lines, self.text):
            number += 1
            stripped = line.strip().lstrip("\ufeff")
            if not stripped:
                continue
            try:
                value = decoder.decode(stripped)
            except json.JSONDecodeError as exc:
                raise FileProblem(
                    f"line {number} is not valid JSON (column {exc.colno}): {exc.msg}",
                    row=number,
                ) from None
            except RecursionError:
                raise FileProblem(_TOO_DEEP, row=number) from None
            if "\\u" in stripped:
                _check_escapes(value, number)
            if not isinstance(value, dict):
                raise FileProblem(
                    f"line {number} is not a JSON object (a row of named values)", row=number
                )
            yield self.keys.row(number, value)

    def ignored_columns(self) -> list[str]:
        return self.keys.ignored()


# ---- checking rows -------------------------------------------------------------------------


def serial_key(serial: str) -> str:
    """How serials compare: case folded as the store's NOCASE column folds it (ASCII only)."""
    if serial.isascii():
        return serial.upper()
    return "".join(char.upper() if char.isascii() else char for char in serial)


def _add(
    errors: list[RowError] | None, row: int, column: str | None, message: str
) -> list[RowError]:
    if errors is None:
        errors = []
    errors.append(RowError(row, column, message))
    return errors


def _control_message(value: str, pattern: re.Pattern[str]) -> str:
    found = pattern.search(value)
    code = f"U+{ord(found.group()):04X}" if found else "?"
    return f"holds a control character ({code}): {value!r}"


class _Checker:
    """Turns a row's texts into the values to store, or says what is wrong, by column."""

    def __init__(self, options: ImportOptions) -> None:
        self.order = options.date_order
        self.term_months = options.term_months
        self._iso: dict[str, str] = {"": ""}  # the dates of the file read so far, as ISO

    def check(self, row: _Row) -> list[Any]:
        """The row as a chunk holds it: its values stripped ("" where empty), dates as ISO and
        the renewal date worked out from the purchase date where the file has none; or its
        errors. Runs once a row: kept to plain string work and precompiled patterns."""
        number, original, texts, names, errors = row
        serial, model, category, email, user_name, distributor, purchased, renewal, notes = map(
            str.strip, texts
        )
        key = None
        if not serial:
            errors = _add(errors, number, names[SERIAL], "serial is empty")
        elif _SCIENTIFIC.fullmatch(serial):
            errors = _add(
                errors,
                number,
                names[SERIAL],
                f"{serial!r} is a number Excel wrote in scientific notation: the real serial "
                "is lost; format the column as text where it comes from and export it again",
            )
        else:
            key = serial.upper() if serial.isascii() else serial_key(serial)
        fields = (serial, model, category, email, user_name, distributor, purchased, renewal)
        # One search over the fields but the notes; only a hit looks for which one it was.
        if _CONTROL.search("".join(fields)):
            for index, value in enumerate(fields):
                if _CONTROL.search(value):
                    errors = _add(errors, number, names[index], _control_message(value, _CONTROL))
        if notes and _CONTROL_IN_NOTES.search(notes):
            message = _control_message(notes, _CONTROL_IN_NOTES)
            errors = _add(errors, number, names[NOTES], message)
        if email and not _EMAIL.fullmatch(email) and not _CONTROL.search(email):
            errors = _add(errors, number, names[EMAIL], f"{email!r} is not an email address")
        purchase_iso = renewal_iso = None
        if purchased:
            purchase_iso, problem = dates.read_date(purchased, self.order)
            if problem:
                errors = _add(errors, number, names[PURCHASED], problem)
        if renewal:
            renewal_iso, problem = dates.read_date(renewal, self.order)
            if problem:
                errors = _add(errors, number, names[RENEWAL], problem)
        if not (purchased or renewal):
            errors = _add(
                errors,
                number,
                names[PURCHASED] or names[RENEWAL],
                "no date: a purchase date or a renewal date is needed",
            )
        elif purchase_iso and renewal_iso and renewal_iso < purchase_iso:
            errors = _add(
                errors,
                number,
                names[RENEWAL],
                f"the renewal date {renewal_iso} is before the purchase date {purchase_iso}",
            )
        elif purchase_iso and not renewal:
            renewal_iso = dates.add_months(purchase_iso, self.term_months)
        if errors:
            return [number, key, None, errors, original, names, serial]
        if "\r" in notes:
            notes = notes.replace("\r\n", "\n").replace("\r", "\n")
        values = (
            serial,
            model,
            category,
            email,
            user_name,
            distributor,
            purchase_iso or "",
            renewal_iso or "",
            notes,
        )
        return [number, key, values, None, original, names, serial]

    def screen(self, batch: _Batch) -> tuple[list[str], list[Sequence[str]]] | None:
        """The keys and the values to store (by column) of a batch whose every row is valid,
        found with one pass of C over each column; None when any row might not be, and the
        rows must go through ``check`` one by one. Never more lenient than ``check``."""
        names = batch.names
        if names is None or batch.errors is not None:
            return None
        columns = batch.columns
        if not batch.stripped:
            columns = [
                list(map(str.strip, column)) if names[index] is not None else column
                for index, column in enumerate(columns)
            ]
        serials = columns[SERIAL]
        if not all(serials):
            return None
        imported = (columns[index] for index in range(NOTES) if names[index] is not None)
        all_text = "".join(itertools.chain.from_iterable(imported))
        # Printable text holds no control character; only other text needs the search.
        if not all_text.isprintable() and _CONTROL.search(all_text):
            return None
        notes = columns[NOTES]
        if names[NOTES] is not None:
            all_notes = "".join(notes)
            if not all_notes.isprintable() and _CONTROL_IN_NOTES.search(all_notes):
                return None
            if "\r" in all_notes:
                notes = [text.replace("\r\n", "\n").replace("\r", "\n") for text in notes]
        # No serial holds a line break (no control characters): one text, one line a serial.
        all_serials = "\n".join(serials)
        if _SCIENTIFIC_LINES.search(all_serials):
            return None
        if all_serials.isascii():
            keys = all_serials.upper().split("\n")
        else:
            keys = [serial_key(serial) for serial in serials]
        if names[EMAIL] is not None:
            emails = [email for email in columns[EMAIL] if email]
            if emails and not _EMAIL_LINES.fullmatch("\n".join(emails)):
                return None
        purchased = self._dates(columns[PURCHASED])
        renewal = self._dates(columns[RENEWAL])
        if purchased is None or renewal is None:
            return None
        if not all(renewal):
            pairs = zip(purchased, renewal, strict=True)
            if not all(purchased) and any(not (p or r) for p, r in pairs):
                return None  # a row without any date
            term = self.term_months
            ends = {p: dates.add_months(p, term) for p in set(purchased) if p}
            ends[""] = ""
            renewal = [r or ends[p] for p, r in zip(purchased, renewal, strict=True)]
        # ISO dates compare as text; a computed renewal date is never before its purchase.
        both = names[PURCHASED] is not None and names[RENEWAL] is not None
        # r < p for any r where p is "": never (every text is at least "").
        if both and any(map(operator.lt, renewal, purchased)):
            return None
        values = list(columns)
        values[PURCHASED], values[RENEWAL], values[NOTES] = purchased, renewal, notes
        return keys, values

    def _dates(self, texts: Sequence[str]) -> list[str] | None:
        """The ISO date of every text of a column ("" stays ""), or None if one is no date."""
        iso = self._iso
        for text in set(texts).difference(iso):
            found, _ = dates.read_date(text, self.order)
            if found is None:
                return None
            if len(iso) > 100_000:  # a file of ever-new dates: start again, memory stays flat
                iso.clear()
                iso[""] = ""
            iso[text] = found
        return list(map(iso.__getitem__, texts))


# ---- the import ----------------------------------------------------------------------------


class _RollBack(Exception):
    """Leave the store as it was: the file is invalid, or this is a dry run."""


class _NotUtf8(Exception):
    """The file taken on trust as UTF-8 is not: undo, and read it again."""


class _Repeats(Exception):
    """Rows written on trust into an empty store repeat a serial: undo, and read the file
    again looking for repeats row by row."""


class _Seen:
    """A set of device ids as one bit each: 125 KB for a store of a million devices."""

    def __init__(self) -> None:
        self.bits = bytearray()

    def add(self, ids: Iterable[int]) -> bool:
        """Add these ids; True when one of them was there already."""
        bits = self.bits
        again = False
        for device_id in ids:
            byte, mask = device_id >> 3, 1 << (device_id & 7)
            if byte >= len(bits):
                bits.extend(bytes(byte + 1 - len(bits) + 4096))
            if bits[byte] & mask:
                again = True
            bits[byte] |= mask
        return again


class _Import:
    def __init__(
        self,
        store: Store,
        source: Source,
        options: ImportOptions,
        *,
        now: str,
        actor: str,
        rejects: RejectsWriter | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.store = store
        self.source = source
        self.options = options
        self.now = now
        self.actor = actor
        self.rejects = rejects
        self.progress = progress
        self.report = ImportReport(
            source=source.name, dry_run=options.dry_run, skip_invalid=options.skip_invalid
        )
        self.checker = _Checker(options)
        self.reader: _Reader | None = None
        self.store_was_empty = False
        # This run's record in the store, made with the first device it creates.
        self.import_id: int | None = None
        # Whether serials were claimed by rejected rows or while not writing (import_keys).
        self.keys_claimed = False
        # Whether this run may write into an empty store without looking for repeated serials
        # (see run), and whether it still does; the indexes it dropped, to build at the end.
        self.trust_serials = False
        self.trusting = False
        self.deferred: list[tuple[str, str]] = []
        # The stored devices the file has named so far, when on trust.
        self.seen = _Seen()

    @property
    def writing(self) -> bool:
        """Whether rows still go to the store: not in a dry run, and not once one is invalid
        and all must be valid."""
        if self.options.dry_run:
            return False
        return not (self.report.rejected and not self.options.skip_invalid)

    def run(self, *, trust_utf8: bool, trust_serials: bool) -> None:
        """Read the file into the store (inside the caller's transaction).

        ``trust_utf8``: take a file that could be UTF-8 as UTF-8 without reading it through
        first; one that is not raises ``_NotUtf8`` on the way. ``trust_serials``: into an
        empty store, write the rows without looking for repeated serials, and let the serials'
        unique index, built once at the end, say whether there were any; if there were, it
        raises ``_Repeats``. Either way the caller undoes the transaction and runs again,
        trusting less."""
        self.trust_serials = trust_serials
        try:
            source = self.source
            encoding = detect_encoding(
                source.stream, source.name, self.options.encoding, scan=not trust_utf8
            )
            self._read(encoding)
        except OSError as exc:
            # The input failed under us (a disk error, a file on a share that went away).
            raise InputUnreadable(
                f"cannot read {self.source.name}: {exc.strerror or exc}; nothing was written"
            ) from None

    def start_over(self) -> None:
        """Forget a first reading of the file, whose writes were undone."""
        fresh = ImportReport(
            source=self.source.name,
            dry_run=self.options.dry_run,
            skip_invalid=self.options.skip_invalid,
        )
        for report_field in fields(ImportReport):
            setattr(self.report, report_field.name, getattr(fresh, report_field.name))
        self.import_id = None
        self.keys_claimed = False
        self.seen = _Seen()
        if self.rejects is not None:
            self.rejects.restart()

    def _read(self, encoding: Encoding) -> None:
        report = self.report
        report.encoding = encoding.label
        if encoding.warning:
            report.warnings.append(encoding.warning)
        finished = False
        try:
            self.reader = reader = open_reader(self.source, encoding)
            report.format = reader.format
            self.store_was_empty = not self.store.import_has_devices()
            self.store.import_begin()
            first_import = self.store_was_empty and not self.options.dry_run
            self.trusting = first_import and self.trust_serials
            self.deferred = []
            if first_import:
                self.deferred = self.store.import_defer_indexes(serials=self.trusting)
            for batch in reader.batches(CHUNK_ROWS):
                self._flush(batch)
            built = report.failed or self.store.import_restore_indexes(self.deferred)
            if not built:
                raise _Repeats  # rows written on trust repeat a serial
            self.store.import_end()
            finished = True
        except FileProblem as problem:
            report.file_error = RowError(problem.row, None, problem.message)
            finished = True
        except UnicodeDecodeError as exc:
            if encoding.tentative:
                raise _NotUtf8 from None
            report.file_error = RowError(
                None,
                None,
                f"the file cannot be read as {encoding.label} (byte "
                f"0x{exc.object[exc.start]:02x} is not valid in it); "
                "give its encoding with --encoding",
            )
            finished = True
        finally:
            if self.reader is not None and not finished:
                self.reader.close()
                self.reader = None
            if self.reader is not None:
                ignored = self.reader.ignored_columns()
                if ignored:
                    report.warnings.append(
                        "columns velory does not import were ignored: " + ", ".join(ignored)
                    )
                if self.rejects is not None and report.file_error is None:
                    self._start_rejects()
                    self.rejects.finish()
                self.reader.close()

    def _start_rejects(self) -> None:
        assert self.rejects is not None and self.reader is not None
        if not self.rejects.started:
            self.rejects.start(self.reader.format, self.reader.header, self.reader.delimiter)

    def _flush(self, batch: _Batch) -> None:
        """One chunk: checked, its serials placed (new, stored, or repeated from an earlier
        row), written, and its rejected rows reported in the file's order."""
        report = self.report
        report.rows += len(batch)
        check = self.checker.check
        entries: list[list[Any]] | None = None
        invalid: set[int] = set()
        clean = self.checker.screen(batch)
        if clean is None:
            # A rejected row still holds its serial: a later row with it is a repeat.
            entries = [check(batch.row(index)) for index in range(len(batch))]
            keyed: Sequence[int] = [i for i, entry in enumerate(entries) if entry[_KEY]]
            invalid = {p for p, index in enumerate(keyed) if entries[index][_ERRORS]}
            report.rejected += sum(1 for entry in entries if entry[_ERRORS])
            keys: list[str] = [entries[index][_KEY] for index in keyed]
            numbers: Sequence[int] = [entries[index][_NUMBER] for index in keyed]
            rows = (entries[index][_VALUES] or _NO_VALUES for index in keyed)
            columns: list[Sequence[str]] = [list(column) for column in zip(*rows, strict=True)]
        else:
            keys, columns = clean
            numbers = batch.numbers
            keyed = range(len(batch))
        repeats = self._place(numbers, keys, columns, invalid) if keyed else {}
        if repeats:
            if entries is None:
                entries = [check(batch.row(index)) for index in range(len(batch))]
            for position, first in repeats.items():
                entry = entries[keyed[position]]
                if not entry[_ERRORS]:
                    report.rejected += 1
                message = f"serial {entry[_SERIAL]!r} is already in row {first}"
                entry[_ERRORS] = _add(
                    entry[_ERRORS], entry[_NUMBER], entry[_NAMES][SERIAL], message
                )
                entry[_VALUES] = None
        if entries is not None:
            self._report_rejected(entries)
        if self.progress is not None:
            with suppress(OSError, ValueError):
                self.progress(self.source.stream.tell())

    def _report_rejected(self, entries: list[list[Any]]) -> None:
        rejected = [entry for entry in entries if entry[_ERRORS]]
        if not rejected:
            return
        for entry in rejected:
            self.report.errors.extend(entry[_ERRORS])
        if self.rejects is not None:
            self._start_rejects()
            self.rejects.add((entry[_ORIGINAL], entry[_ERRORS]) for entry in rejected)

    def _place(
        self,
        numbers: Sequence[int],
        keys: Sequence[str],
        columns: Sequence[Sequence[str]],
        invalid: set[int],
    ) -> dict[int, int]:
        """The chunk's rows that have a serial (``keys``: upper-cased; ``columns``: serial,
        model, category, user_email, user_name, distributor, purchase_date, renewal_date,
        notes, "" where empty): the valid ones inserted as new devices or compared with the
        stored ones and updated where the file changes them; those at ``invalid`` positions
        are rejected, and only hold their serial. Returns the rows (by position) whose serial
        an earlier row of the file had, with that row; they are neither inserted nor updated.

        A repeated serial is found without keeping the file in memory: within the chunk by a
        dict; a device this import created, by its record in the store; a stored device, by
        the claim of its id; a new serial not written (a dry run, an invalid file, a rejected
        row), by the claim of the serial."""
        store = self.store
        # Rows repeating a serial of an earlier chunk: position -> that row. Rows repeating
        # one of this chunk: position -> the position of its first row here (which may itself
        # repeat an earlier chunk's: the first row of all is named).
        repeats: dict[int, int] = {}
        inner: dict[int, int] = {}
        if len(set(keys)) != len(keys):
            first_here: dict[str, int] = {}
            for position, key in enumerate(keys):
                first = first_here.setdefault(key, position)
                if first != position:
                    inner[position] = first
        if self.trusting and (invalid or inner or not self.writing):
            self._stop_trusting()
        this_import = self.import_id if self.import_id is not None else -1
        if self.writing and self.store_was_empty:
            # Every device in the store is this import's own: a repeated serial is found by
            # the insert itself (the serials' unique index), without a lookup. Only rejected
            # rows, which are not inserted, are looked up.
            positions = sorted(invalid)
            found = [
                (positions[match[0]], *match[1:])
                for match in store.import_lookup([keys[p] for p in positions])
            ]
        else:
            found = store.import_lookup(keys)
        stored: list[tuple[Any, ...]] = []
        for match in found:
            position = match[0]
            if position in inner:
                continue
            if match[3] == this_import:
                repeats[position] = match[4]  # a device an earlier row of this file created
            else:
                stored.append(match)
        if stored and self.trust_serials:
            # On trust, a stored device is only marked as named; named twice, the file is read
            # again claiming each with its row, to name the first in the error.
            if self.seen.add(map(_ID, stored)):
                raise _Repeats
        elif stored:
            earlier = store.import_claim_devices(
                [(match[1], numbers[match[0]]) for match in stored], numbers[0]
            )
            if earlier:
                for match in stored:
                    if match[1] in earlier:
                        repeats[match[0]] = earlier[match[1]]
                stored = [match for match in stored if match[0] not in repeats]
        if not (found or inner):
            self._insert(numbers, keys, columns, list(range(len(keys))), invalid, repeats)
        else:
            taken = {match[0] for match in found}.union(inner)
            if len(taken) < len(keys):
                new = [position for position in range(len(keys)) if position not in taken]
                self._insert(numbers, keys, columns, new, invalid, repeats)
        if stored:
            self._update(columns, [match for match in stored if match[0] not in invalid])
        for position, first in inner.items():
            repeats[position] = repeats.get(first, numbers[first])
        return repeats

    def _stop_trusting(self) -> None:
        """A rejected row: its serial must be held from now on, which takes the serials'
        unique index. Built now over the rows written so far; if they repeat a serial, the
        import starts again without trust."""
        serials = [index for index in self.deferred if index[0] == SERIALS_INDEX]
        if not self.store.import_restore_indexes(serials):
            raise _Repeats
        self.deferred = [index for index in self.deferred if index[0] != SERIALS_INDEX]
        self.trusting = False

    def _insert(
        self,
        numbers: Sequence[int],
        keys: Sequence[str],
        columns: Sequence[Sequence[str]],
        new: list[int],
        invalid: set[int],
        repeats: dict[int, int],
    ) -> None:
        """The rows at positions ``new`` have serials the store does not hold: the valid ones
        inserted (or, not writing, claimed), the invalid ones claimed; a repeat found on the
        way is added to ``repeats``."""
        store = self.store
        writing = self.writing
        if not writing or self.keys_claimed:
            claims = new  # not written, or an earlier rejected row may hold one of them
        else:
            claims = [p for p in new if p in invalid] if invalid else []
        if claims:
            earlier = store.import_claim_keys([(keys[p], numbers[p]) for p in claims], numbers[0])
            self.keys_claimed = True
            for position in claims:
                first = earlier.get(keys[position])
                if first is not None:
                    repeats[position] = first
        if invalid or repeats:
            new = [p for p in new if p not in invalid and p not in repeats]
        if not writing:
            self.report.inserted += len(new)
            return
        if not new:
            return
        if self.import_id is None:
            self.import_id = store.import_record(
                at=self.now, actor=self.actor, file=self.source.name
            )
        if len(new) == len(keys):
            picked: Sequence[Sequence[Any]] = [numbers, *columns]
        else:
            pick = operator.itemgetter(*new) if len(new) > 1 else lambda seq: (seq[new[0]],)
            picked = [pick(numbers), *map(pick, columns)]
        inserted = store.import_insert(
            zip(*picked, strict=True),
            import_id=self.import_id,
            source=SOURCE_IMPORTED,
            status=ACTIVE,
            at=self.now,
            empty=[not all(column) for column in picked[2:]],
        )
        if inserted < len(new):
            # Serials an earlier chunk of this file created (see _place): not inserted again.
            new_keys = [keys[p] for p in new]
            for index, first in store.import_rows_of(new_keys, self.import_id, numbers[0]).items():
                repeats[new[index]] = first
        self.report.inserted += inserted

    def _update(self, columns: Sequence[Sequence[str]], stored: list[tuple[Any, ...]]) -> None:
        """Compare the stored devices of the chunk with the file's rows: the changed ones
        updated (an empty cell never clears a value), each change in the history."""
        report = self.report
        now, actor = self.now, self.actor
        # Each match's row of the file (its fields but the serial) and its stored values, and
        # which are the same, each found with one pass of C: a re-import of an unchanged
        # fleet goes no further.
        positions = list(map(_POSITION, stored))
        picked = (map(column.__getitem__, positions) for column in columns[1:])
        rows = list(zip(*picked, strict=True))
        same = list(map(operator.eq, rows, map(_STORED_VALUES, stored)))
        if REMOVED in set(map(_STATUS, stored)):
            candidates: Iterable[int] = range(len(stored))
        else:
            report.unchanged += same.count(True)
            candidates = itertools.compress(range(len(stored)), map(operator.not_, same))
        updates: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        for index in candidates:
            match = stored[index]
            device_id, status = match[1], match[2]
            if status == REMOVED:
                report.skipped += 1
                continue
            if same[index]:
                report.unchanged += 1
                continue
            row = rows[index]
            merged = list(match[5:])
            changes: dict[str, dict[str, Any]] = {}
            for index, column in enumerate(STORED_FIELDS):
                value = row[index]
                if value and value != merged[index]:  # an empty cell never clears a value
                    changes[column] = {"old": merged[index] or None, "new": value}
                    merged[index] = value
            if not changes:
                report.unchanged += 1
                continue
            updates.append((*merged, now, device_id))
            details = json.dumps(changes, ensure_ascii=False)
            history.append((device_id, now, actor, IMPORT_ACTION, status, status, details))
        report.updated += len(updates)
        if updates and self.writing:
            self.store.import_update(updates, history)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while the rows stream through. Each row makes lists and
    tuples that their reference counts free at once, but the collector counts them, and every
    so often walks every object the program holds (Typer's, Rich's...): ~5% of a large
    import, for nothing. The import makes no reference cycles a row; what the collector would
    have found waits for it to run again."""
    import gc

    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def import_file(
    store: Store,
    source: Source,
    options: ImportOptions,
    *,
    now: str,
    actor: str,
    rejects: RejectsWriter | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``source`` into ``store`` in one transaction. When a row is invalid (and
    ``skip_invalid`` is off), the file is no table, or this is a dry run, the store is left as
    it was. The report says what was written (or would be) and every problem by row."""
    job = _Import(store, source, options, now=now, actor=actor, rejects=rejects, progress=progress)
    report = job.report
    # Most files are UTF-8, and hold each serial once: an import takes both on trust, and
    # finds out on the way (a byte that is not UTF-8; the serials' unique index, built at the
    # end of a first import). A file that breaks the trust is undone and read again.
    trust_utf8 = trust_serials = True
    while True:
        try:
            with store.import_transaction(write=not options.dry_run), _no_cycle_collection():
                job.run(trust_utf8=trust_utf8, trust_serials=trust_serials)
                if report.failed or options.dry_run:
                    raise _RollBack
        except _NotUtf8:
            trust_utf8 = False
        except _Repeats:
            trust_serials = False
        except _RollBack:
            break
        else:
            report.written = report.inserted + report.updated > 0
            break
        job.start_over()
    if report.failed:
        # Nothing was written, and nothing would be: the counts say so.
        report.inserted = report.updated = report.unchanged = report.skipped = 0
    return report


# ---- the rejects file ----------------------------------------------------------------------


class RejectsWriter:
    """The rejected rows as the file had them, plus a ``reason`` column, in UTF-8.

    CSV rejects keep the file's header and separator and start with a byte-order mark, so Excel
    opens them as UTF-8 (velory reads them back either way); JSON rejects are the objects with
    a ``reason`` key, in an array or one a line, as the file was.
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.started = False
        # Set when the file turned out not to be a table: no rejects file is left behind.
        self.discard = False
        self.count = 0
        self.format = FORMAT_CSV
        self.width = 0
        self._csv: Any = None

    def start(self, kind: str, header: Sequence[str] | None, delimiter: str) -> None:
        with self._writing():
            self._start(kind, header, delimiter)

    def _start(self, kind: str, header: Sequence[str] | None, delimiter: str) -> None:
        self.started = True
        self.format = kind
        if kind == FORMAT_CSV:
            self.out.write("\ufeff")
            self._csv = csv.writer(self.out, delimiter=delimiter, lineterminator="\r\n")
            columns = list(header or [])
            self.width = len(columns)
            self._csv.writerow([*columns, "reason"])
        elif kind == FORMAT_JSON:
            self.out.write("[")

    def add(self, rows: Iterable[tuple[Any, list[RowError]]]) -> None:
        """Rejected rows as (what the file holds there, its errors)."""
        with self._writing():
            self._add(rows)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise OutputUnwritable(
                f"cannot write the rejects file: {exc.strerror or exc}; nothing was imported"
            ) from None

    def _add(self, rows: Iterable[tuple[Any, list[RowError]]]) -> None:
        for original, errors in rows:
            reason = "; ".join(
                f"row {e.row}, {e.column}: {e.message}" if e.column else f"row {e.row}: {e.message}"
                for e in errors
            )
            if self.format == FORMAT_CSV:
                cells = list(original)
                width = self.width
                padded = cells[:width] + [""] * (width - len(cells))
                self._csv.writerow([*padded, reason, *cells[width:]])
            else:
                text = json.dumps({**original, "reason": reason}, ensure_ascii=False)
                if self.format == FORMAT_JSON:
                    self.out.write(",\n  " if self.count else "\n  ")
                self.out.write(text)
                if self.format == FORMAT_JSONL:
                    self.out.write("\n")
            self.count += 1

    def restart(self) -> None:
        """Forget every row written so far: the file is read again from its start."""
        with self._writing():
            self.out.seek(0)
            self.out.truncate()
        self.started = False
        self.count = 0
        self.format = FORMAT_CSV
        self.width = 0
        self._csv = None

    def finish(self) -> None:
        if self.format == FORMAT_JSON:
            with self._writing():
                self.out.write("\n]\n" if self.count else "]\n")


__all__ = [
    "ALIASES",
    "FIELDS",
    "ImportOptions",
    "ImportReport",
    "RejectsWriter",
    "RowError",
    "Source",
    "check_encoding",
    "detect_encoding",
    "import_file",
    "map_columns",
    "normalise_header",
    "open_source",
]
