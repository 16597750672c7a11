"""Output files written whole or not at all: a temporary file beside the target, then a rename.

Only ever regular files, and private ones. A rename puts a new file in the target's place
whatever the target was, so one that is not a regular file is refused before anything is
written, ``--force`` or not: ``--output /dev/null --force`` would otherwise replace the device
node with a file of names and emails, and a named pipe or a socket some other program listens
on would silently stop being one. Everything velory writes from the store names people, so
every output file is readable by its owner only, whatever the umask. The workbooks velory
writes are made here too (``WorkbookWriter``).
"""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from velory_cli.errors import OutputUnwritable

# The mode of every file velory writes that holds personal data.
PRIVATE_FILE = 0o600


@contextmanager
def atomic_output(path: Path, *, force: bool = False, newline: str = "") -> Iterator[IO[str]]:
    """Write ``path`` (UTF-8) through a temporary file; an existing file needs ``force``."""
    with (
        atomic_path(path, force=force) as temp_name,
        open(temp_name, "w", encoding="utf-8", newline=newline) as handle,
    ):
        yield handle


@contextmanager
def atomic_path(path: Path, *, force: bool = False) -> Iterator[str]:
    """The name of a private temporary file beside ``path`` for a writer that opens it itself
    (a workbook); once the block ends it becomes ``path``. An existing file needs ``force``."""
    path = Path(path)
    check_target(path, force=force)
    temp_name = private_temp_file(path)
    try:
        yield temp_name
        os.replace(temp_name, path)
    except OSError as exc:
        discard(temp_name)
        raise OutputUnwritable(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        discard(temp_name)
        raise


def check_target(path: Path, *, force: bool, store_allowed: bool = False) -> None:
    """Refuse to write ``path`` when it exists and is not a regular file (whatever ``force``
    says), when it exists and ``force`` is not given, and when it is a velory store (unless
    ``store_allowed``: a backup replaces an older backup)."""
    if not is_existing_file(path):
        return
    if not force:
        raise OutputUnwritable(f"{path} already exists; use --force to overwrite it")
    if not store_allowed and is_velory_store(path):
        raise OutputUnwritable(
            f"{path} is a velory store; velory never writes over one, not even with --force"
        )


def is_existing_file(path: Path) -> bool:
    """True when a regular file is at ``path``, False when nothing is (a dangling link
    included); OutputUnwritable for a folder, a device, a named pipe or a socket, also behind a
    link (``ln -s /dev/null out.csv``)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputUnwritable(f"cannot write {path}: {exc.strerror}") from None
    if stat.S_ISREG(mode):
        return True
    if stat.S_ISDIR(mode):
        raise OutputUnwritable(f"{path} is a folder; name the file to write")
    raise OutputUnwritable(
        f"{path} is {_kind(mode)}, not a regular file; velory writes only regular files, "
        "not even with --force"
    )


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def private_temp_file(path: Path) -> str:
    """A new, empty temporary file beside ``path``, readable by its owner only (mkstemp makes
    it so; said again here, since the file is renamed into place as it is)."""
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    except OSError as exc:
        raise OutputUnwritable(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return temp_name


def is_velory_store(path: Path) -> bool:
    """True for a file that starts as a velory store does (SQLite, application_id "VELY"):
    an export or a rejects file given the store's name by mistake must not replace it."""
    from velory_cli.store import APPLICATION_ID, SQLITE_HEADER

    try:
        with open(path, "rb") as handle:
            head = handle.read(72)
    except OSError:
        return False
    return head.startswith(SQLITE_HEADER) and head[68:72] == APPLICATION_ID.to_bytes(4, "big")


def discard(name: str) -> None:
    """Remove a temporary file that will not be used, if it is still there."""
    with suppress(OSError):
        os.unlink(name)


def is_workbook_path(path: Path) -> bool:
    """Whether an output file is to be a workbook, by its extension."""
    return Path(path).suffix.lower() in (".xlsx", ".xlsm")


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class WorkbookWriter:
    """An ``.xlsx`` file of one sheet, written a row at a time in constant memory (XlsxWriter).

    The header row is frozen and filtered. Every text is a string cell, so nothing in the data
    ever becomes a formula (``=HYPERLINK(...)`` stays text); the ``date_columns`` hold date
    cells with a date format, other dates, numbers and truth values keep their type.
    """

    def __init__(
        self,
        path: str,
        header: Sequence[str],
        *,
        sheet: str = "Devices",
        date_columns: Iterable[int] = (),
    ) -> None:
        import xlsxwriter

        self.book = xlsxwriter.Workbook(
            path,
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
            },
        )
        self.sheet = self.book.add_worksheet(sheet)
        self.date_format = self.book.add_format({"num_format": "yyyy-mm-dd"})
        self.time_format = self.book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        bold = self.book.add_format({"bold": True})
        self.width = len(header)
        self.date_columns = frozenset(date_columns)
        for column, name in enumerate(header):
            self.sheet.set_column(column, column, max(10, min(40, len(name) + 4)))
            self.sheet.write_string(0, column, name, bold)
        self.sheet.freeze_panes(1, 0)
        self.rows = 1

    def add(self, values: Sequence[Any]) -> None:
        sheet, row = self.sheet, self.rows
        for column, value in enumerate(values):
            if value is None or value == "":
                continue
            if isinstance(value, str):
                if column in self.date_columns and _ISO_DATE.fullmatch(value):
                    try:
                        day = date.fromisoformat(value)
                    except ValueError:
                        sheet.write_string(row, column, value)
                    else:
                        sheet.write_datetime(row, column, day, self.date_format)
                else:
                    sheet.write_string(row, column, value)
            elif isinstance(value, bool):
                sheet.write_boolean(row, column, value)
            elif isinstance(value, datetime):
                sheet.write_datetime(row, column, value, self.time_format)
            elif isinstance(value, date):
                sheet.write_datetime(row, column, value, self.date_format)
            elif isinstance(value, int | float) and math.isfinite(value):
                sheet.write_number(row, column, value)
            else:
                sheet.write_string(row, column, str(value))
        self.rows += 1
        self.width = max(self.width, len(values))

    def close(self) -> None:
        self.sheet.autofilter(0, 0, max(self.rows - 1, 0), max(self.width - 1, 0))
        self.book.close()
