"""The device views: company assets, one device in full, a user's hardware view, the export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from velory_cli.errors import Refused, UsageError
from velory_cli.models import DEVICE_STATUSES, Device, HistoryEntry, Note
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
    return store.iter_devices(where)


def hardware_view(store: Store, email: str) -> list[Device]:
    """What the user sees as their hardware: their devices not removed."""
    return store.devices(DeviceFilter(user_email=email))


def find_device(store: Store, serial: str) -> Device:
    device = store.device(serial)
    if device is None:
        raise Refused(f"{serial.strip()}: no such device")
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


def device_detail(store: Store, serial: str) -> DeviceDetail:
    from velory_cli.mdm.check import device_mdm_state

    device = find_device(store, serial)
    notes = store.notes(device.id)
    if device.import_notes:
        # The notes column of the imported inventory comes first, as the device arrived with it.
        notes.insert(0, Note(at=device.created_at or "", actor="import", text=device.import_notes))
    return DeviceDetail(
        device=device,
        notes=notes,
        history=store.history(device.id),
        notices=store.notices_for_device(device.id),
        mdm=device_mdm_state(store, device),
    )


def export_devices(store: Store) -> Iterator[Device]:
    """Every device, removed ones too."""
    return store.iter_all_devices()
