"""The questions asked of a large fleet are answered from an index, never by reading every
device: each operation's SQL is captured as it runs and checked with EXPLAIN QUERY PLAN.

SQLite picks a plan from the query and the schema (velory runs no ANALYZE), so a plan found on a
small store is the plan on a fleet of a million.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.factory import add_device
from velory_cli import inventory, notices, renewals
from velory_cli.importer import ImportOptions, import_file, open_source
from velory_cli.mails import MailStyle
from velory_cli.notices import NoticeRules
from velory_cli.store import DeviceFilter, Store

AS_OF = date(2026, 11, 1)
NOW = "2026-11-01T08:00:00Z"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as store:
        for number in range(40):
            add_device(
                store,
                f"SN{number:03d}",
                renewal_date=f"2026-{1 + number % 12:02d}-15",
                status=("active", "renewal_started", "return_confirmed", "removed")[number % 4],
                distributor="Atea" if number % 3 else "Dustin AB",
            )
        yield store


@contextmanager
def captured(store: Store) -> Iterator[list[str]]:
    """The SQL statements the store runs, with their values filled in."""
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        store.conn.set_trace_callback(None)


def device_steps(store: Store, statements: list[str]) -> list[list[str]]:
    """For each statement that reads the devices table, its query plan."""
    plans = []
    for sql in statements:
        if not re.match(r"\s*(SELECT|WITH)\b", sql, re.IGNORECASE):
            continue
        if "EXISTS (SELECT 1 FROM devices)" in sql:
            continue  # "is the store empty?": one row read
        if not re.search(r"\bFROM\s+devices\b|\bJOIN\s+devices\b", sql, re.IGNORECASE):
            continue
        rows = store.conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        plans.append([str(row[3]) for row in rows])
    return plans


def assert_no_scan_of_devices(store: Store, run: Callable[[], Any]) -> list[list[str]]:
    with captured(store) as statements:
        run()
    plans = device_steps(store, statements)
    assert plans, "the operation read no devices"
    for plan in plans:
        scans = [step for step in plan if re.match(r"SCAN (d|devices)\b", step)]
        assert not scans, plan
    return plans


@pytest.mark.parametrize(
    "where",
    [
        DeviceFilter(),
        DeviceFilter(status="active"),
        DeviceFilter(user_email="sn001@example.com"),
        DeviceFilter(distributor="atea"),
    ],
    ids=["all", "status", "user", "distributor"],
)
def test_renewals_read_only_the_devices_due(fleet: Store, where: DeviceFilter) -> None:
    plans = assert_no_scan_of_devices(
        fleet, lambda: renewals.renewals_due(fleet, as_of=AS_OF, within_days=30, where=where)
    )
    assert any("USING INDEX devices_" in step for plan in plans for step in plan), plans


def test_the_notices_due_are_found_from_the_index(fleet: Store) -> None:
    rules = NoticeRules(as_of=AS_OF)
    style = MailStyle(sender="it@example.com")
    plans = assert_no_scan_of_devices(
        fleet,
        lambda: notices.send_notices(
            fleet, rules, style, transport=None, clock=lambda: NOW, owner="test:1"
        ),
    )
    steps = [step for plan in plans for step in plan]
    assert any("devices_status_renewal" in step for step in steps), plans


def test_what_waits_for_an_admin_is_found_from_the_index(fleet: Store) -> None:
    plans = assert_no_scan_of_devices(fleet, lambda: renewals.todo_list(fleet, today=AS_OF))
    assert any("devices_status_renewal" in step for plan in plans for step in plan), plans


def test_a_users_hardware_is_found_from_the_index(fleet: Store) -> None:
    plans = assert_no_scan_of_devices(
        fleet, lambda: inventory.hardware_view(fleet, "SN001@example.com")
    )
    assert any("devices_user_email" in step for plan in plans for step in plan), plans
    assert_no_scan_of_devices(
        fleet, lambda: inventory.list_devices(fleet, DeviceFilter(user_email="sn002@example.com"))
    )


def test_renewals_per_month_read_only_the_months_asked_for(fleet: Store) -> None:
    # (The counts by status and distributor that stats also shows read every device.)
    plans = assert_no_scan_of_devices(
        fleet, lambda: fleet.renewals_per_month("2026-11-01", "2027-11-01")
    )
    assert any(
        "devices_status_renewal" in step and "renewal_date>" in step
        for plan in plans
        for step in plan
    ), plans


def test_one_device_is_found_by_its_serial(fleet: Store) -> None:
    plans = assert_no_scan_of_devices(fleet, lambda: inventory.device_detail(fleet, "sn007"))
    assert any("devices_serial" in step for plan in plans for step in plan), plans


def test_an_import_looks_up_a_chunk_of_serials_from_the_index(fleet: Store, tmp_path: Path) -> None:
    csv = tmp_path / "fleet.csv"
    csv.write_text(
        "Serial,Purchase Date\n" + "".join(f"SN{n:03d},2023-01-01\n" for n in range(0, 60, 2)),
        encoding="utf-8",
    )

    def run() -> None:
        with open_source(str(csv)) as source:
            import_file(fleet, source, ImportOptions(), now=NOW, actor="tester")

    plans = assert_no_scan_of_devices(fleet, run)
    assert any("devices_serial" in step for plan in plans for step in plan), plans


def test_the_users_to_chase_are_found_from_the_index(fleet: Store) -> None:
    plans = assert_no_scan_of_devices(fleet, lambda: fleet.overdue_unstarted_rows("2026-11-01"))
    assert any(
        "devices_status_renewal" in step and "renewal_date<" in step
        for plan in plans
        for step in plan
    ), plans


@pytest.mark.parametrize(
    "where",
    [
        DeviceFilter(exclude_distributors=("dustin",)),
        DeviceFilter(exclude_distributors=("dustin", "ELKJØP"), distributor="a"),
    ],
    ids=["one", "two-and-distributor"],
)
def test_left_out_distributors_keep_renewals_and_todo_on_the_index(
    fleet: Store, where: DeviceFilter
) -> None:
    for run in (
        lambda: renewals.renewals_due(fleet, as_of=AS_OF, within_days=30, where=where),
        lambda: renewals.todo_list(fleet, today=AS_OF, where=where),
    ):
        plans = assert_no_scan_of_devices(fleet, run)
        assert any("devices_status_renewal" in step for plan in plans for step in plan), plans


def test_a_search_for_one_users_devices_reads_only_theirs(fleet: Store) -> None:
    # A part of a text is in no index: a search alone reads every device (see the README's
    # Performance); with --user or --status it reads only those.
    where = DeviceFilter(user_email="sn001@example.com", search="sn0")
    plans = assert_no_scan_of_devices(fleet, lambda: inventory.list_devices(fleet, where))
    assert any("devices_user_email" in step for plan in plans for step in plan), plans
    where = DeviceFilter(status="renewal_started", search="sn0", exclude_distributors=("x",))
    plans = assert_no_scan_of_devices(fleet, lambda: inventory.list_devices(fleet, where))
    assert any("devices_status_renewal" in step for plan in plans for step in plan), plans
