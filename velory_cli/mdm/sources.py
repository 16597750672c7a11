"""The MDM exports velory reads, each into the same plain records.

The Intune admin centre's device export (CSV), Microsoft Graph ``managedDevices`` (JSON), Jamf
Pro's computer and mobile device inventory (the Pro API's and the Classic API's JSON, or a CSV
with a serial column), Kandji's devices (JSON), Google's ChromeOS devices (JSON), and any CSV
with a serial column. The kind is told from the headers or keys. CSV files are opened as
``velory import`` opens them (byte-order mark, encodings, delimiters, an Excel ``sep=`` line);
JSON is read element by element, so a large export never has to fit in memory at once.

What a record keeps is what the check needs: the serial as the MDM spells it, the primary
user, the last check-in and enrolment times (UTC, ISO 8601; a placeholder such as
``0001-01-01`` is no date), and the MDM's own word for the device's state.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Any

from velory_cli.errors import InvalidInput
from velory_cli.models import SCIENTIFIC_SERIAL

if TYPE_CHECKING:
    from velory_cli.importer import Source

# The kinds of export, as reports name them.
INTUNE_CSV = "intune-csv"
GRAPH = "graph-json"
JAMF_JSON = "jamf-json"
JAMF_CSV = "jamf-csv"
KANDJI = "kandji-json"
CHROMEOS = "chromeos-json"
GENERIC_CSV = "csv"
GENERIC_JSON = "json"

# The source a kind's snapshot belongs to, where the kind says; a generic file needs --source.
KIND_SOURCES: dict[str, str] = {
    INTUNE_CSV: "intune",
    GRAPH: "intune",
    JAMF_JSON: "jamf",
    JAMF_CSV: "jamf",
    KANDJI: "kandji",
    CHROMEOS: "google",
}
# How messages name the known sources ("still in Intune as of ...").
SOURCE_NAMES = {"intune": "Intune", "jamf": "Jamf", "kandji": "Kandji", "google": "Google"}

# A JSON value longer than this is no device record: the file is refused. (A CSV field is
# held to the csv module's own limit, 128 KiB, as in velory import.)
MAX_VALUE_CHARS = 64 * 1024 * 1024
_CHUNK_CHARS = 1024 * 1024


@dataclass(slots=True)
class Record:
    """One device of an export, as read: the serial untouched (``usable_serial`` judges it),
    the other values cleaned (None for empty, redacted or a placeholder date)."""

    row: int
    serial: str
    user: str | None = None
    # A second name for the same user, compared as well: Intune's UPN beside the email.
    user_alias: str | None = None
    last_check_in: str | None = None
    enrolled_at: str | None = None
    state: str | None = None
    name: str | None = None
    model: str | None = None


@dataclass
class Export:
    """An open export: its kind, how it was read, and its records (read as iterated)."""

    kind: str
    format: str
    encoding: str | None
    records: Iterator[Record]
    warnings: list[str] = field(default_factory=list)
    # Check-in values that were there but could not be read as a time, counted as read.
    unreadable_dates: list[int] = field(default_factory=lambda: [0])


# ---- values ------------------------------------------------------------------------------------

_REDACTED = re.compile(r"\[?\s*redacted\s*\]?|\*{3,}|x{6,}", re.IGNORECASE)
# Serials firmware and MDMs write where there is none.
_PLACEHOLDER_SERIALS = frozenset(
    {
        "0",
        "none",
        "null",
        "n/a",
        "na",
        "unknown",
        "-",
        "default string",
        "to be filled by o.e.m.",
        "system serial number",
        "chassis serial number",
        "not specified",
        "not applicable",
        "serial number",
        "invalid",
    }
)
_ZEROS = re.compile(r"0+")
# A Hyper-V virtual machine's serial (0315-2787-1432-4710-2587-4283-13): a VM, not a device a
# company renews.
_HYPER_V = re.compile(r"\d{4}(?:-\d{4}){5}-\d{2}", re.ASCII)
# Excel turned the serial into a number: the digits are lost.
_SCIENTIFIC = re.compile(SCIENTIFIC_SERIAL, re.ASCII)
_REDACTION_STARTS = frozenset("[*xXrR")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")

# Why a serial is not used, as the import report counts them.
SKIP_EMPTY = "empty"
SKIP_PLACEHOLDER = "placeholder"
SKIP_REDACTED = "redacted"
SKIP_VIRTUAL = "virtual_machine"
SKIP_LOST = "lost_by_excel"
SKIP_CONTROL = "control_characters"
SKIP_REASONS = (SKIP_EMPTY, SKIP_PLACEHOLDER, SKIP_REDACTED, SKIP_VIRTUAL, SKIP_LOST, SKIP_CONTROL)


def unusable_serial(serial: str) -> str | None:
    """Why this serial cannot stand for a device (one of SKIP_REASONS), or None if it can."""
    text = serial.strip()
    if not text:
        return SKIP_EMPTY
    if text.isascii() and text.isalnum():
        # Most serials: letters and digits, which only a few placeholders are.
        folded = text.lower()
        if folded in _PLACEHOLDER_SERIALS or not folded.strip("0"):
            return SKIP_PLACEHOLDER
        if folded == "redacted" or (not folded.strip("x") and len(folded) >= 6):
            return SKIP_REDACTED
        return None
    if text.casefold() in _PLACEHOLDER_SERIALS or _ZEROS.fullmatch(text):
        return SKIP_PLACEHOLDER
    if _REDACTED.fullmatch(text):
        return SKIP_REDACTED
    if _HYPER_V.fullmatch(text):
        return SKIP_VIRTUAL
    if _SCIENTIFIC.fullmatch(text):
        return SKIP_LOST
    if _CONTROL.search(text):
        return SKIP_CONTROL
    return None


def clean(value: Any) -> str | None:
    """A value as a one-line text, or None for nothing, a redacted value or a JSON structure."""
    if type(value) is str:
        text = value.strip()
    elif value is None or isinstance(value, (dict, list, bool)):
        return None
    else:
        text = str(value).strip()
    if not text:
        return None
    # Only a value that starts as a redaction does can be one: most are never matched.
    if text[0] in _REDACTION_STARTS and _REDACTED.fullmatch(text):
        return None
    if not text.isprintable():
        text = _CONTROL.sub(" ", text).strip()
    return text or None


def clean_user(value: Any) -> str | None:
    """A primary user as the check compares it: an address, or None. Logins without a domain
    (Jamf's ``Username``) and redacted values are no address to compare with the register."""
    text = clean(value)
    if text is None or "@" not in text:
        return None
    return text


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:T|\s+|\s+at\s+)(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(?:\s*([AaPp])\.?[Mm]\.?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)
_DOTTED = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?")
# Years that stand for "no date": 0001-01-01 (.NET's default) and 9999-12-31 (its maximum).
_FIRST_YEAR = 1971
_LAST_YEAR = 2199


class _Unreadable(ValueError):
    pass


def parse_time(value: Any) -> str | None:
    """A check-in or enrolment time as UTC ``YYYY-MM-DDTHH:MM:SSZ``; None for no date (empty,
    a placeholder year). A value that is no time at all raises ``_Unreadable``. A time without
    a zone is UTC, as the Intune and Jamf exports write theirs."""
    if type(value) is str:
        # The common forms (Intune's, Graph's, Kandji's, Google's) in UTC, without a parse.
        fast = _FAST_UTC.fullmatch(value)
        if fast is not None:
            day, hours, minutes, seconds = fast.groups()
            if hours < "24" and minutes < "60" and seconds < "60":
                return f"{day}T{hours}:{minutes}:{seconds}Z" if _usable_day(day) else None
        elif not value:
            return None
    from datetime import UTC, datetime, timedelta

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # Jamf's Classic API gives epochs in milliseconds beside its dates.
        seconds = value / 1000 if value > 10**11 else value
        if seconds <= 0:
            return None
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise _Unreadable(str(value)) from None
        return _in_range(moment.replace(tzinfo=None))
    text = clean(value)
    if text is None:
        return None
    found = _TIMESTAMP.fullmatch(text)
    if found is None:
        dotted = _DOTTED.fullmatch(text)
        if dotted is None:
            raise _Unreadable(text)
        day, month, year, hour, minute, second = dotted.groups()
        parts: list[str | None] = [year, month, day, hour, minute, second, None, None, None]
    else:
        parts = list(found.groups())
    year, month, day, hour, minute, second, _fraction, half, zone = parts
    if year is None or month is None or day is None:
        raise _Unreadable(text)
    if int(year) < _FIRST_YEAR or int(year) > _LAST_YEAR:
        return None  # 0001-01-01, 9999-12-31: the MDM's way of saying "never"
    try:
        hours = int(hour or 0)
        if half:
            if not 1 <= hours <= 12:
                raise _Unreadable(text)
            hours = hours % 12 + (12 if half.lower() == "p" else 0)
        moment = datetime(
            int(year), int(month), int(day), hours, int(minute or 0), int(second or 0)
        )
    except ValueError:
        raise _Unreadable(text) from None
    if zone and zone not in ("Z", "UTC", "GMT"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return _in_range(moment)


_FAST_UTC = re.compile(
    r"\s*(\d{4}-\d\d-\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,]\d+)?(?:Z|\+00:?00)?\s*", re.ASCII
)


@lru_cache(maxsize=4096)
def _usable_day(day: str) -> bool:
    """Whether YYYY-MM-DD is a real day in the years a check-in can have (raises
    ``_Unreadable`` for an impossible one); the days of an export repeat, so each is
    judged once."""
    from datetime import date

    year = int(day[:4])
    if year < _FIRST_YEAR or year > _LAST_YEAR:
        return False
    try:
        date.fromisoformat(day)
    except ValueError:
        raise _Unreadable(day) from None
    return True


def _in_range(moment: Any) -> str | None:
    if moment.year < _FIRST_YEAR or moment.year > _LAST_YEAR:
        return None
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


# ---- CSV ---------------------------------------------------------------------------------------

_HEADER_NOISE = re.compile(r"[\s_\-.:()\ufeff]+")


def header_key(name: str) -> str:
    """A header as compared: any case, without spaces, ``_ - . : ( )`` or a byte-order mark."""
    return _HEADER_NOISE.sub("", name).lower()


# Each field and the headers that feed it, best first (compared by header_key).
CSV_FIELDS: dict[str, tuple[str, ...]] = {
    "serial": (
        "serial number",
        "serial",
        "computer serial",
        "mobile device serial",
        "serial no",
        "serialnumber",
        "sn",
        "hardware serial number",
    ),
    "user": (
        "primary user email address",
        "email address",
        "email",
        "e-mail",
        "user email",
        "primary user email",
        "user",
    ),
    "user_alias": ("primary user upn", "user principal name", "upn", "username", "user name"),
    "last_check_in": (
        "last check-in",
        "last check in",
        "last checkin",
        "last sync",
        "last sync date time",
        "last contact",
        "last contact time",
        "last seen",
        "last inventory update",
        "last report",
    ),
    "enrolled_at": (
        "enrollment date",
        "enrolment date",
        "enrolled",
        "last enrollment",
        "enrolled at",
    ),
    "state": ("device state", "management state", "status", "state", "managed"),
    "name": ("device name", "computer name", "display name", "name"),
    "model": ("model",),
}
_CSV_ALIASES = {
    field_name: tuple(header_key(alias) for alias in aliases)
    for field_name, aliases in CSV_FIELDS.items()
}
# Headers only the Intune admin centre's export has, beside its serial column.
_INTUNE_HEADERS = frozenset(
    header_key(h)
    for h in ("Primary user UPN", "Azure AD Device ID", "Intune registered", "Managed by")
)
# Headers of Jamf Pro's exports and templates.
_JAMF_HEADERS = frozenset(
    header_key(h)
    for h in (
        "Computer Serial",
        "Mobile Device Serial",
        "Jamf Binary Version",
        "Last Inventory Update",
    )
)


def csv_columns(header: Sequence[str]) -> dict[str, int]:
    """Which column feeds each field the header names (the best alias, its first column)."""
    keys = [header_key(name) for name in header]
    found: dict[str, int] = {}
    for field_name, aliases in _CSV_ALIASES.items():
        for alias in aliases:
            if alias in keys and keys.index(alias) not in found.values():
                found[field_name] = keys.index(alias)
                break
    return found


def csv_kind(header: Sequence[str]) -> str:
    keys = {header_key(name) for name in header}
    if keys & _INTUNE_HEADERS:
        return INTUNE_CSV
    if keys & _JAMF_HEADERS:
        return JAMF_CSV
    return GENERIC_CSV


def _csv_records(
    cells_iter: Iterator[list[str]], export: Export, first_row: int
) -> Iterator[Record]:
    import csv

    number = first_row - 1
    header: list[str] | None = None
    try:
        for cells in cells_iter:
            number += 1
            if not cells or not "".join(cells).strip():
                continue
            header = cells
            break
        if header is None:
            return
        columns = csv_columns(header)
        if "serial" not in columns:
            named = ", ".join(h.strip() for h in header if h.strip()) or "no column names"
            raise InvalidInput(
                f"row {number}: no serial column: name one Serial number, Serial or "
                f"Computer Serial (found {_shortened(named)})"
            )
        export.kind = csv_kind(header)
        # Each field's column, in _FIELD_ORDER; a field the header lacks reads the "" that
        # every row is given at its end.
        positions = [columns.get(name, -1) for name in _FIELD_ORDER]
        width_needed = max(positions) + 1
        values_of = operator.itemgetter(*positions)
        serial_at = columns["serial"]
        unreadable = export.unreadable_dates
        for cells in cells_iter:
            number += 1
            width = len(cells)
            if width < width_needed:
                if serial_at >= width and not "".join(cells).strip():
                    continue  # a blank line
                cells = cells + [""] * (width_needed - width)
            cells.append("")
            yield _record(number, values_of(cells), unreadable)
    except csv.Error as exc:
        raise InvalidInput(f"row {number + 1}: this is not a CSV table: {exc}") from None


_FIELD_ORDER = tuple(CSV_FIELDS)


def _record(number: int, values: Sequence[Any], unreadable: list[int]) -> Record:
    """A record from the values of _FIELD_ORDER."""
    serial, user, alias, check_in, enrolled, state, name, model = values
    user = clean_user(user)
    alias = clean_user(alias)
    if user is None:
        user, alias = alias, None
    record = Record(
        number,
        "" if serial is None else str(serial),
        user,
        alias,
        None,
        None,
        clean(state),
        clean(name),
        clean(model),
    )
    try:
        record.last_check_in = parse_time(check_in)
    except _Unreadable:
        unreadable[0] += 1
    with suppress(_Unreadable):
        record.enrolled_at = parse_time(enrolled)
    return record


def _shortened(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# ---- JSON --------------------------------------------------------------------------------------


class _JsonText:
    """A JSON document read a chunk at a time: values are decoded one by one, so an array of
    a hundred thousand devices is never held whole."""

    def __init__(self, text: IO[str], start: str) -> None:
        self.text = text
        self.buffer = start
        self.at = 0
        self.consumed = 0  # characters dropped from the buffer's front
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        chunk = self.text.read(_CHUNK_CHARS)
        if not chunk:
            return False
        if self.at > _CHUNK_CHARS:
            self.consumed += self.at
            self.buffer = self.buffer[self.at :]
            self.at = 0
        self.buffer += chunk
        return True

    def peek(self) -> str:
        """The next character that is not white space ("" at the end)."""
        while True:
            while self.at < len(self.buffer) and self.buffer[self.at] in " \t\r\n\ufeff":
                self.at += 1
            if self.at < len(self.buffer):
                return self.buffer[self.at]
            if not self._fill():
                return ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            shown = repr(found) if found else "the end of the file"
            raise InvalidInput(f"this is not a JSON export: expected {char!r}, found {shown}")
        self.at += 1

    def value(self) -> Any:
        """The next JSON value, decoded whole."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.at)
            except json.JSONDecodeError as exc:
                # The value goes on in the next chunk, or it is broken: read on (as far as one
                # value may be long) before saying which.
                ended = exc.pos >= len(self.buffer) - 1
                problem = f"{exc.msg} at character {self.consumed + exc.pos + 1}"
                if len(self.buffer) - self.at > MAX_VALUE_CHARS or not self._fill():
                    if ended:
                        problem = "the file ends too soon"
                    raise InvalidInput(f"this is not a JSON export: {problem}") from None
                continue
            # A number at the very end of the buffer may go on in the next chunk.
            if end == len(self.buffer) and self._fill():
                continue
            self.at = end
            return value

    def elements(self) -> Iterator[Any]:
        """The elements of the array that starts here."""
        self.expect("[")
        if self.peek() == "]":
            self.at += 1
            return
        while True:
            yield self.value()
            following = self.peek()
            self.at += 1
            if following == "]":
                return
            if following != ",":
                raise InvalidInput("this is not a JSON export: a list is not closed")


# The key holding the devices, in each wrapped answer, and the kind it tells.
_WRAPPERS: dict[str, str | None] = {
    "value": GRAPH,
    "chromeosdevices": CHROMEOS,
    "results": JAMF_JSON,
    "computers": JAMF_JSON,
    "mobile_devices": JAMF_JSON,
    "mobiledevices": JAMF_JSON,
    "devices": None,
    "data": None,
}


def _json_devices(stream: _JsonText) -> tuple[str | None, Iterator[Any]]:
    """The device objects of a JSON export and the kind its wrapper tells, if it does: a bare
    array (Kandji), an answer object holding the array (Graph's ``value``, Google's
    ``chromeosdevices``, Jamf's ``results``), or JSON Lines. The array is read element by
    element wherever it is; the answer's other keys are read whole (they are small)."""
    first = stream.peek()
    if first == "[":
        return None, stream.elements()
    if first != "{":
        raise InvalidInput("this is not a JSON export: it holds no list of devices")
    stream.expect("{")
    document: dict[str, Any] = {}
    while stream.peek() != "}":
        if document:
            stream.expect(",")
        key = stream.value()
        if not isinstance(key, str):
            raise InvalidInput("this is not a JSON export: an object's key is not a name")
        stream.expect(":")
        if key in _WRAPPERS and stream.peek() == "[":
            return _WRAPPERS[key], stream.elements()
        document[key] = stream.value()
    stream.expect("}")
    if stream.peek() == "{" or _looks_like_device(document):
        return None, _lines(document, stream)  # JSON Lines: one device a line
    keys = ", ".join(list(document)[:20]) or "no keys"
    raise InvalidInput(f"this is not a JSON export: it holds no list of devices (keys: {keys})")


def _lines(first: dict[str, Any], stream: _JsonText) -> Iterator[Any]:
    yield first
    while stream.peek():
        yield stream.value()


def _looks_like_device(document: Mapping[str, Any]) -> bool:
    return any(key in document for key in ("serialNumber", "serial_number", "serial"))


@lru_cache(maxsize=256)
def _parts(dotted: str) -> tuple[str | int, ...]:
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def _path(obj: Any, dotted: str) -> Any:
    """The value at ``a.b.0.c`` (a number indexes a list), or None."""
    if "." not in dotted:
        return obj.get(dotted) if type(obj) is dict else None
    for part in _parts(dotted):
        if type(obj) is dict and type(part) is str:
            obj = obj.get(part)
        elif type(obj) is list and type(part) is int:
            obj = obj[part] if part < len(obj) else None
        else:
            return None
    return obj


def _first(obj: Mapping[str, Any], paths: Sequence[str], check: Callable[[Any], Any]) -> Any:
    """The first of these paths whose value ``check`` keeps."""
    for dotted in paths:
        found = check(_path(obj, dotted))
        if found is not None:
            return found
    return None


def _serial_of(value: Any) -> str | None:
    """A serial worth taking over the next path's: any but nothing, a placeholder or a
    redaction (a VM's or a lost one is still the device's own, and is counted as such)."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value)
    return text if unusable_serial(text) not in _NO_SERIAL else None


_NO_SERIAL = frozenset({SKIP_EMPTY, SKIP_PLACEHOLDER, SKIP_REDACTED})


# Per kind: the paths of each field, best first.
_JSON_PATHS: dict[str, dict[str, tuple[str, ...]]] = {
    GRAPH: {
        "serial": ("serialNumber", "hardwareInformation.serialNumber"),
        "user": ("emailAddress", "userPrincipalName"),
        "user_alias": ("userPrincipalName",),
        "last_check_in": ("lastSyncDateTime",),
        "enrolled_at": ("enrolledDateTime",),
        "state": ("managementState",),
        "name": ("deviceName", "managedDeviceName"),
        "model": ("model",),
    },
    CHROMEOS: {
        "serial": ("serialNumber",),
        "user": ("annotatedUser", "recentUsers.0.email"),
        "user_alias": (),
        "last_check_in": ("lastSync",),
        "enrolled_at": ("lastEnrollmentTime",),
        "state": ("status",),
        "name": ("annotatedAssetId", "deviceId"),
        "model": ("model",),
    },
    KANDJI: {
        "serial": ("serial_number",),
        "user": ("user.email",),
        "user_alias": (),
        "last_check_in": ("last_check_in",),
        "enrolled_at": ("last_enrollment", "first_enrollment"),
        "state": (),
        "name": ("device_name",),
        "model": ("model",),
    },
    JAMF_JSON: {
        "serial": (
            "hardware.serialNumber",
            "serial_number",
            "serialNumber",
            "general.serialNumber",
        ),
        "user": (
            "userAndLocation.email",
            "userAndLocation.emailAddress",
            "email_address",
            "email",
            "location.email_address",
        ),
        "user_alias": ("userAndLocation.username", "username"),
        "last_check_in": (
            "general.lastContactTime",
            "general.lastInventoryUpdateDate",
            "lastInventoryUpdateTimestamp",
            "last_contact_time_utc",
            "report_date_utc",
            "last_inventory_update_utc",
            "report_date_epoch",
            "last_inventory_update_epoch",
        ),
        "enrolled_at": ("general.lastEnrolledDate", "general.lastEnrollmentDate"),
        "state": (),
        "name": ("general.name", "general.displayName", "name", "device_name"),
        "model": ("hardware.model", "model"),
    },
}


def _json_kind(obj: Mapping[str, Any]) -> str:
    if obj.get("kind") == "admin#directory#chromeosdevice" or "annotatedUser" in obj:
        return CHROMEOS
    if "managementAgent" in obj or "managedDeviceOwnerType" in obj or "hardwareInformation" in obj:
        return GRAPH
    if "serial_number" in obj and ("blueprint_id" in obj or "last_check_in" in obj):
        return KANDJI
    if isinstance(obj.get("hardware"), dict) or isinstance(obj.get("userAndLocation"), dict):
        return JAMF_JSON
    if "serial_number" in obj and ("report_date_utc" in obj or "udid" in obj):
        return JAMF_JSON
    return GENERIC_JSON


def _json_state(kind: str, obj: Mapping[str, Any]) -> str | None:
    if kind == KANDJI:
        if obj.get("is_removed") is True:
            return "removed"
        if obj.get("is_missing") is True:
            return "missing"
        return "mdm enabled" if obj.get("mdm_enabled") is True else "agent only"
    if kind == JAMF_JSON:
        managed = _first(
            obj, ("general.remoteManagement.managed", "managed", "general.managed"), _bool
        )
        if managed is not None:
            return "managed" if managed else "unmanaged"
    return None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _json_record(kind: str, number: int, obj: Any, unreadable: list[int]) -> Record:
    if not isinstance(obj, dict):
        return Record(row=number, serial="")
    if kind == GENERIC_JSON:
        flat = {header_key(str(key)): value for key, value in obj.items()}
        values = [
            next((flat[alias] for alias in _CSV_ALIASES[name] if alias in flat), None)
            for name in _FIELD_ORDER
        ]
        return _record(number, values, unreadable)
    paths = _JSON_PATHS[kind]
    serial = _first(obj, paths["serial"], _serial_of)
    if serial is None:
        raw = _path(obj, paths["serial"][0])
        serial = "" if raw is None or isinstance(raw, (dict, list, bool)) else str(raw)
    user = _first(obj, paths["user"], clean_user)
    alias = _first(obj, paths["user_alias"], clean_user)
    record = Record(
        row=number,
        serial=serial,
        user=user,
        user_alias=alias if alias != user else None,
        state=_json_state(kind, obj) or _first(obj, paths["state"], clean),
        name=_first(obj, paths["name"], clean),
        model=_first(obj, paths["model"], clean),
    )
    for target, names in (
        ("last_check_in", paths["last_check_in"]),
        ("enrolled_at", paths["enrolled_at"]),
    ):
        for dotted in names:
            raw = _path(obj, dotted)
            if raw is None or raw == "":
                continue
            try:
                found = parse_time(raw)
            except _Unreadable:
                if target == "last_check_in":
                    unreadable[0] += 1
                break
            if found is not None:
                setattr(record, target, found)
                break
    return record


def _json_records(stream: _JsonText, export: Export) -> Iterator[Record]:
    wrapper_kind, devices = _json_devices(stream)
    unreadable = export.unreadable_dates
    kind: str | None = None
    for number, obj in enumerate(devices, start=1):
        if kind is None:
            if not isinstance(obj, dict):
                raise InvalidInput(f"element {number}: this is not a device record")
            kind = _json_kind(obj)
            if kind == GENERIC_JSON and wrapper_kind is not None:
                kind = wrapper_kind
            if kind == GENERIC_JSON and not any(
                alias in {header_key(str(key)) for key in obj} for alias in _CSV_ALIASES["serial"]
            ):
                keys = ", ".join(list(obj)[:20])
                raise InvalidInput(
                    f"element {number}: no serial in the device records (keys: {keys})"
                )
            export.kind = kind
        yield _json_record(kind, number, obj, unreadable)


# ---- opening -----------------------------------------------------------------------------------


def open_export(source: Source, encoding: str | None = None) -> Export:
    """The export in ``source``: its kind (told from the first header or device, so known only
    once the first record has been read: iterate ``records`` first) and its records."""
    from velory_cli.importer import sources as opening

    found = opening.detect_encoding(source.stream, source.name, encoding)
    text = opening.text_stream(source, found)
    lines, first_char, blank_lines = opening.first_lines(text)
    export = Export(kind=GENERIC_CSV, format="csv", encoding=found.label, records=iter(()))
    if found.warning:
        export.warnings.append(found.warning)
    if not first_char:
        return export
    if first_char in "[{" and source.suffix not in (".csv", ".tsv", ".txt"):
        export.format = "json"
        export.kind = GENERIC_JSON
        export.records = _json_records(_JsonText(text, "".join(lines)), export)
        return export
    export.records = _csv_rows(text, lines, source.suffix, export, blank_lines)
    return export


def _csv_rows(
    text: IO[str], lines: list[str], suffix: str, export: Export, blank_lines: int
) -> Iterator[Record]:
    """The records of a CSV export whose first line that is not blank is ``lines[-1]``, after
    ``blank_lines`` blank ones (rows as a spreadsheet numbers them count those too)."""
    import csv
    import itertools

    from velory_cli.importer.sources import sniff_delimiter

    header_line = lines[-1]
    if "\x00" in header_line:
        raise InvalidInput("this is not a table: the file holds binary data")
    first_row = blank_lines + 1
    delimiter, only_names_it = sniff_delimiter(header_line, suffix)
    if only_names_it:
        # Excel's "sep=;" line is no row, but it is a line: the header comes after it.
        del lines[-1]
        first_row += 1
    reader = csv.reader(itertools.chain(lines, text), delimiter=delimiter, strict=True)
    return _csv_records(reader, export, first_row)
