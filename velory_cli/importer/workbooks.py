"""Workbooks: ``.xlsx``, ``.xlsm``, ``.xls`` and ``.ods`` read as they are, through python-calamine.

A workbook knows what a CSV file has lost: which cells are dates, which are numbers. A date cell
is its date, whatever the admin's locale; a number in the serial column is its digits when it is
a whole number Excel can hold exactly, and a lost serial when it is not (16 digits or more, of
which Excel keeps 15, or a fraction). A cell holding an error (``#N/A``, ``#REF!``) in a column
velory imports rejects its row. The header is the sheet's first row that is not empty, and a
row's number is the one the sheet shows.

python-calamine is imported only when a workbook is read: start-up does not pay for it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from velory_cli.importer.columns import PURCHASED, RENEWAL, SERIAL, ColumnMap
from velory_cli.importer.readers import Batch, FileProblem, table_columns
from velory_cli.importer.report import RowError, add_error
from velory_cli.importer.sources import FORMAT_WORKBOOK, Source

if TYPE_CHECKING:
    import threading

WORKBOOK_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"})
_ZIP_MAGIC = b"PK\x03\x04"
# Excel 97-2003 files, and workbooks encrypted with a password (which Excel keeps in the same
# compound-file container), start with this.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED = "EncryptionInfo".encode("utf-16-le")

# The values Excel and LibreOffice show for a formula that failed.
CELL_ERRORS = frozenset(
    {
        "#N/A",
        "#REF!",
        "#VALUE!",
        "#DIV/0!",
        "#NAME?",
        "#NUM!",
        "#NULL!",
        "#SPILL!",
        "#CALC!",
        "#GETTING_DATA",
        "#FIELD!",
        "#BLOCKED!",
        "#BUSY!",
        "#CONNECT!",
        "#UNKNOWN!",
        "Err:502",
        "Err:504",
        "Err:508",
        "Err:511",
        "Err:522",
    }
)

# Excel keeps 15 significant digits: a whole number from 10**15 up may have been rounded.
_EXACT_LIMIT = 10**15
_CELL_REF = re.compile(r"([A-Z]+)(\d+)")


def is_workbook(source: Source) -> bool:
    """By the file's extension, else by its first bytes (a workbook piped in on stdin)."""
    if source.suffix in WORKBOOK_SUFFIXES:
        return True
    source.stream.seek(0)
    head = source.stream.read(8)
    source.stream.seek(0)
    return head.startswith(_ZIP_MAGIC) or head == _OLE_MAGIC


def cell_text(value: Any) -> str:
    """A cell as text: a date as ISO, a whole number as its digits, anything else as shown."""
    if type(value) is str:
        return value
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


class WorkbookReader:
    """One sheet of a workbook, a batch at a time by column, like a CSV file."""

    format = FORMAT_WORKBOOK
    delimiter = ","

    def __init__(self, source: Source, sheet: str | None, overrides: Mapping[int, str]) -> None:
        self.source = source
        self.overrides = overrides
        self._header: list[str] | None = None
        self.columns: ColumnMap | None = None
        self._book: Any = None
        self._sheet: Any = None
        self._sheet_name = ""
        self._row = 0
        self._looking: threading.Thread | None = None
        self._errors_found: dict[int, dict[int, str]] = {}
        self._text_errors = True
        self._open(sheet)

    @property
    def header(self) -> list[str] | None:
        return self._header

    def _open(self, sheet: str | None) -> None:
        import python_calamine

        stream = self.source.stream
        stream.seek(0)
        head = stream.read(64 * 1024)
        stream.seek(0)
        if head.startswith(_OLE_MAGIC) and _ENCRYPTED in head:
            raise FileProblem(
                "the workbook is protected with a password: save a copy without one and "
                "import that",
                row=None,
            )
        if not (head.startswith(_ZIP_MAGIC) or head.startswith(_OLE_MAGIC)):
            raise FileProblem(_not_a_workbook("it is neither a zip nor an Excel 97 file"))
        try:
            self._book = python_calamine.CalamineWorkbook.from_filelike(stream)
            names = list(self._book.sheet_names)
            if sheet is None:
                chosen = _first_worksheet(self._book, names)
            elif sheet in names:
                chosen = sheet
            else:
                folded = {name.casefold(): name for name in names}
                if sheet.casefold() not in folded:
                    listed = ", ".join(f'"{name}"' for name in names) or "none"
                    raise FileProblem(f'no sheet named "{sheet}" (its sheets: {listed})')
                chosen = folded[sheet.casefold()]
            self._sheet_name = chosen
            # The file's bytes are in calamine's memory now: the stream is free to read again.
            self._look_for_error_cells(chosen)
            self._sheet = self._book.get_sheet_by_name(chosen)
        except FileProblem:
            raise
        except python_calamine.PasswordError:
            raise FileProblem(
                "the workbook is protected with a password: save a copy without one and import that"
            ) from None
        except Exception as exc:  # calamine's errors are many kinds of one thing: unreadable
            raise FileProblem(
                _not_a_workbook(str(exc).splitlines()[0] if str(exc) else "")
            ) from None

    def batches(self, size: int) -> Iterator[Batch]:
        sheet = self._sheet
        if sheet is None or sheet.start is None:
            return  # an empty sheet: no rows, which is no error
        start_column = sheet.start[1]
        errors_at = self._error_cells()
        if start_column:
            errors_at = {
                row: {column - start_column: shown for column, shown in cells.items()}
                for row, cells in errors_at.items()
            }
        rows = sheet.iter_rows()
        number = 0
        for cells in rows:
            number += 1
            if not _blank(cells):
                self._header = [cell_text(cell).strip() for cell in cells]
                self.columns = table_columns(self._header, number, self.overrides)
                break
        if self.columns is None:
            return
        positions, names = self.columns.positions, self.columns.names
        used = [(index, p) for index, p in enumerate(positions) if p is not None]
        empty = [""]
        width = sheet.width
        count_empty = operator.methodcaller("count", "")
        while True:
            chunk: list[list[Any]] = list(itertools.islice(rows, size))
            if not chunk:
                return
            numbers: Sequence[int] = range(number + 1, number + 1 + len(chunk))
            number += len(chunk)
            self._row = number
            # A row with most cells filled is no blank row: most chunks are known by one count
            # a row, in C; only rows with a few cells filled are looked at cell by cell.
            if max(map(count_empty, chunk)) >= width - 2:
                kept = [(n, cells) for n, cells in zip(numbers, chunk, strict=True)]
                kept = [(n, cells) for n, cells in kept if not _blank(cells)]
                if not kept:
                    continue
                numbers = [n for n, _ in kept]
                chunk = [cells for _, cells in kept]
            columns: list[Sequence[str]] = [empty * len(chunk)] * len(positions)
            row_errors: list[list[RowError] | None] = [None] * len(chunk)
            for index, position in used:
                values = list(map(operator.itemgetter(position), chunk))
                # Most columns hold one type of cell throughout: converted in one pass of C.
                kinds = set(map(type, values))
                if kinds == _TEXT:
                    texts = list(map(str.strip, values))
                    if not self._text_errors or CELL_ERRORS.isdisjoint(texts):
                        columns[index] = texts
                        continue
                elif kinds == _DATE and index in (PURCHASED, RENEWAL):
                    columns[index] = list(map(dt.date.isoformat, values))
                    continue
                texts = []
                for offset, value in enumerate(values):
                    text, problem = _field_text(value, index)
                    if problem is None and self._text_errors and text in CELL_ERRORS:
                        problem = _error_message(text)
                    if problem is not None:
                        row_errors[offset] = add_error(
                            row_errors[offset], numbers[offset], names[index], problem
                        )
                    texts.append(text)
                columns[index] = texts
            if errors_at:
                for offset, row_number in enumerate(numbers):
                    found = errors_at.get(row_number)
                    if not found:
                        continue
                    for index, position in used:
                        if position in found:
                            row_errors[offset] = add_error(
                                row_errors[offset],
                                row_number,
                                names[index],
                                _error_message(found[position]),
                            )
            yield Batch(
                numbers,
                chunk,  # the cells as typed: a rejects workbook keeps a date a date
                columns,
                names,
                errors=row_errors if any(row_errors) else None,
                stripped=True,
            )

    def _look_for_error_cells(self, sheet_name: str) -> None:
        """Start looking for the cells of the sheet that hold an error, beside the parse of
        the sheet (which lets go of the GIL, as inflating does): python-calamine reads them as
        empty cells; an xlsx file says so in its XML, looked at only when the error mark is
        there at all."""
        import threading

        found: dict[int, dict[int, str]] = {}

        def look() -> None:
            # Where the zip cannot be read this way, calamine reads the sheet or says why not.
            with suppress(
                zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError, ValueError
            ):
                found.update(_xlsx_error_cells(self.source, sheet_name))
                # An xlsx file marks its error cells; only other workbooks (LibreOffice's)
                # hand them over as their text, which each text cell is then compared with.
                self._text_errors = False

        self._errors_found = found
        self._looking = threading.Thread(target=look, name="velory-error-cells", daemon=True)
        self._looking.start()

    def _error_cells(self) -> dict[int, dict[int, str]]:
        """The error cells by row number and column from A (0)."""
        if self._looking is None:
            return {}
        self._looking.join()
        return self._errors_found

    def ignored_columns(self) -> list[str]:
        return list(self.columns.ignored) if self.columns else []

    def position(self) -> int:
        """How far the import is, in bytes of the file as a progress bar counts them: the
        whole sheet is parsed up front, so the rows read tell."""
        height = self._sheet.height if self._sheet is not None else 0
        size = self.source.size or 0
        return min(size, size * self._row // height) if height else size

    def close(self) -> None:
        if self._looking is not None:
            self._looking.join()  # it reads the file, which the caller closes next
            self._looking = None
        if self._book is not None:
            with suppress(Exception):  # already closed: nothing to let go of
                self._book.close()
            self._book = None
            self._sheet = None


_TEXT = {str}
_DATE = {dt.date}


def _blank(cells: list[Any]) -> bool:
    """Whether a row is blank: no cell but empty ones or white space. A row with a few cells
    filled is looked at cell by cell; most rows are known by one count, in C."""
    empty = cells.count("")
    if empty == len(cells):
        return True
    if empty < len(cells) - 2:
        return False
    return not any(cell.strip() if type(cell) is str else True for cell in cells)


def _first_worksheet(book: Any, names: list[str]) -> str:
    """The first sheet that holds cells (not a chart sheet)."""
    import python_calamine

    for meta in book.sheets_metadata:
        if meta.typ == python_calamine.SheetTypeEnum.WorkSheet:
            return str(meta.name)
    if not names:
        raise FileProblem("the workbook has no sheets")
    return names[0]


def _not_a_workbook(detail: str) -> str:
    reason = f" ({detail})" if detail else ""
    return f"this is not a workbook velory can read{reason}"


def _error_message(shown: str) -> str:
    return f"the cell holds the error {shown}: fix the formula, or paste the values"


def _field_text(value: Any, field_index: int) -> tuple[str, str | None]:
    """The text of one cell for a field, or why the cell cannot be imported."""
    if type(value) is str:
        return value.strip(), None
    if isinstance(value, float | int) and not isinstance(value, bool):
        if field_index == SERIAL:
            return _serial_number(value)
        if field_index in (PURCHASED, RENEWAL) and not float(value).is_integer():
            return cell_text(value), None
    if field_index in (PURCHASED, RENEWAL) and isinstance(value, dt.datetime):
        return value.date().isoformat(), None
    return cell_text(value), None


def _serial_number(value: float) -> tuple[str, str | None]:
    shown = cell_text(value)
    if not float(value).is_integer():
        return shown, (
            f"{shown} is a number with a fraction, not a serial: the real serial is lost; "
            "format the column as text and type the serial again"
        )
    if abs(value) >= _EXACT_LIMIT:
        return shown, (
            f"{shown} is a number of 16 digits or more, which Excel rounds to 15: the real "
            "serial is lost; format the column as text and type the serial again"
        )
    return shown, None


def _xlsx_error_cells(source: Source, sheet_name: str) -> dict[int, dict[int, str]]:
    stream = source.stream
    stream.seek(0)
    if stream.read(4) != _ZIP_MAGIC:
        raise ValueError("not an xlsx file")
    stream.seek(0)
    with zipfile.ZipFile(stream) as archive:
        member = _sheet_member(archive, sheet_name)
        if member is None or not _marked(archive, member, stream):
            return {}
        found: dict[int, dict[int, str]] = {}
        with archive.open(member) as xml:
            for _, element in ElementTree.iterparse(xml):
                if element.tag.endswith("}c") or element.tag == "c":
                    if element.get("t") == "e":
                        match = _CELL_REF.fullmatch(element.get("r") or "")
                        if match:
                            shown = "".join(
                                child.text or "" for child in element if child.tag.endswith("v")
                            )
                            column = _column_index(match[1])
                            found.setdefault(int(match[2]), {})[column] = shown or "#N/A"
                    element.clear()
                elif element.tag.endswith("}row"):
                    element.clear()
        return found


_ERROR_MARK = b't="e"'


def _marked(archive: zipfile.ZipFile, member: str, stream: Any) -> bool:
    """Whether the sheet's XML holds the mark of an error cell at all: its deflated bytes
    inflated straight from the file (what zipfile does, without checking each byte's CRC,
    which the parse of the sheet has done already)."""
    info = archive.getinfo(member)
    stream.seek(info.header_offset)
    local = stream.read(30)
    if len(local) < 30 or local[:4] != _ZIP_MAGIC:
        return True  # let zipfile read it, and say what is wrong
    stream.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little"))
    stream.seek(int.from_bytes(local[28:30], "little"), 1)
    if info.compress_type == zipfile.ZIP_STORED:
        inflate: Any = None
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        inflate = zlib.decompressobj(-15)
    else:
        return True
    left, tail = info.compress_size, b""
    while left > 0:
        piece = stream.read(min(left, 1024 * 1024))
        if not piece:
            break
        left -= len(piece)
        text = inflate.decompress(piece) if inflate is not None else piece
        if _ERROR_MARK in tail + text[:8] or _ERROR_MARK in text:
            return True
        tail = text[-8:]
    return False


def _sheet_member(archive: zipfile.ZipFile, sheet_name: str) -> str | None:
    """The zip member that holds the named sheet of an xlsx workbook."""
    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    rel_ns = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
    book = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    target_id = None
    for sheet in book.iter(f"{main}sheet"):
        if sheet.get("name") == sheet_name:
            target_id = sheet.get(f"{rel_ns}id")
    if target_id is None:
        return None
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    for rel in rels:
        if rel.get("Id") == target_id:
            target = rel.get("Target") or ""
            return target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    return None


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1
