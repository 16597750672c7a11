"""The checks and the import job: ``import_file``.

A chunk of rows is checked a column at a time where every row in it may be valid, else row by
row; its serials are then placed (new, stored, or repeating an earlier row) and its writes made
together. The checks and the job share the checked row, and the column checks must never let
through what the row checks refuse, so they live side by side.
"""

from __future__ import annotations

import itertools
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from typing import Any

from velory_cli import dates
from velory_cli.errors import InputUnreadable
from velory_cli.folding import fold
from velory_cli.importer.columns import EMAIL, NOTES, PURCHASED, RENEWAL, SERIAL, STORED_FIELDS
from velory_cli.importer.readers import Batch, FileProblem, Reader, Row, open_reader
from velory_cli.importer.rejects import Rejected, RejectsWriter
from velory_cli.importer.report import ImportReport, RowError, add_error
from velory_cli.importer.sources import Encoding, Source, detect_encoding
from velory_cli.importer.workbooks import WorkbookReader, is_workbook
from velory_cli.importer.writes import (
    DEVICE_ID,
    IMPORT_ID,
    IMPORT_ROW,
    POSITION,
    STATUS,
    STORED_VALUES,
    DeferredIndex,
    ImportWrites,
    StoredDevice,
)
from velory_cli.models import ACTIVE, REMOVED, SCIENTIFIC_SERIAL, SOURCE_IMPORTED, joined_notes
from velory_cli.store import SERIALS_INDEX, Store

# Where the imported notes are among a row's stored fields, and in a stored device's tuple.
_IMPORT_NOTES = STORED_FIELDS.index("import_notes")
_STORED_NOTES = STORED_VALUES.start + _IMPORT_NOTES

# The action of the history entries an import writes.
IMPORT_ACTION = "import"

CHUNK_ROWS = 5000
# A progress bar is worth drawing only for files that take a while.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024

_SCIENTIFIC = re.compile(SCIENTIFIC_SERIAL, re.ASCII)
_SCIENTIFIC_LINES = re.compile(r"^" + _SCIENTIFIC.pattern + r"$", re.ASCII | re.MULTILINE)
# Unicode's invisible format characters (category Cf: zero-width spaces and joiners, bidi
# overrides and isolates, the soft hyphen, tags...), which make two serials or names look alike
# that are not; a test holds this list to Python's own Unicode data.
_FORMAT_CHARS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
# Control and format characters: none in a field velory imports; line breaks and tabs are fine
# in notes.
_CONTROL = re.compile(rf"[\x00-\x1f\x7f-\x9f{_FORMAT_CHARS}]")
_CONTROL_IN_NOTES = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_FORMAT_CHARS}]")
# An address as people write one: no spaces, one @, dots only between parts, a dotted domain.
_LOCAL = r"[^\s@.,;:<>()\[\]\\\"]+"
_LABEL = r"[^\s@.,;:<>()\[\]\\\"'`]+"
_EMAIL = re.compile(rf"{_LOCAL}(?:\.{_LOCAL})*@{_LABEL}(?:\.{_LABEL})+")
# Many addresses, one a line, checked in one call (none of the parts can hold a line break).
_EMAIL_LINES = re.compile(rf"{_EMAIL.pattern}(?:\n{_EMAIL.pattern})*")


@dataclass(frozen=True)
class ImportOptions:
    skip_invalid: bool = False
    dry_run: bool = False
    date_order: dates.DateOrder | None = None
    term_months: int = 36
    encoding: str | None = None
    # The header each field is in, by its position in FIELDS, where the aliases do not find it.
    columns: tuple[tuple[int, str], ...] = ()
    sheet: str | None = None  # the sheet of a workbook to read (default: the first)


# A row checked one by one is a list, for a repeat of its serial found later adds an error: its
# number, serial key (None without a usable serial), the values to store (None when rejected),
# errors (None when valid), what the file holds, column names, the serial as written.
_NUMBER, _KEY, _VALUES, _ERRORS, _ORIGINAL, _NAMES, _SERIAL = range(7)
_NO_VALUES = ("",) * 9  # the values of a rejected row, which holds only its serial
# A part of each stored device of a chunk, taken in one pass of C.
_POSITION, _ID, _STATUS = map(operator.itemgetter, (POSITION, DEVICE_ID, STATUS))
_STORED_VALUES = operator.itemgetter(STORED_VALUES)


# ---- checking rows -------------------------------------------------------------------------


def serial_key(serial: str) -> str:
    """How serials compare: ``fold`` (NFKC and full case folding), as the store's unique key."""
    return fold(serial)


def _control_message(value: str, pattern: re.Pattern[str]) -> str:
    found = pattern.search(value)
    if found is None:
        return f"holds a control character: {value!r}"
    char = found.group()
    kind = "an invisible format character" if char in _FORMAT_CHARS else "a control character"
    return f"holds {kind} (U+{ord(char):04X}): {value!r}"


class _Checker:
    """Turns a row's texts into the values to store, or says what is wrong, by column."""

    def __init__(self, options: ImportOptions) -> None:
        self.order = options.date_order
        self.term_months = options.term_months
        self._iso: dict[str, str] = {"": ""}  # the dates of the file read so far, as ISO

    def check(self, row: Row) -> list[Any]:
        """The row as a chunk holds it: its values stripped ("" where empty), dates as ISO and
        the renewal date worked out from the purchase date where the file has none; or its
        errors. Runs once a row: kept to plain string work and precompiled patterns."""
        number, original, texts, names, errors = row
        serial, model, category, email, user_name, distributor, purchased, renewal, notes = map(
            str.strip, texts
        )
        key = None
        if not serial:
            errors = add_error(errors, number, names[SERIAL], "serial is empty")
        elif _SCIENTIFIC.fullmatch(serial):
            errors = add_error(
                errors,
                number,
                names[SERIAL],
                f"{serial!r} is a number Excel wrote in scientific notation: the real serial "
                "is lost; format the column as text where it comes from and export it again",
            )
        else:
            key = serial.lower() if serial.isascii() else fold(serial)
        fields = (serial, model, category, email, user_name, distributor, purchased, renewal)
        # One search over the fields but the notes; only a hit looks for which one it was.
        if _CONTROL.search("".join(fields)):
            for index, value in enumerate(fields):
                if _CONTROL.search(value):
                    errors = add_error(
                        errors, number, names[index], _control_message(value, _CONTROL)
                    )
        if notes and _CONTROL_IN_NOTES.search(notes):
            message = _control_message(notes, _CONTROL_IN_NOTES)
            errors = add_error(errors, number, names[NOTES], message)
        if email and not _EMAIL.fullmatch(email) and not _CONTROL.search(email):
            errors = add_error(errors, number, names[EMAIL], f"{email!r} is not an email address")
        purchase_iso = renewal_iso = None
        if purchased:
            purchase_iso, problem = dates.read_date(purchased, self.order)
            if problem:
                errors = add_error(errors, number, names[PURCHASED], problem)
        if renewal:
            renewal_iso, problem = dates.read_date(renewal, self.order)
            if problem:
                errors = add_error(errors, number, names[RENEWAL], problem)
        # A row without any date is valid here: it may name a stored device. Whether it would
        # create one, which needs a date, is known once its serial is placed (``_flush``).
        if purchase_iso and renewal_iso and renewal_iso < purchase_iso:
            errors = add_error(
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

    def screen(self, batch: Batch) -> tuple[list[str], list[Sequence[str]]] | None:
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
            keys = all_serials.lower().split("\n")  # fold's own ASCII fast path, for a chunk
        else:
            keys = list(map(fold, serials))
        if names[EMAIL] is not None:
            emails = [email for email in columns[EMAIL] if email]
            if emails and not _EMAIL_LINES.fullmatch("\n".join(emails)):
                return None
        purchased = self._dates(columns[PURCHASED])
        renewal = self._dates(columns[RENEWAL])
        if purchased is None or renewal is None:
            return None
        if not all(renewal):
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


def check_fields(
    texts: Sequence[str], names: Sequence[str | None]
) -> tuple[tuple[str, ...] | None, list[RowError]]:
    """One device's fields, in FIELDS order, through the checks an imported row goes
    through: the values as an import would store them (dates as ISO), or the errors, each
    naming its field by ``names``. For ``velory edit``, whose values must pass exactly what an
    import of them would."""
    row = _Checker(ImportOptions()).check(Row(0, None, texts, names, None))
    return (None, row[_ERRORS]) if row[_ERRORS] else (tuple(row[_VALUES]), [])


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
        self.writes = ImportWrites(store)
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
        self.reader: Reader | None = None
        self.store_was_empty = False
        # This run's record in the store, made with the first device it creates.
        self.import_id: int | None = None
        # Whether serials were claimed by rejected rows or while not writing (import_keys).
        self.keys_claimed = False
        # Whether this run may write into an empty store without looking for repeated serials
        # (see run), and whether it still does; the indexes it dropped, to build at the end.
        self.trust_serials = False
        self.trusting = False
        self.deferred: list[DeferredIndex] = []
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
            if is_workbook(source):
                self._read(None)  # a workbook's text has no encoding to tell
            else:
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

    def _read(self, encoding: Encoding | None) -> None:
        report = self.report
        if encoding is not None:
            report.encoding = encoding.label
            if encoding.warning:
                report.warnings.append(encoding.warning)
        finished = False
        overrides = dict(self.options.columns)
        try:
            reader: Reader
            if encoding is None:
                self.reader = reader = WorkbookReader(self.source, self.options.sheet, overrides)
            else:
                self.reader = reader = open_reader(self.source, encoding, overrides)
            report.format = reader.format
            self.store_was_empty = not self.writes.has_devices()
            self.writes.begin()
            trigger = None if self.options.dry_run else self.writes.suspend_key_trigger()
            first_import = self.store_was_empty and not self.options.dry_run
            self.trusting = first_import and self.trust_serials
            self.deferred = []
            if first_import:
                self.deferred = self.writes.defer_indexes(serials=self.trusting)
            for batch in reader.batches(CHUNK_ROWS):
                self._flush(batch)
            built = report.failed or self.writes.restore_indexes(self.deferred)
            if not built:
                raise _Repeats  # rows written on trust repeat a serial
            report.format = reader.format  # an API answer is known by its rows
            self.writes.restore_key_trigger(trigger)
            self.writes.end()
            finished = True
        except FileProblem as problem:
            report.file_error = RowError(problem.row, None, problem.message)
            finished = True
        except UnicodeDecodeError as exc:
            if encoding is None:
                raise
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
                    report.warnings.append(_ignored_warning(ignored))
                if self.rejects is not None and report.file_error is None:
                    self._start_rejects()
                    self.rejects.finish()
                self.reader.close()

    def _start_rejects(self) -> None:
        assert self.rejects is not None and self.reader is not None
        if not self.rejects.started:
            self.rejects.start(self.reader.format, self.reader.header, self.reader.delimiter)

    def _flush(self, batch: Batch) -> None:
        """One chunk: checked, its serials placed (new, stored, or repeated from an earlier
        row), written, and its rejected rows reported in the file's order."""
        report = self.report
        report.rows += len(batch)
        check = self.checker.check
        entries: list[list[Any]] | None = None
        invalid: set[int] = set()
        clean = self.checker.screen(batch)
        if clean is not None and not all(clean[1][RENEWAL]):
            # A renewal date is missing only where the row has no date at all.
            dateless_keys = [clean[0][i] for i, date in enumerate(clean[1][RENEWAL]) if not date]
            if self._creating(dateless_keys):
                clean = None  # such a row would create a device: it is rejected, row by row
        if clean is None:
            # A rejected row still holds its serial: a later row with it is a repeat.
            entries = [check(batch.row(index)) for index in range(len(batch))]
            dateless = [e for e in entries if e[_VALUES] is not None and not e[_VALUES][RENEWAL]]
            for index in self._creating([entry[_KEY] for entry in dateless]):
                entry = dateless[index]
                names = entry[_NAMES]
                entry[_ERRORS] = add_error(
                    None,
                    entry[_NUMBER],
                    names[PURCHASED] or names[RENEWAL],
                    "a new device needs a purchase or a renewal date",
                )
                entry[_VALUES] = None
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
                entry[_ERRORS] = add_error(
                    entry[_ERRORS], entry[_NUMBER], entry[_NAMES][SERIAL], message
                )
                entry[_VALUES] = None
        if entries is not None:
            self._report_rejected(entries)
        if self.progress is not None:
            with suppress(OSError, ValueError):
                # A workbook says how far it is (its file is read whole at once); a text
                # reader is as far as its file (a JSON reader's ``position`` is in its buffer).
                where = getattr(self.reader, "position", None)
                self.progress(where() if callable(where) else self.source.stream.tell())

    def _creating(self, keys: Sequence[str]) -> list[int]:
        """Of these serials of rows without any date, the ones (by position) no device in the
        store has: such a row would create a device, which needs a date. Into an empty store
        every one would (or repeats an earlier row, which placing it finds)."""
        if not keys:
            return []
        if self.store_was_empty:
            return list(range(len(keys)))
        known = set(map(_POSITION, self.writes.lookup(keys)))
        return [position for position in range(len(keys)) if position not in known]

    def _report_rejected(self, entries: list[list[Any]]) -> None:
        rejected = [entry for entry in entries if entry[_ERRORS]]
        if not rejected:
            return
        for entry in rejected:
            self.report.errors.extend(entry[_ERRORS])
        if self.rejects is not None:
            self._start_rejects()
            self.rejects.add(Rejected(entry[_ORIGINAL], entry[_ERRORS]) for entry in rejected)

    def _place(
        self,
        numbers: Sequence[int],
        keys: Sequence[str],
        columns: Sequence[Sequence[str]],
        invalid: set[int],
    ) -> dict[int, int]:
        """The chunk's rows that have a serial (``keys``: folded; ``columns``: serial,
        model, category, user_email, user_name, distributor, purchase_date, renewal_date,
        notes, "" where empty): the valid ones inserted as new devices or compared with the
        stored ones and updated where the file changes them; those at ``invalid`` positions
        are rejected, and only hold their serial. Returns the rows (by position) whose serial
        an earlier row of the file had, with that row; they are neither inserted nor updated.

        A repeated serial is found without keeping the file in memory: within the chunk by a
        dict; a device this import created, by its record in the store; a stored device, by
        the claim of its id; a new serial not written (a dry run, an invalid file, a rejected
        row), by the claim of the serial."""
        writes = self.writes
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
                (positions[match[POSITION]], *match[POSITION + 1 :])
                for match in writes.lookup([keys[p] for p in positions])
            ]
        else:
            found = writes.lookup(keys)
        stored: list[StoredDevice] = []
        for match in found:
            position = match[POSITION]
            if position in inner:
                continue
            if match[IMPORT_ID] == this_import:
                # A device an earlier row of this file created.
                repeats[position] = match[IMPORT_ROW]
            else:
                stored.append(match)
        if stored and self.trust_serials:
            # On trust, a stored device is only marked as named; named twice, the file is read
            # again claiming each with its row, to name the first in the error.
            if self.seen.add(map(_ID, stored)):
                raise _Repeats
        elif stored:
            earlier = writes.claim_devices(
                [(match[DEVICE_ID], numbers[match[POSITION]]) for match in stored], numbers[0]
            )
            if earlier:
                for match in stored:
                    if match[DEVICE_ID] in earlier:
                        repeats[match[POSITION]] = earlier[match[DEVICE_ID]]
                stored = [match for match in stored if match[POSITION] not in repeats]
        if not (found or inner):
            self._insert(numbers, keys, columns, list(range(len(keys))), invalid, repeats)
        else:
            taken = {match[POSITION] for match in found}.union(inner)
            if len(taken) < len(keys):
                new = [position for position in range(len(keys)) if position not in taken]
                self._insert(numbers, keys, columns, new, invalid, repeats)
        if stored:
            self._update(columns, [match for match in stored if match[POSITION] not in invalid])
        for position, first in inner.items():
            repeats[position] = repeats.get(first, numbers[first])
        return repeats

    def _stop_trusting(self) -> None:
        """A rejected row: its serial must be held from now on, which takes the serials'
        unique index. Built now over the rows written so far; if they repeat a serial, the
        import starts again without trust."""
        serials = [index for index in self.deferred if index.name == SERIALS_INDEX]
        if not self.writes.restore_indexes(serials):
            raise _Repeats
        self.deferred = [index for index in self.deferred if index.name != SERIALS_INDEX]
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
        writes = self.writes
        writing = self.writing
        if not writing or self.keys_claimed:
            claims = new  # not written, or an earlier rejected row may hold one of them
        else:
            claims = [p for p in new if p in invalid] if invalid else []
        if claims:
            earlier = writes.claim_keys([(keys[p], numbers[p]) for p in claims], numbers[0])
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
            self.import_id = writes.record(at=self.now, actor=self.actor, file=self.source.name)
        # By column, as NEW_DEVICE_COLUMNS: the row, then the fields in FIELDS order.
        if len(new) == len(keys):
            picked: Sequence[Sequence[Any]] = [numbers, columns[SERIAL], keys, *columns[1:]]
        else:
            pick = operator.itemgetter(*new) if len(new) > 1 else lambda seq: (seq[new[0]],)
            picked = [pick(numbers), pick(columns[SERIAL]), pick(keys), *map(pick, columns[1:])]
        inserted = writes.insert(
            zip(*picked, strict=True),
            import_id=self.import_id,
            source=SOURCE_IMPORTED,
            status=ACTIVE,
            at=self.now,
            empty=[not all(column) for column in picked[3:]],
        )
        if inserted < len(new):
            # Serials an earlier chunk of this file created (see _place): not inserted again.
            new_keys = [keys[p] for p in new]
            for index, first in writes.rows_of(new_keys, self.import_id, numbers[0]).items():
                repeats[new[index]] = first
        self.report.inserted += inserted

    def _own_notes(
        self,
        stored: Sequence[StoredDevice],
        rows: Sequence[Sequence[str]],
        candidates: Sequence[int],
        same: Sequence[bool],
    ) -> dict[int, str]:
        """For the rows whose notes cell differs from the imported notes of its device: that
        device's notes as an export joins them (imported, then added ones), by device id, so
        an export read back adds no note. The added notes are read only for these rows: a
        re-import of an unchanged fleet reads none."""
        differing = [
            stored[index][DEVICE_ID]
            for index in candidates
            if not same[index]
            and rows[index][_IMPORT_NOTES]
            and rows[index][_IMPORT_NOTES] != stored[index][_STORED_NOTES]
        ]
        if not differing:
            return {}
        added = self.writes.added_notes(differing)
        own: dict[int, str] = {}
        for index in candidates:
            match = stored[index]
            texts = added.get(match[DEVICE_ID])
            if texts is None:
                continue
            imported = match[_STORED_NOTES]
            joined = joined_notes([imported, *texts] if imported else texts)
            own[match[DEVICE_ID]] = joined.replace("\r\n", "\n").replace("\r", "\n").strip()
        return own

    def _update(self, columns: Sequence[Sequence[str]], stored: list[StoredDevice]) -> None:
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
        candidates = list(candidates)
        own_notes = self._own_notes(stored, rows, candidates, same)
        updates: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        for index in candidates:
            match = stored[index]
            device_id, status = match[DEVICE_ID], match[STATUS]
            if status == REMOVED:
                report.skipped += 1
                continue
            if same[index]:
                report.unchanged += 1
                continue
            row = rows[index]
            merged = list(match[STORED_VALUES])
            changes: dict[str, dict[str, Any]] = {}
            for index, column in enumerate(STORED_FIELDS):
                value = row[index]
                if index == _IMPORT_NOTES and own_notes.get(device_id) == value:
                    continue  # the device's notes as velory exported them: nothing new
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
            self.writes.update(updates, history)


def _ignored_warning(ignored: Sequence[str]) -> str:
    """One short line, however many columns (or however long their names) a file has."""
    shown = [name if len(name) <= 60 else name[:57] + "..." for name in ignored[:10]]
    more = f" and {len(ignored) - 10:,} more" if len(ignored) > 10 else ""
    return "columns velory does not import were ignored: " + ", ".join(shown) + more


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
            with job.writes.transaction(write=not options.dry_run), _no_cycle_collection():
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
