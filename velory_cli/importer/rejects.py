"""The rejects file: the rows an import rejected, as the file had them, each with its reason."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, NamedTuple

from velory_cli.errors import OutputUnwritable
from velory_cli.importer.report import RowError
from velory_cli.importer.sources import (
    FORMAT_CSV,
    FORMAT_JSON,
    FORMAT_JSONL,
    FORMAT_SNIPE_IT,
    FORMAT_WORKBOOK,
)
from velory_cli.importer.workbooks import cell_text


class Rejected(NamedTuple):
    """A rejected row: what the file holds there (CSV cells, a JSON object), and its errors."""

    original: Any
    errors: list[RowError]


def reason_of(errors: Iterable[RowError]) -> str:
    """A rejected row's errors as its ``reason`` cell."""
    return "; ".join(
        f"row {e.row}, {e.column}: {e.message}" if e.column else f"row {e.row}: {e.message}"
        for e in errors
    )


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
        self.workbook = False
        self._csv: Any = None

    def start(self, kind: str, header: Sequence[str] | None, delimiter: str) -> None:
        """Begin the file in the format of the file imported (``kind``, one of sources'
        FORMAT_*): for CSV, its header and separator."""
        with self._writing():
            self._start(kind, header, delimiter)

    def _start(self, kind: str, header: Sequence[str] | None, delimiter: str) -> None:
        self.started = True
        self.workbook = kind == FORMAT_WORKBOOK  # its cells are typed: written as their text
        # A workbook's rows are a table, a Snipe-IT answer's assets objects of their own.
        kind = {FORMAT_WORKBOOK: FORMAT_CSV, FORMAT_SNIPE_IT: FORMAT_JSONL}.get(kind, kind)
        self.format = kind
        if kind == FORMAT_CSV:
            self.out.write("\ufeff")
            self._csv = csv.writer(self.out, delimiter=delimiter, lineterminator="\r\n")
            columns = list(header or [])
            self.width = len(columns)
            self._csv.writerow([*columns, "reason"])
        elif kind == FORMAT_JSON:
            self.out.write("[")

    def add(self, rows: Iterable[Rejected]) -> None:
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

    def _add(self, rows: Iterable[Rejected]) -> None:
        for original, errors in rows:
            reason = reason_of(errors)
            if self.format == FORMAT_CSV:
                cells = [cell_text(cell) for cell in original] if self.workbook else list(original)
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


class WorkbookRejectsWriter(RejectsWriter):
    """The rejected rows as an ``.xlsx`` workbook: the file's columns and a ``reason`` column,
    a workbook's cells keeping their type (a date stays a date), every text a string cell.

    The rows are spooled to a temporary file, which a second reading of the file (see
    ``restart``) empties again, and written out as a workbook by ``finish``; memory stays flat.
    """

    def __init__(self, path: str) -> None:
        import tempfile

        spool = tempfile.TemporaryFile(prefix="velory-rejects-")  # noqa: SIM115 (closed by close)
        super().__init__(spool)  # type: ignore[arg-type]
        self.path = path
        self.header: list[str] = []
        self.keys: dict[str, None] = {}

    def _start(self, kind: str, header: Sequence[str] | None, delimiter: str) -> None:
        self.started = True
        self.format = kind
        self.header = list(header or [])

    def _add(self, rows: Iterable[Rejected]) -> None:
        import pickle

        for original, errors in rows:
            if isinstance(original, dict):
                for key in original:
                    if len(self.keys) < 10_000:
                        self.keys.setdefault(key, None)
            pickle.dump((original, reason_of(errors)), self.out)  # type: ignore[arg-type]
            self.count += 1

    def restart(self) -> None:
        with self._writing():
            self.out.seek(0)
            self.out.truncate()
        self.started = False
        self.count = 0
        self.keys = {}

    def finish(self) -> None:
        import pickle

        from velory_cli.outputs import WorkbookWriter

        with self._writing():
            keys = list(self.keys)
            header = keys if keys else self.header
            writer = WorkbookWriter(self.path, [*header, "reason"], sheet="Rejected rows")
            self.out.seek(0)
            for _ in range(self.count):
                original, reason = pickle.load(self.out)  # type: ignore[arg-type]
                if isinstance(original, dict):
                    cells = [_json_cell(original.get(key)) for key in keys]
                else:
                    cells = list(original)
                    cells = cells[: len(header)] + [""] * (len(header) - len(cells))
                writer.add([*cells, reason])
            writer.close()

    def close(self) -> None:
        self.out.close()


def _json_cell(value: Any) -> Any:
    """A JSON value as a cell: text and numbers as they are, anything else as its JSON."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False)
