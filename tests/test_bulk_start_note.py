"""start and note read files as the bulk commands do: many devices in one run, from a script."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from velory_cli.errors import InvalidInput
from velory_cli.lifecycle import add_notes, parse_note_lines, start_renewals
from velory_cli.store import Store

NOW = "2026-11-05T10:00:00Z"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


def notes_of(store: Store, serial: str) -> list[str]:
    device = store.device(serial)
    assert device is not None
    return [note.text for note in store.notes(device.id)]


# ---- the domain ------------------------------------------------------------------------------


def test_start_renewals_handles_each_device_on_its_own(store: Store) -> None:
    add_device(store, "A1")
    add_device(store, "B1", status="renewal_started")
    add_device(store, "D1", distributor="Dustin AB")
    dry = start_renewals(store, ["A1", "b1", "D1", "ZZ9", "a1"], now=NOW, actor="ann", dry_run=True)
    assert (dry.succeeded, dry.unchanged, dry.failed) == (1, 1, 2)
    assert store.device("A1").status == "active"  # type: ignore[union-attr]
    report = start_renewals(store, ["A1", "b1", "D1", "ZZ9", "a1"], now=NOW, actor="ann")
    assert [(r.serial, r.ok, r.changed) for r in report.results] == [
        ("A1", True, True),
        ("B1", True, False),
        ("D1", False, False),
        ("ZZ9", False, False),
    ]
    assert store.device("A1").status == "renewal_started"  # type: ignore[union-attr]


def test_note_lines_are_serial_tab_text() -> None:
    text = "# from the inventory\n\nA1\tCharger missing # not a comment\nB1 \t Screen\tcracked \r\n"
    assert parse_note_lines(text, "notes.tsv") == [
        ("A1", "Charger missing # not a comment"),
        ("B1", "Screen\tcracked"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A1\tok\nB1 no tab here\n", "notes.tsv line 2: no tab between the serial and the note"),
        ("\n\nA1\t  \n", "notes.tsv line 3: the note for A1 is empty"),
        ("\tlost\n", "notes.tsv line 1: the serial is empty"),
        ("A1\tbad \x1b[2J\n", "notes.tsv line 1: the note holds a control character"),
    ],
)
def test_a_bad_line_is_named_by_its_number(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_note_lines(text, "notes.tsv")


def test_add_notes_adds_each_once_and_a_rerun_is_unchanged(store: Store) -> None:
    add_device(store, "A1", status="removed")
    add_device(store, "B1")
    lines = [("a1", "Wiped"), ("B1", "Dent"), ("A1", "Wiped"), ("B1", "Sticker"), ("ZZ9", "x")]
    report = add_notes(store, lines, now=NOW, actor="ann")
    assert (report.succeeded, report.unchanged, report.failed) == (3, 0, 1)
    assert notes_of(store, "A1") == ["Wiped"]
    assert notes_of(store, "B1") == ["Dent", "Sticker"]
    device = store.device("B1")
    assert device is not None
    assert [e.action for e in store.history(device.id)][-2:] == ["note", "note"]
    again = add_notes(store, [("A1", "Wiped"), ("B1", "Sticker")], now=NOW, actor="ann")
    assert (again.succeeded, again.unchanged) == (0, 2)
    assert notes_of(store, "B1") == ["Dent", "Sticker"]


def test_a_dry_run_adds_no_note(store: Store) -> None:
    add_device(store, "A1")
    report = add_notes(store, [("A1", "Wiped")], now=NOW, actor="ann", dry_run=True)
    assert (report.dry_run, report.succeeded) == (True, 1)
    assert notes_of(store, "A1") == []


# ---- the commands ----------------------------------------------------------------------------


def test_start_from_stdin_and_arguments(invoke: Invoke, home: Path) -> None:
    with Store.open(home / "velory.db") as opened:
        for serial in ("A1", "B1", "C1"):
            add_device(opened, serial)
    result = invoke(["start", "C1", "--file", "-", "--json"], input="A1\n# none\nb1  # Bo\n")
    assert result.exit_code == 0, result.output
    assert result.exception is None
    data = json_out(result)
    assert [r["serial"] for r in data["results"]] == ["C1", "A1", "B1"]
    assert data["succeeded"] == 3
    one = invoke(["start", "A1"])
    assert one.exit_code == 0, one.output
    assert one.stdout == "A1: unchanged (Active – pending return)\n"
    dry = invoke(["start", "--file", "-", "--dry-run"], input="ZZ9\n")
    assert dry.exit_code == 1
    assert "ZZ9: no such device" in dry.stderr
    assert invoke(["start"]).exit_code == 2


def test_note_from_a_file_of_lines_and_for_a_list(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "A1")
        add_device(opened, "B1")
    lines = tmp_path / "notes.tsv"
    lines.write_text("A1\tCharger missing\nB1\tScreen cracked\n", encoding="utf-8")
    result = invoke(["--actor", "eva", "note", "--file", str(lines), "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert json_out(result)["succeeded"] == 2
    again = invoke(["note", "--file", str(lines)])
    assert again.exit_code == 0, again.output
    assert "0 noted, 2 unchanged, 0 refused." in again.stderr
    listed = invoke(["note", "--file", "-", "Lost in the move"], input="A1\nB1\n")
    assert listed.exit_code == 0, listed.output
    same = invoke(["note", "--file", "-", "--note", "Found"], input="B1\n")
    assert same.exit_code == 0, same.output
    shown = json_out(invoke(["show", "B1", "--json"]))
    assert [(n["actor"], n["text"]) for n in shown["notes"]] == [
        ("eva", "Screen cracked"),
        ("tester", "Lost in the move"),
        ("tester", "Found"),
    ]


def test_a_bad_line_writes_nothing_and_exits_65(invoke: Invoke, home: Path, tmp_path: Path) -> None:
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "A1")
    lines = tmp_path / "notes.tsv"
    lines.write_text("A1\tCharger missing\nA1 Screen cracked\n", encoding="utf-8")
    result = invoke(["note", "--file", str(lines), "--json"])
    assert result.exit_code == 65
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {lines} line 2: no tab between")
    assert json_out(invoke(["show", "A1", "--json"]))["notes"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["note", "A1"],
        ["note", "A1", "x", "--note", "y"],
        ["note", "--file", "-", "A1", "x"],
        ["note", "--file", "-", "x", "--note", "y"],
        ["note", "A1", "x", "--dry-run"],
        ["note", "--file", "-", " "],
    ],
)
def test_note_usage_errors(invoke: Invoke, home: Path, args: list[str]) -> None:
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "A1")
    result = invoke(args, input="A1\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert json_out(invoke(["show", "A1", "--json"]))["notes"] == []


def test_note_serial_text_works_as_before(invoke: Invoke, home: Path) -> None:
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "A1")
    result = invoke(["note", "a1", "Charger missing"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "A1: noted (Active)\n"


def test_a_note_held_earlier_is_not_added_again_after_another(store: Store) -> None:
    from velory_cli.lifecycle import confirm_returns

    add_device(store, "A1", status="return_confirmed", outcome="returned")
    confirm_returns(store, ["A1"], now=NOW, actor="ann", note="Returned in person")
    add_notes(store, [("A1", "Charger kept")], now=NOW, actor="ann")
    again = confirm_returns(store, ["A1"], now=NOW, actor="ann", note="Returned in person")
    assert again.messages == []
    assert add_notes(store, [("A1", "Returned in person")], now=NOW, actor="ann").unchanged == 1
    assert notes_of(store, "A1") == ["Returned in person", "Charger kept"]
