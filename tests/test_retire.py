"""velory retire: a lost, stolen or broken device leaves the assets without the return flow, and
reinstate brings it back to where it was."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from tests.fixtures import make_stores
from tests.mdm_exports import intune_csv
from velory_cli import lifecycle
from velory_cli.errors import UsageError
from velory_cli.lifecycle import reinstate_device, retire_devices
from velory_cli.store import Store

NOW = "2026-12-01T10:00:00Z"
LATER = "2026-12-03T09:00:00Z"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


def retire(
    store: Store, *serials: str, outcome: str = "lost", note: str = "Lost on the train"
) -> lifecycle.ActionReport:
    return retire_devices(store, serials, outcome=outcome, note=note, now=NOW, actor="ann")


def state(store: Store, serial: str) -> tuple[str, str | None]:
    device = store.device(serial)
    assert device is not None
    return device.status, device.outcome


# ---- the domain ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "fields"),
    [
        ("active", None, {}),
        ("active", None, {"distributor": "Dustin Sverige AB"}),
        ("active", None, {"source": "store", "distributor": "Velory"}),
        ("renewal_started", None, {"ordered_model": "X", "ordered_at": NOW}),
        ("return_confirmed", "bought_out", {}),
    ],
)
def test_any_device_not_removed_is_retired_and_reinstated_to_where_it_was(
    store: Store, status: str, outcome: str | None, fields: dict[str, str]
) -> None:
    add_device(store, "A1", status=status, outcome=outcome, **fields)
    report = retire(store, " a1 ", outcome="stolen", note="Police report 4471")
    assert (report.succeeded, report.failed) == (1, 0)
    assert report.results[0].to_dict()["outcome"] == "stolen"
    assert state(store, "A1") == ("removed", "stolen")
    device = store.device("A1")
    assert device is not None
    entry = store.history(device.id)[-1]
    assert (entry.action, entry.actor, entry.from_status, entry.to_status) == (
        "retire",
        "ann",
        status,
        "removed",
    )
    assert entry.details == {"outcome": "stolen", "note": "Police report 4471"}
    assert [note.text for note in store.notes(device.id)] == ["Police report 4471"]
    assert [d.serial for d in store.devices()] == []

    back = reinstate_device(store, "A1", "found in the office", now=LATER, actor="bo")
    assert (back.succeeded, back.results[0].status) == (1, status)
    assert state(store, "A1") == (status, outcome)
    device = store.device("A1")
    assert device is not None
    assert (device.retired_from, device.retired_from_outcome) == (None, None)
    assert [d.serial for d in store.devices()] == ["A1"]
    # The same reinstate again (a script run twice) is unchanged, not refused.
    again = reinstate_device(store, "A1", "found in the office", now=LATER, actor="bo")
    assert (again.succeeded, again.unchanged, again.failed) == (0, 1, 0)
    assert state(store, "A1") == (status, outcome)
    assert [e.action for e in store.history(device.id)][-2:] == ["retire", "reinstate"]


def test_a_released_device_is_still_reinstated_to_return_confirmed(store: Store) -> None:
    add_device(store, "R1", status="return_confirmed", outcome="returned")
    lifecycle.release_devices(store, ["R1"], now=NOW, actor="ann")
    reinstate_device(store, "R1", "released by mistake", now=LATER, actor="ann")
    assert state(store, "R1") == ("return_confirmed", "returned")


def test_retire_again_with_the_same_outcome_is_unchanged_with_another_refused(
    store: Store,
) -> None:
    add_device(store, "A1")
    retire(store, "A1")
    device = store.device("A1")
    assert device is not None
    history = store.history(device.id)
    again = retire(store, "A1")
    assert (again.succeeded, again.unchanged, again.failed) == (0, 1, 0)
    assert store.history(device.id) == history  # the same note is the latest: not added twice
    other = retire(store, "A1", outcome="broken")
    assert other.failed == 1
    assert other.results[0].error == (
        "A1 is removed: it was already retired as lost; run velory reinstate first to retire "
        "it otherwise, or add a note"
    )
    assert state(store, "A1") == ("removed", "lost")


def test_retire_refuses_a_released_device(store: Store) -> None:
    add_device(store, "R1", status="removed", outcome="returned")
    report = retire(store, "R1")
    assert report.failed == 1
    assert report.results[0].error == (
        "R1 is removed: retire needs active or renewal_started or return_confirmed; "
        "run velory reinstate first"
    )
    assert state(store, "R1") == ("removed", "returned")


def test_retire_goes_on_past_unknown_serials_and_a_dry_run_changes_nothing(
    store: Store,
) -> None:
    add_device(store, "A1")
    add_device(store, "B1")
    dry = retire_devices(
        store, ["A1", "ZZ9", "b1", "B1"], outcome="lost", note="n", now=NOW, actor="a", dry_run=True
    )
    assert (dry.dry_run, dry.succeeded, dry.failed) == (True, 2, 1)
    assert [r.serial for r in dry.results] == ["A1", "ZZ9", "B1"]  # as the store spells it
    assert state(store, "A1") == ("active", None)
    report = retire(store, "A1", "ZZ9", "B1")
    assert (report.succeeded, report.failed) == (2, 1)
    assert report.results[1].error == "ZZ9: no such device"


@pytest.mark.parametrize(
    ("outcome", "note", "message"),
    [
        ("gone", "n", "use one of lost, stolen, broken, other"),
        ("lost", "  ", "--note is empty"),
        ("lost", "bad \x1b[31m", "control character"),
    ],
)
def test_retire_needs_a_known_outcome_and_a_note(
    store: Store, outcome: str, note: str, message: str
) -> None:
    add_device(store, "A1")
    with pytest.raises(UsageError, match=message):
        retire(store, "A1", outcome=outcome, note=note)
    assert state(store, "A1") == ("active", None)


def test_retired_devices_read_well_in_tables() -> None:
    assert lifecycle.status_label("removed", "lost") == "Removed – lost"
    assert lifecycle.status_label("removed", "stolen") == "Removed – stolen"
    assert lifecycle.status_label("removed", "broken") == "Removed – broken"
    assert lifecycle.status_label("removed", "other") == "Removed – retired"
    assert lifecycle.status_label("removed", "returned") == "Removed"


def test_retire_is_never_a_hint_on_the_way_elsewhere(store: Store) -> None:
    add_device(store, "A1")
    device = store.device("A1")
    assert device is not None
    reason = lifecycle.refusal(device, "release") or ""
    assert "retire" not in reason and "reinstate" not in reason


def test_a_pending_notice_of_a_retired_device_is_cancelled(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    with Store.open(home / "velory.db") as opened:
        device_id = add_device(opened, "A1", renewal_date="2026-12-10")
        with opened.transaction():
            opened.queue_notice(
                device_id,
                kind="renewal",
                renewal_date="2026-12-10",
                recipient="a1@example.com",
                at=NOW,
            )
        retire(opened, "A1")
    outbox = tmp_path / "outbox"
    sent = invoke(["notices", "send", "--as-of", "2026-12-01", "--outbox", str(outbox), "--json"])
    assert sent.exit_code == 0, sent.output
    data = json_out(sent)
    assert (data["sent"], data["cancelled"]) == (0, 1)
    assert data["notices"][0]["error"] == "the device was removed"


# ---- the MDM ---------------------------------------------------------------------------------


def test_a_device_still_in_the_mdm_is_retired_with_a_warning(invoke: Invoke, home: Path) -> None:
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "PF1")
        add_device(opened, "PF2")
    enrolled = [{"serial": "PF1", "check_in": "2026-11-30T08:00:00Z"}]
    export = intune_csv(home / "intune.csv", enrolled)
    imported = invoke(["mdm", "import", str(export)])
    assert imported.exit_code == 0, imported.output
    result = invoke(["retire", "PF1", "PF2", "--outcome", "stolen", "--note", "Break-in", "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert json_out(result)["succeeded"] == 2
    warnings = [line for line in result.stderr.splitlines() if "PF1" in line]
    assert len(warnings) == 1
    assert "still in" in warnings[0] and "wipe it or remove it from the MDM" in warnings[0]
    assert "PF2" not in result.stderr
    shown = json_out(invoke(["show", "PF1", "--json"]))
    assert shown["history"][-1]["details"]["mdm"]
    assert shown["outcome"] == "stolen"
    check = invoke(["mdm", "check", "--json"])
    assert check.exit_code == 1
    assert "released_but_enrolled" in check.stdout


# ---- the command -----------------------------------------------------------------------------


def test_retire_command_from_a_file_json_and_exit_codes(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "A1")
        add_device(opened, "D1", distributor="Dustin")
    listed = tmp_path / "lost.txt"
    listed.write_text("# lost in the move\nA1\nd1  # Dustin's\nZZ9\n")
    result = invoke(
        ["retire", "--file", str(listed), "--outcome", "lost", "--note", "Move", "--json"]
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # the refusal's exit, not a crash
    data = json_out(result)
    assert (data["action"], data["dry_run"]) == ("retire", False)
    assert (data["succeeded"], data["unchanged"], data["failed"]) == (2, 0, 1)
    assert data["results"][0] == {
        "serial": "A1",
        "ok": True,
        "changed": True,
        "status": "removed",
        "error": None,
        "outcome": "lost",
    }
    assert result.stderr.splitlines() == ["error: ZZ9: no such device"]
    table = invoke(["retire", "A1", "--outcome", "lost", "--note", "Move"])
    assert table.exit_code == 0, table.output
    assert table.stdout == "A1: unchanged (Removed – lost)\n"
    shown = invoke(["show", "A1"])
    assert "Removed – lost" in shown.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["retire", "A1", "--note", "x"],
        ["retire", "A1", "--outcome", "lost"],
        ["retire", "A1", "--outcome", "misplaced", "--note", "x"],
        ["retire", "A1", "--outcome", "lost", "--note", " "],
    ],
)
def test_retire_without_a_known_outcome_or_a_note_is_a_usage_error(
    invoke: Invoke, home: Path, args: list[str]
) -> None:
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "A1")
    result = invoke(args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert json_out(invoke(["show", "A1", "--json"]))["status"] == "active"


def test_retire_asks_at_a_terminal_and_declined_retires_nothing(
    invoke: Invoke, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velory_cli.commands import lifecycle as commands

    monkeypatch.setattr(commands, "_interactive", lambda: True)
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "A1")
    declined = invoke(["retire", "A1", "--outcome", "broken", "--note", "Dropped"], input="n\n")
    assert declined.exit_code == 1
    assert "Retire A1 as broken? [y/N]" in declined.stderr
    assert "Nothing retired." in declined.stderr
    assert json_out(invoke(["show", "A1", "--json"]))["status"] == "active"
    confirmed = invoke(["retire", "A1", "--outcome", "broken", "--note", "Dropped"], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert json_out(invoke(["show", "A1", "--json"]))["outcome"] == "broken"


# ---- the schema step -------------------------------------------------------------------------


def test_the_upgrade_keeps_every_row_index_and_trigger_and_takes_the_new_outcomes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "velory.db"
    shutil.copy(make_stores.fixture_path(5), path)

    def snapshot() -> tuple[list[tuple[object, ...]], ...]:
        conn = sqlite3.connect(path)
        try:
            tables = [
                conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
                for table in ("devices", "history", "notes", "notices", "imports")
            ]
            schema = conn.execute(
                "SELECT type, name FROM sqlite_master WHERE tbl_name = 'devices' ORDER BY name"
            ).fetchall()
        finally:
            conn.close()
        return (*tables, schema)

    before = snapshot()
    with Store.open(path) as opened:
        assert opened.schema_version() >= 6
        assert opened.foreign_key_problems() == []
        assert opened.integrity_problems() == []
        assert opened.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    after = snapshot()
    # Every device as it was, with the two new columns empty; everything else the same.
    assert [row[:-2] for row in after[0]] == before[0]
    assert {row[-2:] for row in after[0]} == {(None, None)}
    assert after[1:] == before[1:]
    with Store.open(path) as opened:
        add = retire_devices(opened, ["OLD-ACTIVE"], outcome="other", note="n", now=NOW, actor="a")
        assert add.succeeded == 1
        assert state(opened, "OLD-ACTIVE") == ("removed", "other")
        # The history and notes still point at the rebuilt devices table.
        with pytest.raises(sqlite3.IntegrityError):
            opened.add_note(999_999, at=NOW, actor="a", text="no such device")
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE devices SET outcome = 'misplaced' WHERE id = 1")
    finally:
        conn.close()
