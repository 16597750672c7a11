"""Devices put straight into a store, for tests of areas other than the importer."""

from __future__ import annotations

from typing import Any

from velory_cli.store import Store

STAMP = "2026-01-01T00:00:00Z"


def device_values(serial: str, **fields: Any) -> dict[str, Any]:
    """The columns of an imported, active device with a user; ``fields`` override any."""
    values: dict[str, Any] = {
        "serial": serial,
        "model": "ThinkPad T14",
        "category": "Laptop",
        "user_email": f"{serial.lower()}@example.com",
        "user_name": f"User {serial}",
        "distributor": "Atea",
        "source": "imported",
        "purchase_date": "2023-12-01",
        "renewal_date": "2026-12-01",
        "status": "active",
        "created_at": STAMP,
        "updated_at": STAMP,
    }
    values.update(fields)
    return values


def add_device(store: Store, serial: str, **fields: Any) -> int:
    """An imported, active device with a user; ``fields`` override any column."""
    values = device_values(serial, **fields)
    with store.transaction():
        device_id = store.insert_device(values)
        store.record_history(
            device_id,
            at=STAMP,
            actor="tester",
            action="import",
            from_status=None,
            to_status=values["status"],
        )
    return device_id
