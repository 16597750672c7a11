"""The device views: company assets, one device in full, a user's hardware view, the export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from velory_cli.errors import Refused, UsageError
from velory_cli.models import DEVICE_KEYS, DEVICE_STATUSES, Device, HistoryEntry, Note, joined_notes
from velory_cli.store import DeviceFilter, Store


def list_devices(store: Store, where: DeviceFilter) -> list[Device]:
    """Company assets: every device not removed, unless the filter asks for removed ones."""
    return list(iter_devices(store, where))


def iter_devices(store: Store, where: DeviceFilter) -> Iterator[Device]:
    """``list_devices`` as the rows come from the store; a bad filter is refused at once,
    before the first row."""
    if where.status and where.status not in DEVICE_STATUSES:
        raise UsageError(
            f"unknown status {where.status!r}; use one of {', '.join(DEVICE_STATUSES)}"
        )
    if where.search is not None and not where.search.strip():
        raise UsageError("--search needs some text to look for")
    return store.iter_devices(where)


def hardware_view(store: Store, email: str) -> list[Device]:
    """What the user sees as their hardware: their devices not removed."""
    return store.devices(DeviceFilter(user_email=email))


def find_device(store: Store, serial: str) -> Device:
    from velory_cli.nearest import no_such_device

    device = store.device(serial)
    if device is None:
        raise Refused(no_such_device(store, serial))
    return device


@dataclass(frozen=True)
class DeviceDetail:
    device: Device
    notes: list[Note]
    history: list[HistoryEntry]
    notices: list[dict[str, Any]]
    # The device in the latest snapshot of each MDM source; None with no snapshot imported.
    mdm: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.device.to_dict(),
            "notes": [note.to_dict() for note in self.notes],
            "history": [entry.to_dict() for entry in self.history],
            "notices": self.notices,
            "mdm": self.mdm,
        }


def device_notes(device: Device, added: list[Note]) -> list[Note]:
    """A device's notes, oldest first: the notes column of the imported inventory first, as
    the device arrived with it, then the ones added since."""
    if not device.import_notes:
        return added
    return [Note(at=device.created_at or "", actor="import", text=device.import_notes), *added]


def device_detail(store: Store, serial: str) -> DeviceDetail:
    from velory_cli.mdm.check import device_mdm_state

    device = find_device(store, serial)
    return DeviceDetail(
        device=device,
        notes=device_notes(device, store.notes(device.id)),
        history=store.history(device.id),
        notices=store.notices_for_device(device.id),
        mdm=device_mdm_state(store, device),
    )


# The keys of an exported device: a device's, then its notes.
EXPORT_KEYS = (*DEVICE_KEYS, "notes")


@dataclass(frozen=True)
class ExportedDevice:
    """A device as ``export`` writes it: with every note it has, oldest first."""

    device: Device
    notes: list[Note]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: a device plus ``notes`` as ``show`` has them."""
        return {**self.device.to_dict(), "notes": [note.to_dict() for note in self.notes]}

    def to_row(self) -> dict[str, Any]:
        """A row of a table file (CSV, a workbook): the notes in one cell, a line each."""
        notes = joined_notes(note.text for note in self.notes) if self.notes else None
        return {**self.device.to_dict(), "notes": notes}


def export_devices(store: Store) -> Iterator[ExportedDevice]:
    """Every device, removed ones too, with its notes."""
    for device, added in store.iter_export_rows():
        yield ExportedDevice(device, device_notes(device, added))
