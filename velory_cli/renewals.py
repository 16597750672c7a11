"""What is due, for a given day: the renewals coming up and what waits for an admin."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from velory_cli.errors import UsageError
from velory_cli.models import (
    DEVICE_KEYS,
    DEVICE_STATUSES,
    REMOVED,
    RENEWAL_STARTED,
    RETURN_CONFIRMED,
    Device,
)
from velory_cli.store import DEVICE_COLUMNS, DeviceFilter, Store

DEFAULT_WITHIN_DAYS = 30

# A renewal notice's state as `renewals` reports it: one being sent counts as pending, and a
# cancelled one as none at all (the device will not get it).
NOTICE_STATES = {"pending": "pending", "sending": "pending", "sent": "sent", "failed": "failed"}

RENEWAL_KEYS = (*DEVICE_KEYS, "days_left", "notice_status")

# The device keys of the JSON contract, picked out of a store row (DEVICE_COLUMNS, then the
# notice's state) in one step.
_KEY_VALUES = operator.itemgetter(*(DEVICE_COLUMNS.index(key) for key in DEVICE_KEYS))
_RENEWAL_DATE = DEVICE_COLUMNS.index("renewal_date")


class Renewal:
    """A device due for renewal, its days left (negative when overdue) and the state of its
    renewal notice.

    Made straight from the store's row: ``velory renewals --json`` on a large fleet turns tens
    of thousands of rows into JSON, and builds no ``Device`` for them unless asked."""

    __slots__ = ("_device", "_row", "days_left", "notice_status")

    def __init__(self, row: tuple[Any, ...], days_left: int, notice_status: str | None) -> None:
        self._row = row
        self._device: Device | None = None
        self.days_left = days_left
        self.notice_status = notice_status

    @property
    def device(self) -> Device:
        if self._device is None:
            self._device = Device(*self._row[: len(DEVICE_COLUMNS)])
        return self._device

    def to_dict(self) -> dict[str, Any]:
        values = dict(zip(DEVICE_KEYS, _KEY_VALUES(self._row), strict=True))
        values["days_left"] = self.days_left
        values["notice_status"] = self.notice_status
        return values

    def __repr__(self) -> str:
        return (
            f"Renewal({self._row[DEVICE_COLUMNS.index('serial')]!r}, "
            f"days_left={self.days_left}, notice_status={self.notice_status!r})"
        )


def renewals_due(
    store: Store,
    *,
    as_of: date,
    within_days: int = DEFAULT_WITHIN_DAYS,
    where: DeviceFilter | None = None,
) -> list[Renewal]:
    """Devices not removed renewing on or before ``as_of`` + ``within_days``, overdue ones
    included, any distributor or source, soonest first."""
    return list(iter_renewals_due(store, as_of=as_of, within_days=within_days, where=where))


def iter_renewals_due(
    store: Store,
    *,
    as_of: date,
    within_days: int = DEFAULT_WITHIN_DAYS,
    where: DeviceFilter | None = None,
) -> Iterator[Renewal]:
    """``renewals_due`` as the rows come from the store, for a table or CSV written as it
    goes; a bad filter is refused at once, before the first row."""
    where = where or DeviceFilter()
    if within_days < 0:
        raise UsageError(f"--within must be 0 or more days, not {within_days}")
    if where.status is not None:
        if where.status not in DEVICE_STATUSES:
            raise UsageError(
                f"unknown status {where.status!r}; use one of {', '.join(DEVICE_STATUSES)}"
            )
        if where.status == REMOVED:
            raise UsageError("renewals never lists removed devices; see velory devices --status")
    until = as_of + timedelta(days=within_days)
    return _renewals(store.iter_renewals_rows(until.isoformat(), where), as_of)


def _renewals(rows: Iterator[tuple[Any, ...]], as_of: date) -> Iterator[Renewal]:
    # Every renewal date of the answer is on or before `until`: the few hundred distinct
    # dates are turned into days once each.
    days: dict[str, int] = {}
    for row in rows:
        renewal_date = row[_RENEWAL_DATE]
        left = days.get(renewal_date)
        if left is None:
            left = days[renewal_date] = (date.fromisoformat(renewal_date) - as_of).days
        yield Renewal(row, left, NOTICE_STATES.get(row[-1] or ""))


# ---- what waits for an admin ---------------------------------------------------------------

CONFIRM_RETURN = "confirm-return"
RELEASE = "release"
WAIT_FOR_DELIVERY = "wait-for-delivery"
CHASE_USER = "chase-user"
TODO_ACTIONS = (CONFIRM_RETURN, RELEASE, WAIT_FOR_DELIVERY, CHASE_USER)

TODO_KEYS = (*DEVICE_KEYS, "action", "since", "notice_status")


@dataclass(frozen=True)
class TodoItem:
    device: Device
    action: str
    since: str | None
    # The state of the renewal notice, as `renewals` reports it: for chase-user, the user's
    # reminder so far; None for the other actions.
    notice_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.device.to_dict(),
            "action": self.action,
            "since": self.since,
            "notice_status": self.notice_status,
        }


def todo_list(store: Store, *, today: date, where: DeviceFilter | None = None) -> list[TodoItem]:
    """Started devices whose replacement arrived (confirm the return), confirmed devices
    (release them), started devices still waiting for their replacement, and active devices
    whose renewal date has passed without the user starting (chase the user: imported, not
    Dustin's, as for notices); the ones waiting longest first within each action.
    ``where``: only its distributor counts."""
    where = where or DeviceFilter()
    items = [
        _todo_item(device)
        for device in store.devices_in_statuses((RENEWAL_STARTED, RETURN_CONFIRMED), where)
    ]
    items.extend(_users_to_chase(store, today, where))
    return sorted(
        items,
        key=lambda item: (TODO_ACTIONS.index(item.action), item.since or "", item.device.serial),
    )


def _users_to_chase(store: Store, today: date, where: DeviceFilter) -> Iterator[TodoItem]:
    width = len(DEVICE_COLUMNS)
    for row in store.overdue_unstarted_rows(today.isoformat(), where):
        device = Device(*row[:width])
        if device.dustin:
            continue  # Dustin runs their renewal and reminds their users
        notice = NOTICE_STATES.get(row[width] or "")
        yield TodoItem(device, CHASE_USER, device.renewal_date, notice)


def _todo_item(device: Device) -> TodoItem:
    status_since = device.status_changed_at or device.updated_at
    if device.status == RETURN_CONFIRMED:
        return TodoItem(device, RELEASE, _day(status_since))
    if device.replacement_serial:
        return TodoItem(device, CONFIRM_RETURN, _day(device.delivered_at or status_since))
    return TodoItem(device, WAIT_FOR_DELIVERY, _day(device.ordered_at or status_since))


def _day(timestamp: str | None) -> str | None:
    """The date of a stored UTC timestamp."""
    return timestamp[:10] if timestamp else None
