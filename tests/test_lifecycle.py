"""The lifecycle: one table of transitions, and the actions that follow it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.factory import add_device
from velory_cli import lifecycle, models
from velory_cli.errors import ConfigError, UsageError
from velory_cli.lifecycle import (
    TRANSITIONS,
    add_note,
    change_status,
    confirm_returns,
    deliver_replacement,
    order_replacement,
    parse_serial_list,
    release_devices,
    start_renewal,
    unique_serials,
)
from velory_cli.store import Store

NOW = "2026-05-04T09:30:00Z"
LATER = "2026-05-20T14:00:00Z"
TODAY = date(2026, 5, 20)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


def status_of(store: Store, serial: str) -> str:
    device = store.device(serial)
    assert device is not None
    return device.status


def history_actions(store: Store, serial: str) -> list[str]:
    device = store.device(serial)
    assert device is not None
    return [entry.action for entry in store.history(device.id)]


class CountingConnection:
    """A connection that counts the statements sent through it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.executed: list[str] = []
        self.executed_many: list[str] = []

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.executed.append(sql)
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.executed_many.append(sql)
        return self.conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def started(store: Store, serial: str, **fields: object) -> None:
    add_device(store, serial, **fields)
    assert start_renewal(store, serial, now=NOW, actor="ann").succeeded == 1


# ---- the table ---------------------------------------------------------------------------


def test_the_table_moves_statuses_one_way_only() -> None:
    moves = {
        action: (transition.sources, transition.target)
        for action, transition in TRANSITIONS.items()
        if transition.target is not None
    }
    assert moves["start"] == (("active",), "renewal_started")
    assert moves["confirm-return"] == (("renewal_started",), "return_confirmed")
    assert moves["release"] == (("return_confirmed",), "removed")
    # Nothing leads back to active or to renewal_started once a device has moved on.
    assert all(
        target not in ("active", "renewal_started") or action == "start"
        for action, (_, target) in moves.items()
    )


def test_actions_that_keep_the_status_say_where_they_may_run() -> None:
    assert TRANSITIONS["order"].sources == ("renewal_started",)
    assert TRANSITIONS["order"].target is None
    assert TRANSITIONS["deliver"].sources == ("renewal_started", "return_confirmed")
    assert TRANSITIONS["note"].sources == models.DEVICE_STATUSES


def test_labels_read_as_velorys_screens() -> None:
    assert lifecycle.status_label("renewal_started") == "Active – pending return"
    assert lifecycle.status_label("return_confirmed", "bought_out") == "Bought out"
    assert lifecycle.status_label("return_confirmed", "returned") == "Return confirmed"
    assert lifecycle.status_label("removed") == "Removed"


@pytest.mark.parametrize(
    ("action", "status"),
    [
        (action, status)
        for action, transition in TRANSITIONS.items()
        for status in models.DEVICE_STATUSES
        if status not in transition.sources
    ],
)
def test_no_hint_goes_through_a_release(store: Store, action: str, status: str) -> None:
    """A release takes a device out of every company system: never a way to get somewhere."""
    add_device(store, "H1", status=status)
    device = store.device("H1")
    assert device is not None
    reason = lifecycle.refusal(device, action)
    assert reason is not None
    assert reason.startswith(f"H1 is {status}: {action} needs ")
    assert "velory release" not in reason


@pytest.mark.parametrize("status", ["active", "renewal_started"])
def test_reinstate_says_only_a_released_device_can_be_reinstated(store: Store, status: str) -> None:
    add_device(store, "H1", status=status)
    device = store.device("H1")
    assert device is not None
    assert lifecycle.refusal(device, "reinstate") == (
        f"H1 is {status}: reinstate needs removed; "
        "only a released or retired device can be reinstated"
    )


# ---- start ---------------------------------------------------------------------------------


def test_start_moves_an_active_device_and_records_it(store: Store) -> None:
    add_device(store, "S1")
    report = start_renewal(store, " s1 ", now=NOW, actor="ann")
    assert report.to_dict() == {
        "action": "start",
        "dry_run": False,
        "succeeded": 1,
        "unchanged": 0,
        "failed": 0,
        "results": [
            {
                "serial": "S1",
                "ok": True,
                "changed": True,
                "status": "renewal_started",
                "error": None,
                "outcome": None,
            }
        ],
    }
    device = store.device("S1")
    assert device is not None
    assert device.status == "renewal_started"
    assert device.status_changed_at == NOW
    last = store.history(device.id)[-1].to_dict()
    assert last == {
        "at": NOW,
        "actor": "ann",
        "action": "start",
        "from_status": "active",
        "to_status": "renewal_started",
        "details": None,
    }


def test_start_on_a_started_device_is_unchanged(store: Store) -> None:
    started(store, "S1")
    report = start_renewal(store, "S1", now=LATER, actor="bo")
    assert (report.succeeded, report.unchanged, report.failed) == (0, 1, 0)
    assert report.results[0].ok is True
    assert report.results[0].changed is False
    assert history_actions(store, "S1") == ["import", "start"]


@pytest.mark.parametrize("distributor", ["Dustin", "DUSTIN AB", "Dustin Sverige AB"])
def test_start_refuses_dustins_devices(store: Store, distributor: str) -> None:
    add_device(store, "D1", distributor=distributor)
    report = start_renewal(store, "D1", now=NOW, actor="ann")
    result = report.results[0]
    assert (result.ok, result.changed, result.status) == (False, False, "active")
    assert result.error is not None
    assert result.error.startswith("D1 is active: ")
    assert "Dustin's own process" in result.error
    assert status_of(store, "D1") == "active"
    assert history_actions(store, "D1") == ["import"]


def test_a_distributor_merely_containing_the_letters_is_not_dustin(store: Store) -> None:
    add_device(store, "D2", distributor="Adustinia Ltd")
    assert start_renewal(store, "D2", now=NOW, actor="ann").succeeded == 1


def test_start_refuses_store_devices(store: Store) -> None:
    add_device(store, "V1", source="store", distributor="Velory")
    result = start_renewal(store, "V1", now=NOW, actor="ann").results[0]
    assert result.ok is False
    assert result.error is not None
    assert "renews through Velory's normal process" in result.error
    assert status_of(store, "V1") == "active"


def test_start_refuses_a_device_past_it(store: Store) -> None:
    add_device(store, "R1", status="return_confirmed")
    result = start_renewal(store, "R1", now=NOW, actor="ann").results[0]
    assert result.error == (
        "R1 is return_confirmed: start needs active; "
        "a return_confirmed device does not go back there"
    )


def test_an_unknown_serial_is_refused(store: Store) -> None:
    report = start_renewal(store, " nope ", now=NOW, actor="ann")
    assert report.to_dict()["results"] == [
        {
            "serial": "nope",
            "ok": False,
            "changed": False,
            "status": None,
            "error": "nope: no such device",
            "outcome": None,
        }
    ]
    assert report.failed == 1


# ---- confirm-return and release ------------------------------------------------------------


def test_confirm_return_records_outcome_and_note(store: Store) -> None:
    started(store, "C1")
    report = confirm_returns(
        store, ["C1"], now=LATER, actor="bo", bought_out=True, note="  kept by the user "
    )
    assert report.succeeded == 1
    device = store.device("C1")
    assert device is not None
    assert (device.status, device.outcome) == ("return_confirmed", "bought_out")
    assert [note.to_dict() for note in store.notes(device.id)] == [
        {"at": LATER, "actor": "bo", "text": "kept by the user"}
    ]
    last = store.history(device.id)[-1]
    assert (last.action, last.from_status, last.to_status) == (
        "confirm-return",
        "renewal_started",
        "return_confirmed",
    )
    assert last.details == {"outcome": "bought_out", "note": "kept by the user"}


def test_confirm_return_again_is_unchanged_and_adds_no_note(store: Store) -> None:
    started(store, "C1")
    confirm_returns(store, ["C1"], now=LATER, actor="bo", note="returned to Atea")
    again = confirm_returns(store, ["C1"], now=LATER, actor="bo", note="returned to Atea")
    assert (again.succeeded, again.unchanged, again.failed) == (0, 1, 0)
    device = store.device("C1")
    assert device is not None
    assert len(store.notes(device.id)) == 1
    assert device.outcome == "returned"


def test_confirming_with_another_outcome_is_refused(store: Store) -> None:
    started(store, "C1")
    confirm_returns(store, ["C1"], now=LATER, actor="bo")
    report = confirm_returns(store, ["C1"], now=LATER, actor="bo", bought_out=True)
    assert report.failed == 1
    assert report.results[0].error == (
        "C1 is return_confirmed: it was already confirmed as returned; "
        "add a note to record otherwise"
    )
    device = store.device("C1")
    assert device is not None
    assert device.outcome == "returned"


def test_results_carry_the_outcome(store: Store) -> None:
    started(store, "C1")
    add_device(store, "C2", status="return_confirmed", outcome="returned")
    changed = confirm_returns(store, ["C1"], now=LATER, actor="bo", bought_out=True)
    assert changed.results[0].outcome == "bought_out"
    assert changed.to_dict()["results"][0]["outcome"] == "bought_out"
    unchanged = confirm_returns(store, ["c1"], now=LATER, actor="bo", bought_out=True)
    assert (unchanged.unchanged, unchanged.results[0].outcome) == (1, "bought_out")
    refused = confirm_returns(store, ["C2"], now=LATER, actor="bo", bought_out=True)
    assert (refused.failed, refused.results[0].outcome) == (1, "returned")
    released = release_devices(store, ["C1"], now=LATER, actor="bo")
    assert (released.results[0].status, released.results[0].outcome) == ("removed", "bought_out")
    assert start_renewal(store, "nope", now=LATER, actor="bo").results[0].outcome is None


def notes_of(store: Store, serial: str) -> list[str]:
    device = store.device(serial)
    assert device is not None
    return [note.text for note in store.notes(device.id)]


def test_a_new_note_on_an_unchanged_confirmation_is_kept_once(store: Store) -> None:
    started(store, "C1")
    confirm_returns(store, ["C1"], now=NOW, actor="bo")
    again = confirm_returns(store, ["c1"], now=LATER, actor="eva", note=" invoice 4471 ")
    assert (again.succeeded, again.unchanged, again.failed) == (0, 1, 0)
    assert again.messages == ["C1 was already return_confirmed: the note was added to its notes."]
    assert notes_of(store, "C1") == ["invoice 4471"]
    device = store.device("C1")
    assert device is not None
    last = store.history(device.id)[-1]
    assert (last.action, last.actor, last.from_status, last.to_status, last.details) == (
        "note",
        "eva",
        "return_confirmed",
        "return_confirmed",
        {"note": "invoice 4471"},
    )
    # The script run once more: the note is there already, and nothing is said.
    entries = len(store.history(device.id))
    third = confirm_returns(store, ["C1"], now=LATER, actor="eva", note="invoice 4471")
    assert third.messages == []
    assert notes_of(store, "C1") == ["invoice 4471"]
    assert len(store.history(device.id)) == entries


def test_an_unchanged_confirmation_in_bulk_keeps_the_note_and_a_dry_run_only_says_so(
    store: Store,
) -> None:
    for serial in ("B1", "B2", "B3"):
        started(store, serial)
    confirm_returns(store, ["B1", "B2"], now=NOW, actor="bo")
    confirm_returns(store, ["B2"], now=NOW, actor="bo", note="pallet 7")  # B2 has it already
    dry = confirm_returns(
        store, ["B1", "B2", "B3"], now=LATER, actor="bo", note="pallet 7", dry_run=True
    )
    assert dry.messages == [
        "B1 was already return_confirmed: the note would be added to its notes."
    ]
    assert notes_of(store, "B1") == []
    report = confirm_returns(
        store, ["B1", "B2", "B3", "C9"], now=LATER, actor="bo", note="pallet 7"
    )
    assert (report.succeeded, report.unchanged, report.failed) == (1, 2, 1)
    assert report.messages == ["B1 was already return_confirmed: the note was added to its notes."]
    assert [notes_of(store, s) for s in ("B1", "B2", "B3")] == [["pallet 7"]] * 3
    started(store, "B4")
    started(store, "B5")
    confirm_returns(store, ["B4", "B5"], now=LATER, actor="bo")
    many = confirm_returns(store, ["B4", "B5"], now=LATER, actor="bo", note="pallet 8")
    assert many.messages == [
        "2 devices were already return_confirmed: the note was added to their notes."
    ]


def test_confirm_return_before_start_names_what_is_needed(store: Store) -> None:
    add_device(store, "C2")
    result = confirm_returns(store, ["C2"], now=NOW, actor="bo").results[0]
    assert (
        result.error == "C2 is active: confirm-return needs renewal_started; run velory start first"
    )


def test_release_hints_the_whole_way(store: Store) -> None:
    add_device(store, "A1")
    started(store, "B1")
    report = release_devices(store, ["A1", "B1"], now=NOW, actor="bo")
    assert [r.error for r in report.results] == [
        "A1 is active: release needs return_confirmed; "
        "run velory start, then velory confirm-return first",
        "B1 is renewal_started: release needs return_confirmed; run velory confirm-return first",
    ]


def test_release_of_a_dustin_device_needs_its_return_confirmed_not_started(store: Store) -> None:
    add_device(store, "D1", distributor="Dustin AB")
    error = release_devices(store, ["D1"], now=NOW, actor="bo").results[0].error
    assert error == (
        "D1 is active: release needs return_confirmed; run velory confirm-return first"
    )


# ---- Dustin's devices leave through the same door ----------------------------------------


@pytest.mark.parametrize("distributor", ["Dustin", "DUSTIN AB", "Dustin Sverige AB"])
def test_a_dustin_device_is_confirmed_straight_from_active_then_released(
    store: Store, distributor: str
) -> None:
    add_device(store, "D1", distributor=distributor)
    confirmed = confirm_returns(store, ["d1"], now=NOW, actor="ann", bought_out=True, note="Inv 9")
    assert (confirmed.succeeded, confirmed.failed) == (1, 0)
    device = store.device("D1")
    assert device is not None
    assert (device.status, device.outcome) == ("return_confirmed", "bought_out")
    entry = store.history(device.id)[-1]
    assert (entry.action, entry.actor, entry.from_status, entry.to_status) == (
        "confirm-return",
        "ann",
        "active",
        "return_confirmed",
    )
    assert [note.text for note in store.notes(device.id)] == ["Inv 9"]
    assert release_devices(store, ["D1"], now=LATER, actor="ann").succeeded == 1
    assert status_of(store, "D1") == "removed"
    again = confirm_returns(store, ["D1"], now=LATER, actor="ann", bought_out=True)
    assert (again.unchanged, again.failed) == (1, 0)


def test_only_dustins_devices_skip_the_start(store: Store) -> None:
    add_device(store, "A1", distributor="Atea")
    add_device(store, "S1", distributor="Velory", source="store")
    report = confirm_returns(store, ["A1", "S1"], now=NOW, actor="ann")
    assert [r.error for r in report.results] == [
        "A1 is active: confirm-return needs renewal_started; run velory start first",
        "S1 is active: confirm-return needs renewal_started; it came from the Velory store "
        "and renews through Velory's normal process; velory does not start it",
    ]
    assert (status_of(store, "A1"), status_of(store, "S1")) == ("active", "active")


def test_a_started_dustin_device_from_before_is_confirmed_as_any_other(store: Store) -> None:
    add_device(store, "D1", distributor="Dustin", status="renewal_started")
    assert confirm_returns(store, ["D1"], now=NOW, actor="ann").succeeded == 1


def test_release_goes_on_past_refused_devices(store: Store) -> None:
    add_device(store, "A1")
    add_device(store, "R1", status="return_confirmed", outcome="returned")
    add_device(store, "R2", status="return_confirmed", outcome="bought_out")
    add_device(store, "X1", status="removed")
    report = release_devices(store, ["R1", "a1", "ghost", "r2", "X1", "R1 "], now=NOW, actor="bo")
    assert [(r.serial, r.ok, r.changed, r.status) for r in report.results] == [
        ("R1", True, True, "removed"),
        ("A1", False, False, "active"),
        ("ghost", False, False, None),
        ("R2", True, True, "removed"),
        ("X1", True, False, "removed"),
    ]
    assert (report.succeeded, report.unchanged, report.failed) == (2, 1, 2)
    assert status_of(store, "R1") == "removed"
    r2 = store.device("R2")
    assert r2 is not None
    assert r2.outcome == "bought_out"
    assert status_of(store, "A1") == "active"
    assert history_actions(store, "X1") == ["import"]


def test_dry_run_says_what_would_happen_and_changes_nothing(store: Store) -> None:
    add_device(store, "R1", status="return_confirmed")
    add_device(store, "A1")
    report = release_devices(store, ["R1", "A1"], now=NOW, actor="bo", dry_run=True)
    assert report.dry_run is True
    assert [(r.ok, r.changed, r.status) for r in report.results] == [
        (True, True, "removed"),
        (False, False, "active"),
    ]
    assert status_of(store, "R1") == "return_confirmed"
    assert history_actions(store, "R1") == ["import"]


def test_thousands_of_serials_take_a_handful_of_statements(store: Store) -> None:
    with store.transaction():
        for number in range(3000):
            store.insert_device(
                {
                    "serial": f"BULK{number:05}",
                    "status": "return_confirmed",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            )
    counting = CountingConnection(store.conn)
    store.conn = counting  # type: ignore[assignment]
    serials = [f"bulk{number:05}" for number in range(3000)] + ["missing"]
    report = release_devices(store, serials, now=LATER, actor="bo")
    store.conn = counting.conn
    assert (report.succeeded, report.failed) == (3000, 1)
    # One look-up through the serial keys, one of the MDM snapshots for all the serials, BEGIN
    # and COMMIT, and one executemany each for the devices, the history and the notes: never a
    # statement per device.
    assert len(counting.executed) == 4
    assert len([sql for sql in counting.executed if sql.startswith("SELECT")]) == 2
    assert len(counting.executed_many) == 3
    count = store.conn.execute("SELECT count(*) FROM devices WHERE status = 'removed'")
    assert count.fetchone()[0] == 3000
    history = store.conn.execute("SELECT count(*) FROM history WHERE action = 'release'")
    assert history.fetchone()[0] == 3000


def test_change_status_refuses_actions_that_keep_the_status(store: Store) -> None:
    with pytest.raises(ValueError):
        change_status(store, "note", ["A1"], now=NOW, actor="bo")


# ---- order and deliver ---------------------------------------------------------------------


def test_order_needs_a_started_device(store: Store) -> None:
    add_device(store, "O1")
    result = order_replacement(store, "O1", "MacBook Air", now=NOW, actor="ann").results[0]
    assert result.error == "O1 is active: order needs renewal_started; run velory start first"
    device = store.device("O1")
    assert device is not None
    assert device.ordered_at is None


def test_order_records_the_model_once(store: Store) -> None:
    started(store, "O1")
    report = order_replacement(store, "o1", " MacBook Air ", now=LATER, actor="ann")
    assert report.succeeded == 1
    device = store.device("O1")
    assert device is not None
    assert (device.ordered_model, device.ordered_at, device.status) == (
        "MacBook Air",
        LATER,
        "renewal_started",
    )
    last = store.history(device.id)[-1]
    assert (last.action, last.from_status, last.to_status, last.details) == (
        "order",
        "renewal_started",
        "renewal_started",
        {"model": "MacBook Air"},
    )
    other = order_replacement(store, "O1", "MacBook Pro", now=LATER, actor="ann")
    assert other.failed == 1
    assert other.results[0].error == (
        "O1 is renewal_started: a replacement (MacBook Air) was already ordered on "
        "2026-05-20; one replacement per renewing device"
    )
    assert history_actions(store, "O1") == ["import", "start", "order"]


def test_an_empty_model_is_a_usage_error(store: Store) -> None:
    started(store, "O1")
    with pytest.raises(UsageError):
        order_replacement(store, "O1", "  ", now=NOW, actor="ann")


def deliver(
    store: Store, serial: str, new_serial: str, **options: object
) -> lifecycle.ActionReport:
    values: dict[str, object] = {"today": TODAY, "now": LATER, "actor": "ann", "term_months": 36}
    values.update(options)
    return deliver_replacement(store, serial, new_serial, **values)  # type: ignore[arg-type]


def test_deliver_needs_an_order(store: Store) -> None:
    started(store, "L1")
    report = deliver(store, "L1", "NEW1")
    assert report.results[0].error == (
        "L1 is renewal_started: no replacement was ordered for it; run velory order first"
    )
    assert store.device("NEW1") is None


def test_deliver_creates_the_new_device_linked_both_ways(store: Store) -> None:
    started(store, "L1", user_email="Asa@Example.com", user_name="Åsa", category="Laptop")
    order_replacement(store, "L1", "MacBook Air", now=NOW, actor="ann")
    report = deliver(store, "l1", " NEW1 ")
    assert report.succeeded == 1
    new = store.device("new1")
    assert new is not None
    assert new.to_dict() == {
        "serial": "NEW1",
        "model": "MacBook Air",
        "category": "Laptop",
        "user_email": "Asa@Example.com",
        "user_name": "Åsa",
        "distributor": "Velory",
        "source": "store",
        "purchase_date": "2026-05-20",
        "renewal_date": "2029-05-20",
        "status": "active",
        "outcome": None,
        "replacement_serial": None,
        "replaces_serial": "L1",
    }
    assert report.to_dict()["new_device"] == new.to_dict()
    old = store.device("L1")
    assert old is not None
    assert (old.replacement_serial, old.delivered_at, old.status) == (
        "NEW1",
        LATER,
        "renewal_started",
    )
    assert [(e.action, e.from_status, e.to_status) for e in store.history(new.id)] == [
        ("deliver", None, "active")
    ]
    assert store.history(old.id)[-1].details == {
        "replacement_serial": "NEW1",
        "model": "MacBook Air",
    }
    assert store.notices_for_device(old.id) == [
        {
            "kind": "personal_data",
            "recipient": "Asa@Example.com",
            "renewal_date": "2026-12-01",
            "status": "pending",
            "attempts": 0,
            "sent_at": None,
            "error": None,
            "message_id": None,
        }
    ]
    assert any("Personal data must be moved off L1" in m for m in report.messages)
    assert report.warnings == []


@pytest.mark.parametrize(
    ("bought_out", "reminded"),
    [
        (True, "L1 was bought out and stays with the user: company accounts and data must come"),
        (False, "L1 has been returned already: make sure the personal data on it was moved off"),
    ],
)
def test_a_delivery_after_the_return_reminds_the_admin_in_words_that_fit(
    store: Store, bought_out: bool, reminded: str
) -> None:
    started(store, "L1")
    order_replacement(store, "L1", "MacBook Air", now=NOW, actor="ann")
    confirm_returns(store, ["L1"], now=NOW, actor="ann", bought_out=bought_out)
    report = deliver(store, "L1", "NEW1")
    assert report.succeeded == 1
    assert report.messages[0].startswith(reminded)
    assert not any("before it is returned or bought out" in m for m in report.messages)


def test_deliver_takes_the_model_given_and_the_configured_term(store: Store) -> None:
    started(store, "L1", renewal_date=None)
    order_replacement(store, "L1", "MacBook Air", now=NOW, actor="ann")
    deliver(store, "L1", "NEW1", model="MacBook Pro", today=date(2024, 2, 29), term_months=12)
    new = store.device("NEW1")
    assert new is not None
    assert (new.model, new.purchase_date, new.renewal_date) == (
        "MacBook Pro",
        "2024-02-29",
        "2025-02-28",
    )
    old = store.device("L1")
    assert old is not None
    # No renewal date on the old device: the reminder carries the delivery date.
    assert [n["renewal_date"] for n in store.notices_for_device(old.id)] == ["2024-02-29"]


def test_deliver_without_an_email_queues_nothing_and_warns(store: Store) -> None:
    started(store, "L1", user_email=None)
    order_replacement(store, "L1", "MacBook Air", now=NOW, actor="ann")
    report = deliver(store, "L1", "NEW1")
    assert report.succeeded == 1
    old = store.device("L1")
    assert old is not None
    assert store.notices_for_device(old.id) == []
    assert len(report.warnings) == 1
    assert "no email" in report.warnings[0]


def test_deliver_refuses_a_serial_already_in_the_store(store: Store) -> None:
    started(store, "L1")
    add_device(store, "TAKEN", status="removed")
    order_replacement(store, "L1", "MacBook Air", now=NOW, actor="ann")
    report = deliver(store, "L1", "taken")
    assert report.results[0].error == (
        "L1 is renewal_started: the new serial TAKEN is already in the store (removed); "
        "deliver needs a serial velory does not know yet"
    )
    old = store.device("L1")
    assert old is not None
    assert old.replacement_serial is None
    assert store.notices_for_device(old.id) == []


def test_deliver_twice_is_refused(store: Store) -> None:
    started(store, "L1")
    order_replacement(store, "L1", "MacBook Air", now=NOW, actor="ann")
    deliver(store, "L1", "NEW1")
    report = deliver(store, "L1", "NEW2")
    assert report.results[0].error == (
        "L1 is renewal_started: its replacement NEW1 was already delivered"
    )
    assert store.device("NEW2") is None


def test_deliver_after_the_return_was_confirmed(store: Store) -> None:
    started(store, "L1")
    order_replacement(store, "L1", "MacBook Air", now=NOW, actor="ann")
    confirm_returns(store, ["L1"], now=NOW, actor="ann")
    assert deliver(store, "L1", "NEW1").succeeded == 1


# ---- re-runs: a support script run again, line by line -------------------------------------


def rerun_script(store: Store, serial: str = "L1") -> None:
    """The whole renewal of ``serial``, as a support script runs it."""
    started(store, serial)
    assert order_replacement(store, serial, "MacBook Air", now=NOW, actor="ann").succeeded == 1
    assert deliver(store, serial, "NEW1").succeeded == 1
    assert confirm_returns(store, [serial], now=NOW, actor="ann", bought_out=True).succeeded == 1
    assert release_devices(store, [serial], now=NOW, actor="ann").succeeded == 1


def test_every_line_of_a_finished_script_run_again_is_unchanged(store: Store) -> None:
    rerun_script(store)
    history = history_actions(store, "L1")
    reports = [
        order_replacement(store, "l1", "MacBook Air", now=LATER, actor="bob"),
        deliver(store, "L1", " new1 "),
        confirm_returns(store, ["L1"], now=LATER, actor="bob", bought_out=True),
        release_devices(store, ["L1"], now=LATER, actor="bob"),
    ]
    for report in reports:
        assert (report.succeeded, report.unchanged, report.failed) == (0, 1, 0), report
        assert report.results[0].status == "removed"
    assert history_actions(store, "L1") == history
    assert [device.serial for device in store.devices() if device.serial == "NEW1"] == ["NEW1"]
    new = store.device("NEW1")
    assert new is not None
    # A deliver run again names the device it created the first time, and queues nothing new.
    assert reports[1].to_dict()["new_device"] == new.to_dict()
    old = store.device("L1")
    assert old is not None
    assert len(store.notices_for_device(old.id)) == 1


@pytest.mark.parametrize("status", ["renewal_started", "return_confirmed"])
def test_order_and_deliver_again_are_unchanged_while_the_renewal_goes_on(
    store: Store, status: str
) -> None:
    started(store, "L1")
    order_replacement(store, "L1", "MacBook Air", now=NOW, actor="ann")
    deliver(store, "L1", "NEW1")
    if status == "return_confirmed":
        confirm_returns(store, ["L1"], now=NOW, actor="ann")
    again = order_replacement(store, "L1", "MacBook Air", now=LATER, actor="ann")
    assert (again.unchanged, again.failed, again.results[0].status) == (1, 0, status)
    delivered = deliver(store, "L1", "NEW1")
    assert (delivered.unchanged, delivered.failed) == (1, 0)
    assert delivered.messages == []


def test_a_rerun_with_other_values_is_refused_as_before(store: Store) -> None:
    rerun_script(store)
    other_model = order_replacement(store, "L1", "MacBook Pro", now=LATER, actor="ann")
    assert other_model.results[0].error == (
        "L1 is removed: order needs renewal_started; a removed device does not go back there"
    )
    other_serial = deliver(store, "L1", "NEW2")
    assert other_serial.results[0].error == (
        "L1 is removed: deliver needs renewal_started or return_confirmed; "
        "run velory reinstate first"
    )
    assert store.device("NEW2") is None
    other_outcome = confirm_returns(store, ["L1"], now=LATER, actor="ann")
    assert other_outcome.failed == 1
    assert other_outcome.results[0].error == (
        "L1 is removed: confirm-return needs renewal_started; "
        "a removed device does not go back there"
    )


def test_confirm_return_on_a_device_removed_otherwise_is_refused(store: Store) -> None:
    # Released without an outcome (a store from before outcomes were kept): no confirmation to
    # match, so a confirmation now is not a re-run.
    add_device(store, "R1", status="removed", outcome=None)
    report = confirm_returns(store, ["R1"], now=NOW, actor="ann")
    assert report.failed == 1


def test_the_table_says_what_a_rerun_is() -> None:
    device = models.Device(
        id=1,
        serial="L1",
        model=None,
        category=None,
        user_email=None,
        user_name=None,
        distributor=None,
        source="imported",
        purchase_date=None,
        renewal_date=None,
        status="removed",
        outcome="returned",
        replacement_serial="NEW1",
        replaces_serial=None,
        ordered_model="X",
        ordered_at=NOW,
    )
    assert lifecycle.already_done(device, "order", lifecycle.Asked(model="X"))
    assert not lifecycle.already_done(device, "order", lifecycle.Asked(model="Y"))
    assert lifecycle.already_done(device, "deliver", lifecycle.Asked(new_serial="new1"))
    assert lifecycle.already_done(device, "confirm-return", lifecycle.Asked(outcome="returned"))
    assert not lifecycle.already_done(
        device, "confirm-return", lifecycle.Asked(outcome="bought_out")
    )
    assert lifecycle.already_done(device, "release")
    assert not lifecycle.already_done(device, "start")
    assert not lifecycle.already_done(device, "note")


def test_deliver_refuses_an_empty_serial_and_a_bad_term(store: Store) -> None:
    with pytest.raises(UsageError):
        deliver(store, "L1", "  ")
    with pytest.raises(ConfigError):
        deliver(store, "L1", "NEW1", term_months=0)


@pytest.mark.parametrize("text", ["X\x1b[2J", "X\nY", "X\tY", "X\x00", "X\x9b"])
def test_order_and_deliver_refuse_control_characters(store: Store, text: str) -> None:
    started(store, "L1")
    with pytest.raises(UsageError, match="--model holds a control character"):
        order_replacement(store, "L1", text, now=NOW, actor="ann")
    order_replacement(store, "L1", "MacBook Air", now=NOW, actor="ann")
    with pytest.raises(UsageError, match="--new-serial holds a control character"):
        deliver(store, "L1", text)
    with pytest.raises(UsageError, match="--model holds a control character"):
        deliver(store, "L1", "NEW1", model=text)
    assert store.device("NEW1") is None
    device = store.device("L1")
    assert device is not None
    assert (device.ordered_model, device.replacement_serial) == ("MacBook Air", None)


# ---- notes ---------------------------------------------------------------------------------


def test_note_is_kept_with_its_author_whatever_the_status(store: Store) -> None:
    add_device(store, "N1", status="removed")
    report = add_note(store, "n1", "  [bold]wiped[/bold] by IT ", now=NOW, actor="bo")
    assert report.succeeded == 1
    device = store.device("N1")
    assert device is not None
    assert [n.text for n in store.notes(device.id)] == ["[bold]wiped[/bold] by IT"]
    assert store.history(device.id)[-1].action == "note"
    assert device.status == "removed"


def test_note_refuses_unknown_serials_and_empty_text(store: Store) -> None:
    assert add_note(store, "ghost", "x", now=NOW, actor="bo").failed == 1
    with pytest.raises(UsageError):
        add_note(store, "ghost", "   ", now=NOW, actor="bo")


# ---- serial lists --------------------------------------------------------------------------


def test_serial_lists_skip_blanks_and_comments() -> None:
    text = "# devices back from Atea\r\nA1\r\n\r\n  b2  \n#C3\nD4  # returned Friday\nE#5\n"
    assert parse_serial_list(text) == ["A1", "b2", "D4", "E#5"]


def test_unique_serials_keep_the_first_spelling() -> None:
    assert unique_serials(["A1", " a1", "B2", "", "  ", "b2 ", "C3"]) == ["A1", "B2", "C3"]
