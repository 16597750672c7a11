"""What is due, for a given day: the renewals coming up and what waits for an admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from velory_cli import lifecycle
from velory_cli.errors import UsageError
from velory_cli.models import DEVICE_KEYS, Device
from velory_cli.store import DeviceFilter, Store

DEFAULT_WITHIN_DAYS = 30

# A renewal notice's state as `renewals` reports it: one being sent counts as pending, and a
# cancelled one as none at all (the device will not get it).
NOTICE_STATES = {"pending": "pending", "sending": "pending", "sent": "sent", "failed": "failed"}

RENEWAL_KEYS = (*DEVICE_KEYS, "days_left", "notice_status")


@dataclass(frozen=True)
class Renewal:
    device: Device
    days_left: int
    notice_status: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.device.to_dict(),
            "days_left": self.days_left,
            "notice_status": self.notice_status,
        }


def renewals_due(
    store: Store,
    *,
    as_of: date,
    within_days: int = DEFAULT_WITHIN_DAYS,
    where: DeviceFilter | None = None,
) -> list[Renewal]:
    """Devices not removed renewing on or before ``as_of`` + ``within_days``, overdue ones
    included, any distributor or source, soonest first."""
    where = where or DeviceFilter()
    if within_days < 0:
        raise UsageError(f"--within must be 0 or more days, not {within_days}")
    if where.status is not None:
        if where.status not in lifecycle.STATUSES:
            raise UsageError(
                f"unknown status {where.status!r}; use one of {', '.join(lifecycle.STATUSES)}"
            )
        if where.status == lifecycle.REMOVED:
            raise UsageError("renewals never lists removed devices; see velory devices --status")
    until = as_of + timedelta(days=within_days)
    return [
        Renewal(
            device=device,
            days_left=(date.fromisoformat(device.renewal_date or "") - as_of).days,
            notice_status=NOTICE_STATES.get(notice or ""),
        )
        for device, notice in store.renewals_due(until.isoformat(), where)
    ]


# ---- what waits for an admin ---------------------------------------------------------------

CONFIRM_RETURN = "confirm-return"
RELEASE = "release"
WAIT_FOR_DELIVERY = "wait-for-delivery"
TODO_ACTIONS = (CONFIRM_RETURN, RELEASE, WAIT_FOR_DELIVERY)

TODO_KEYS = (*DEVICE_KEYS, "action", "since")


@dataclass(frozen=True)
class TodoItem:
    device: Device
    action: str
    since: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.device.to_dict(), "action": self.action, "since": self.since}


def todo_list(store: Store) -> list[TodoItem]:
    """Started devices whose replacement arrived (confirm the return), confirmed devices
    (release them) and started devices still waiting for their replacement; the ones waiting
    longest first within each action."""
    items = [
        _todo_item(device)
        for device in store.devices_in_statuses(
            (lifecycle.RENEWAL_STARTED, lifecycle.RETURN_CONFIRMED)
        )
    ]
    return sorted(
        items,
        key=lambda item: (TODO_ACTIONS.index(item.action), item.since or "", item.device.serial),
    )


def _todo_item(device: Device) -> TodoItem:
    status_since = device.status_changed_at or device.updated_at
    if device.status == lifecycle.RETURN_CONFIRMED:
        return TodoItem(device, RELEASE, _day(status_since))
    if device.replacement_serial:
        return TodoItem(device, CONFIRM_RETURN, _day(device.delivered_at or status_since))
    return TodoItem(device, WAIT_FOR_DELIVERY, _day(device.ordered_at or status_since))


def _day(timestamp: str | None) -> str | None:
    """The date of a stored UTC timestamp."""
    return timestamp[:10] if timestamp else None
