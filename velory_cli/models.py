"""The records velory keeps, as plain typed objects that know their JSON shape."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Excel shows a long number it has read from a serial as 6.37702E+15; the digits are gone. A
# spreadsheet writes the mantissa normalised (a first digit of 1 to 9: zero is "0") and the
# exponent with two digits or three, so 0E0, 1E5 or 9E-1 are serials as they were typed. The
# importer rejects such a serial, the MDM snapshot skips it.
SCIENTIFIC_SERIAL = r"[+-]?[1-9](?:[.,]\d+)?[eE][+-]?\d{2,3}"

# Where a device is in its renewal. lifecycle's transitions table says which move is allowed.
ACTIVE = "active"
RENEWAL_STARTED = "renewal_started"
RETURN_CONFIRMED = "return_confirmed"
REMOVED = "removed"

DEVICE_STATUSES = (ACTIVE, RENEWAL_STARTED, RETURN_CONFIRMED, REMOVED)

# How a confirmed return ended: the old device went back, or the user bought it out.
OUTCOME_RETURNED = "returned"
OUTCOME_BOUGHT_OUT = "bought_out"
# Why a device was retired: taken out of the assets without the return flow.
OUTCOME_LOST = "lost"
OUTCOME_STOLEN = "stolen"
OUTCOME_BROKEN = "broken"
OUTCOME_OTHER = "other"
RETIRE_OUTCOMES = (OUTCOME_LOST, OUTCOME_STOLEN, OUTCOME_BROKEN, OUTCOME_OTHER)

# The keys of a device in every JSON output, in order. Scripts read them by name: keys may be
# added, never removed or renamed.
DEVICE_KEYS = (
    "serial",
    "model",
    "category",
    "user_email",
    "user_name",
    "distributor",
    "source",
    "purchase_date",
    "renewal_date",
    "status",
    "outcome",
    "replacement_serial",
    "replaces_serial",
)

SOURCE_IMPORTED = "imported"
SOURCE_STORE = "store"


def is_dustin(distributor: str | None) -> bool:
    """Dustin's devices follow Dustin's own process: any name with the word "dustin", any case."""
    if not distributor:
        return False
    import re

    return re.search(r"\bdustin\b", distributor, re.IGNORECASE) is not None


def distributor_label(distributor: str | None) -> str:
    """The distributor as tables show it: Dustin's devices marked, since they get no notices."""
    if is_dustin(distributor):
        return f"{distributor} (own process)"
    return distributor or ""


@dataclass(frozen=True)
class Device:
    id: int
    serial: str
    model: str | None
    category: str | None
    user_email: str | None
    user_name: str | None
    distributor: str | None
    source: str
    purchase_date: str | None
    renewal_date: str | None
    status: str
    outcome: str | None
    replacement_serial: str | None
    replaces_serial: str | None
    ordered_model: str | None = None
    ordered_at: str | None = None
    delivered_at: str | None = None
    status_changed_at: str | None = None
    import_notes: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    # A retired device: the status and outcome it had before, which reinstate gives back.
    retired_from: str | None = None
    retired_from_outcome: str | None = None

    @property
    def dustin(self) -> bool:
        return is_dustin(self.distributor)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in DEVICE_KEYS}


@dataclass(frozen=True)
class Note:
    at: str
    actor: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "actor": self.actor, "text": self.text}


def joined_notes(texts: Iterable[str]) -> str:
    """A device's notes as one cell of an export, oldest first, one after another on their own
    lines; an import compares a notes cell with this to see that it is the device's own."""
    return "\n".join(texts)


@dataclass(frozen=True)
class HistoryEntry:
    at: str
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    details: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "details": self.details,
        }


# ---- notices -----------------------------------------------------------------------------

# The keys of `velory notices list --json`, in order.
NOTICE_KEYS = (
    "serial",
    "kind",
    "recipient",
    "renewal_date",
    "status",
    "attempts",
    "sent_at",
    "error",
    "message_id",
)


@dataclass(frozen=True)
class Notice:
    """One row of the notices ledger: a mail to send once per device, kind and renewal date."""

    id: int
    device_id: int
    serial: str
    kind: str
    renewal_date: str
    recipient: str | None
    status: str
    attempts: int
    error: str | None
    message_id: str | None
    claimed_by: str | None
    claimed_at: str | None
    sent_at: str | None
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in NOTICE_KEYS}


# The kinds of notice and the states of the ledger, as the store holds them. A class of names
# rather than an Enum: the values stay plain strings wherever they are compared, stored or shown.
class NoticeKind:
    RENEWAL = "renewal"
    PERSONAL_DATA = "personal_data"
    # A reminder before the renewal date is this prefix and its number of days: "reminder_7".
    REMINDER_PREFIX = "reminder_"


class NoticeState:
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ALL = (PENDING, SENDING, SENT, FAILED, CANCELLED)


# A CSV cell velory writes that starts with one of these gets a leading "'": spreadsheets run a
# cell starting with the first six as a formula, and a cell that starts with "'" itself is
# quoted too, so an import can take exactly one "'" off any cell quoted this way and read the
# export back as it was.
SPREADSHEET_QUOTED_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
