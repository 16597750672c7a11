"""``velory mdm check``: what the register and the MDM snapshots disagree about, and what the
latest snapshots say about one device (for ``release`` and ``show``).

A device a snapshot lists is enrolled, whatever state the MDM gives it (Intune's
``retirePending`` included), until an export without it is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from velory_cli.errors import ConfigError
from velory_cli.folding import fold
from velory_cli.mdm.store import Enrolment, MdmStore, Snapshot
from velory_cli.models import REMOVED, Device
from velory_cli.store import Store

DEFAULT_STALE_DAYS = 30

# Every kind of discrepancy, most urgent first, with what it means in a word.
KINDS: dict[str, str] = {
    "released_but_enrolled": "released in velory, still enrolled in the MDM",
    "missing_from_mdm": "a company asset no MDM snapshot lists",
    "unknown_to_velory": "enrolled in the MDM, not in the register",
    "user_mismatch": "the MDM's primary user is not the device's user",
    "stale": "no check-in for more than the stale days",
}

# The kinds as a sentence says them.
KIND_WORDS = {
    "released_but_enrolled": "released but enrolled",
    "missing_from_mdm": "missing from MDM",
    "unknown_to_velory": "unknown to velory",
    "user_mismatch": "user mismatch",
    "stale": "stale",
}

# The keys of one discrepancy, in JSON and CSV.
DISCREPANCY_KEYS = (
    "serial",
    "kind",
    "source",
    "velory_status",
    "velory_user",
    "mdm_serial",
    "mdm_user",
    "mdm_state",
    "mdm_last_check_in",
    "mdm_as_of",
)

NO_SNAPSHOT = (
    "no MDM snapshot yet: import an export first (velory mdm import FILE); "
    "the README's section 'Checking against MDM' says how to get one"
)


@dataclass
class CheckReport:
    as_of: date
    stale_days: int
    snapshots: list[Snapshot]
    discrepancies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for item in self.discrepancies:
            counts[item["kind"]] += 1
        return counts

    @property
    def exit_code(self) -> int:
        return 1 if self.discrepancies else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "stale_days": self.stale_days,
            "ok": not self.discrepancies,
            "total": len(self.discrepancies),
            "counts": self.counts,
            "snapshots": [snapshot.to_dict() for snapshot in self.snapshots],
            "discrepancies": self.discrepancies,
        }


def _stale_before(today: date, stale_days: int) -> str:
    return (today - timedelta(days=stale_days)).isoformat()


def check_snapshots(
    store: Store, *, today: date, stale_days: int = DEFAULT_STALE_DAYS
) -> CheckReport:
    """Every discrepancy between the register and the latest snapshot of each MDM source.
    With no snapshot at all there is nothing to check against: ConfigError (78)."""
    mdm = MdmStore(store)
    snapshots = mdm.snapshots()
    if not snapshots:
        raise ConfigError(NO_SNAPSHOT)
    report = CheckReport(as_of=today, stale_days=stale_days, snapshots=snapshots)
    with mdm.reading():
        for row in mdm.discrepancies(stale_before=_stale_before(today, stale_days)):
            report.discrepancies.append({key: row[key] for key in DISCREPANCY_KEYS})
    return report


def discrepancy_counts(
    store: Store, *, today: date, stale_days: int = DEFAULT_STALE_DAYS
) -> dict[str, int] | None:
    """How many discrepancies of each kind there are; None when no snapshot was imported."""
    mdm = MdmStore(store)
    if not mdm.has_snapshots():
        return None
    with mdm.reading():
        return mdm.discrepancy_counts(stale_before=_stale_before(today, stale_days))


def discrepancy_line(counts: dict[str, int] | None) -> str | None:
    """The one line ``todo`` and ``stats`` add when the MDM check finds something."""
    if not counts or not sum(counts.values()):
        return None
    total = sum(counts.values())
    parts = ", ".join(
        f"{count} {KIND_WORDS.get(kind, kind)}" for kind, count in counts.items() if count
    )
    noun = "discrepancy" if total == 1 else "discrepancies"
    return f"MDM: {total} {noun} ({parts}); see velory mdm check"


# ---- one device: release and show --------------------------------------------------------


def release_refusal(device: Device, enrolments: list[Enrolment]) -> str | None:
    """Why ``device`` may not be released while the latest snapshots list it (the first
    source that does), or None. A device no snapshot lists, or with no snapshot imported at
    all, may be released as before."""
    if not enrolments:
        return None
    where = enrolments[0].snapshot
    return (
        f"{device.serial} is still in {where.name} as of {where.as_of}: remove it from the MDM "
        "first, import a new export, or --force"
    )


def release_guard(
    store: Store, serials: Sequence[str], *, force: bool
) -> Callable[[Device], tuple[str | None, dict[str, Any] | None]]:
    """What ``release`` asks of each device: a refusal, or (with ``force``) the details its
    history records of the MDM state it was released in spite of. The snapshots are read at
    the first device asked about (inside release's transaction), for all ``serials`` at once;
    with no snapshot imported nothing is refused."""
    mdm = MdmStore(store)
    found: dict[str, list[Enrolment]] | None = None

    def guard(device: Device) -> tuple[str | None, dict[str, Any] | None]:
        nonlocal found
        if found is None:
            found = mdm.enrolments_of(serials)
        key = fold(device.serial)
        if key not in found:
            # Asked for in a spelling that folds otherwise: looked up on its own.
            found[key] = mdm.enrolments(device.serial)
        enrolments = found[key]
        reason = release_refusal(device, enrolments)
        if reason is None:
            return None, None
        if not force:
            return reason, None
        return None, {
            "forced": True,
            "mdm": [f"{e.snapshot.name} as of {e.snapshot.as_of}" for e in enrolments],
        }

    return guard


def enrolment_warnings(
    store: Store, serials: Sequence[str], warnings: list[str]
) -> Callable[[Device], tuple[str | None, dict[str, Any] | None]]:
    """What ``retire`` asks of each device: never a refusal (a lost or stolen device cannot be
    taken out of the MDM by returning it), but a warning added to ``warnings`` for each one
    the latest snapshots still list, and the snapshots for its history entry."""
    mdm = MdmStore(store)
    found: dict[str, list[Enrolment]] | None = None

    def guard(device: Device) -> tuple[str | None, dict[str, Any] | None]:
        nonlocal found
        if found is None:
            found = mdm.enrolments_of(serials)
        key = fold(device.serial)
        if key not in found:
            found[key] = mdm.enrolments(device.serial)
        enrolments = found[key]
        if not enrolments:
            return None, None
        where = enrolments[0].snapshot
        warnings.append(
            f"{device.serial} is still in {where.name} as of {where.as_of}: wipe it or remove "
            "it from the MDM; velory mdm check lists it until a new export no longer has it"
        )
        return None, {"mdm": [f"{e.snapshot.name} as of {e.snapshot.as_of}" for e in enrolments]}

    return guard


def device_mdm_state(store: Store, device: Device) -> dict[str, Any] | None:
    """The device as each source's latest snapshot has it, for ``show``: None with no
    snapshot at all."""
    mdm = MdmStore(store)
    snapshots = mdm.snapshots()
    if not snapshots:
        return None
    listed = {e.snapshot.source: e for e in mdm.enrolments(device.serial)}
    entries = []
    for snapshot in snapshots:
        entry = listed.get(snapshot.source)
        entries.append(
            {
                "source": snapshot.source,
                "name": snapshot.name,
                "as_of": snapshot.as_of,
                "enrolled": entry is not None,
                "state": entry.state if entry else None,
                "user": entry.user if entry else None,
                "last_check_in": entry.last_check_in if entry else None,
                "enrolled_at": entry.enrolled_at if entry else None,
                "mdm_name": entry.name if entry else None,
            }
        )
    enrolled = bool(listed)
    return {
        "enrolled": enrolled,
        "released_but_enrolled": enrolled and device.status == REMOVED,
        "sources": entries,
    }
