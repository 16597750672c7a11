"""What is due: the renewals window for a given day, and the admins' todo list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.factory import add_device
from velory_cli.errors import UsageError
from velory_cli.lifecycle import (
    confirm_returns,
    deliver_replacement,
    order_replacement,
    release_devices,
    start_renewal,
)
from velory_cli.renewals import iter_renewals_due, renewals_due, todo_list
from velory_cli.store import DeviceFilter, Store

AS_OF = date(2026, 6, 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


@pytest.fixture
def fleet(store: Store) -> Store:
    """Devices around the 30-day window after 2026-06-01 (which ends on 2026-07-01)."""
    add_device(store, "EXACT30", renewal_date="2026-07-01")
    add_device(store, "DAY31", renewal_date="2026-07-02")
    add_device(store, "TODAY", renewal_date="2026-06-01")
    add_device(store, "OVERDUE", renewal_date="2026-05-20", distributor="Dustin AB")
    add_device(store, "LONGAGO", renewal_date="2025-01-15", source="store", distributor="Velory")
    add_device(store, "STARTED", renewal_date="2026-06-15", status="renewal_started")
    add_device(store, "GONE", renewal_date="2026-06-10", status="removed")
    add_device(store, "NODATE", renewal_date=None)
    return store


def serials_and_days(store: Store, **options: object) -> list[tuple[str, int]]:
    values: dict[str, object] = {"as_of": AS_OF}
    values.update(options)
    return [
        (r.device.serial, r.days_left)
        for r in renewals_due(store, **values)  # type: ignore[arg-type]
    ]


def test_window_includes_its_last_day_and_everything_overdue(fleet: Store) -> None:
    assert serials_and_days(fleet) == [
        ("LONGAGO", -502),
        ("OVERDUE", -12),
        ("TODAY", 0),
        ("STARTED", 14),
        ("EXACT30", 30),
    ]


def test_within_moves_the_end_of_the_window(fleet: Store) -> None:
    assert serials_and_days(fleet, within_days=0) == [
        ("LONGAGO", -502),
        ("OVERDUE", -12),
        ("TODAY", 0),
    ]
    assert [s for s, _ in serials_and_days(fleet, within_days=31)][-1] == "DAY31"


def test_as_of_moves_the_whole_window(fleet: Store) -> None:
    assert serials_and_days(fleet, as_of=date(2026, 6, 2), within_days=30) == [
        ("LONGAGO", -503),
        ("OVERDUE", -13),
        ("TODAY", -1),
        ("STARTED", 13),
        ("EXACT30", 29),
        ("DAY31", 30),
    ]
    assert serials_and_days(fleet, as_of=date(2024, 12, 1), within_days=30) == []


def test_filters(fleet: Store) -> None:
    assert serials_and_days(fleet, where=DeviceFilter(status="renewal_started")) == [
        ("STARTED", 14)
    ]
    assert serials_and_days(fleet, where=DeviceFilter(user_email=" Today@EXAMPLE.com ")) == [
        ("TODAY", 0)
    ]
    assert serials_and_days(fleet, where=DeviceFilter(distributor="dustin")) == [("OVERDUE", -12)]


def test_bad_filters_are_usage_errors(fleet: Store) -> None:
    with pytest.raises(UsageError, match="never lists removed"):
        renewals_due(fleet, as_of=AS_OF, where=DeviceFilter(status="removed"))
    with pytest.raises(UsageError, match="unknown status"):
        renewals_due(fleet, as_of=AS_OF, where=DeviceFilter(status="started"))
    with pytest.raises(UsageError):
        renewals_due(fleet, as_of=AS_OF, within_days=-1)


def test_renewals_stream_as_the_store_yields_them_and_refuse_a_bad_filter_at_once(
    fleet: Store,
) -> None:
    streamed = iter_renewals_due(fleet, as_of=AS_OF)
    assert isinstance(streamed, Iterator) and not isinstance(streamed, list)
    listed = [renewal.to_dict() for renewal in renewals_due(fleet, as_of=AS_OF)]
    assert [renewal.to_dict() for renewal in streamed] == listed
    with pytest.raises(UsageError, match="never lists removed"):
        iter_renewals_due(fleet, as_of=AS_OF, where=DeviceFilter(status="removed"))


def test_notice_status_is_the_renewal_notice_for_the_current_renewal_date(store: Store) -> None:
    states = {
        "N-SENT": "sent",
        "N-PENDING": "pending",
        "N-SENDING": "sending",
        "N-FAILED": "failed",
        "N-CANCELLED": "cancelled",
    }
    for serial, state in states.items():
        device_id = add_device(store, serial, renewal_date="2026-06-20")
        with store.transaction():
            store.queue_notice(
                device_id, kind="renewal", renewal_date="2026-06-20", recipient="x@y.se", at="t"
            )
            store.conn.execute(
                "UPDATE notices SET status = ? WHERE device_id = ?", (state, device_id)
            )
    stale = add_device(store, "N-OLDDATE", renewal_date="2026-06-20")
    other_kind = add_device(store, "N-OTHERKIND", renewal_date="2026-06-20")
    add_device(store, "N-NONE", renewal_date="2026-06-20")
    with store.transaction():
        store.queue_notice(stale, kind="renewal", renewal_date="2023-06-20", recipient="x", at="t")
        store.queue_notice(
            other_kind, kind="personal_data", renewal_date="2026-06-20", recipient="x", at="t"
        )
    found = {r.device.serial: r.notice_status for r in renewals_due(store, as_of=AS_OF)}
    assert found == {
        "N-SENT": "sent",
        "N-PENDING": "pending",
        "N-SENDING": "pending",
        "N-FAILED": "failed",
        "N-CANCELLED": None,
        "N-OLDDATE": None,
        "N-OTHERKIND": None,
        "N-NONE": None,
    }


def test_renewal_json_is_a_device_with_days_left_and_notice_status(fleet: Store) -> None:
    first = renewals_due(fleet, as_of=AS_OF)[0].to_dict()
    assert first["serial"] == "LONGAGO"
    assert first["days_left"] == -502
    assert first["notice_status"] is None
    assert first["source"] == "store"


@pytest.mark.parametrize(
    "where",
    [DeviceFilter(), DeviceFilter(status="active"), DeviceFilter(distributor="atea")],
)
def test_the_renewals_query_uses_an_index(fleet: Store, where: DeviceFilter) -> None:
    plan = fleet.renewals_query_plan("2026-07-01", where)
    devices_step = next(line for line in plan if " d " in f" {line} ")
    assert devices_step.startswith("SEARCH d USING INDEX devices_"), plan
    assert not any(line.startswith("SCAN") for line in plan), plan


# ---- todo ----------------------------------------------------------------------------------


def test_todo_lists_what_waits_for_an_admin(store: Store) -> None:
    for serial in ("T1", "T2", "T3", "T4", "T5", "T6"):
        add_device(store, serial)
    for serial in ("T1", "T2", "T3", "T4", "T6"):
        start_renewal(store, serial, now="2026-03-01T08:00:00Z", actor="ann")
    order_replacement(store, "T2", "MacBook Air", now="2026-03-02T08:00:00Z", actor="ann")
    order_replacement(store, "T3", "MacBook Air", now="2026-03-02T09:00:00Z", actor="ann")
    deliver_replacement(
        store,
        "T3",
        "NEW3",
        today=date(2026, 3, 5),
        now="2026-03-05T10:00:00Z",
        actor="ann",
        term_months=36,
    )
    confirm_returns(store, ["T4", "T6"], now="2026-03-07T11:00:00Z", actor="ann")
    release_devices(store, ["T6"], now="2026-03-08T11:00:00Z", actor="ann")
    items = todo_list(store, today=date(2026, 3, 10))
    assert [(i.device.serial, i.action, i.since) for i in items] == [
        ("T3", "confirm-return", "2026-03-05"),
        ("T4", "release", "2026-03-07"),
        ("T1", "wait-for-delivery", "2026-03-01"),
        ("T2", "wait-for-delivery", "2026-03-02"),
    ]
    as_json = items[0].to_dict()
    assert (as_json["action"], as_json["since"], as_json["replacement_serial"]) == (
        "confirm-return",
        "2026-03-05",
        "NEW3",
    )


def test_todo_is_empty_for_a_fleet_at_rest(store: Store) -> None:
    add_device(store, "A1")
    add_device(store, "R1", status="removed")
    assert todo_list(store, today=date(2026, 11, 30)) == []


# ---- todo: users to chase ------------------------------------------------------------------


def _notice(store: Store, device_id: int, renewal_date: str, status: str) -> None:
    """A renewal notice of ``device_id`` in ``status``, as the ledger's own steps leave it."""
    with store.transaction():
        store.queue_notice(
            device_id, kind="renewal", renewal_date=renewal_date, recipient="u@x.se", at=STAMP
        )
        (notice,) = [n.id for n in store.list_notices() if n.device_id == device_id]
        if status == "pending":
            return
        if status == "cancelled":
            store.cancel_notices([(notice, "test")], at=STAMP)
            return
        store.claim_notices([notice], owner="test", at=STAMP)
        store.finish_notices([notice], owner="test", status=status, at=STAMP)


STAMP = "2026-04-20T08:00:00Z"


def test_todo_chases_users_whose_renewal_date_has_passed(store: Store) -> None:
    sent = add_device(store, "SENT", renewal_date="2026-05-01")
    _notice(store, sent, "2026-05-01", "sent")
    add_device(store, "NONE", renewal_date="2026-04-01")
    failed = add_device(store, "FAILED", renewal_date="2026-05-20")
    _notice(store, failed, "2026-05-20", "failed")
    cancelled = add_device(store, "CANCELLED", renewal_date="2026-05-21")
    _notice(store, cancelled, "2026-05-21", "cancelled")
    stale = add_device(store, "STALE", renewal_date="2026-05-22")
    _notice(store, stale, "2023-05-22", "sent")  # the notice of an earlier renewal date
    add_device(store, "TODAY", renewal_date="2026-06-01")  # not passed yet
    add_device(store, "SOON", renewal_date="2026-06-15")
    add_device(store, "DUSTIN", renewal_date="2026-01-01", distributor="Dustin Sverige AB")
    add_device(store, "SPARE", renewal_date="2026-01-01", source="store")
    add_device(store, "GONE", renewal_date="2026-01-01", status="removed")
    add_device(store, "NODATE", renewal_date=None)
    add_device(store, "BEGUN", renewal_date="2026-01-01")
    start_renewal(store, "BEGUN", now="2026-05-02T08:00:00Z", actor="ann")
    items = todo_list(store, today=AS_OF)
    assert [(i.device.serial, i.action, i.since, i.notice_status) for i in items] == [
        ("BEGUN", "wait-for-delivery", "2026-05-02", None),
        ("NONE", "chase-user", "2026-04-01", None),
        ("SENT", "chase-user", "2026-05-01", "sent"),
        ("FAILED", "chase-user", "2026-05-20", "failed"),
        ("CANCELLED", "chase-user", "2026-05-21", None),
        ("STALE", "chase-user", "2026-05-22", None),
    ]
    assert items[2].to_dict()["notice_status"] == "sent"
    assert items[0].to_dict()["notice_status"] is None
    # A day later, the device renewing today is overdue too.
    later = todo_list(store, today=date(2026, 6, 2))
    assert ("TODAY", "chase-user") in [(i.device.serial, i.action) for i in later]


def test_todo_and_renewals_leave_out_the_distributors_asked(store: Store) -> None:
    add_device(store, "ATEA", renewal_date="2026-05-01", distributor="Atea Sverige AB")
    add_device(store, "ELKJOP", renewal_date="2026-05-02", distributor="Elkjøp Business")
    add_device(store, "NONE", renewal_date="2026-05-03", distributor=None)
    where = DeviceFilter(exclude_distributors=("ATEA", "elkjøp"))
    assert [i.device.serial for i in todo_list(store, today=AS_OF, where=where)] == ["NONE"]
    due = renewals_due(store, as_of=AS_OF, where=DeviceFilter(exclude_distributors=("sverige",)))
    assert [r.device.serial for r in due] == ["ELKJOP", "NONE"]
    blank = renewals_due(store, as_of=AS_OF, where=DeviceFilter(exclude_distributors=(" ",)))
    assert len(blank) == 3
