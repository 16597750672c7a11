"""The flow's commands in-process: exit codes, stdout and stderr, each kept apart."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from dateutil.relativedelta import relativedelta

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from velory_cli.commands import due, lifecycle
from velory_cli.commands.common import today_local
from velory_cli.renewals import RENEWAL_KEYS, TODO_KEYS
from velory_cli.store import Store


@pytest.fixture
def db(empty_store: Path) -> Path:
    """The default store of the test's app directory, there and empty."""
    return empty_store


def seed(db: Path, *devices: tuple[str, dict[str, Any]]) -> None:
    with Store.open(db) as store:
        for serial, fields in devices:
            add_device(store, serial, **fields)


def snapshot(db: Path) -> list[tuple[Any, ...]]:
    """Everything the store holds, to show a refused command changed nothing."""
    with Store.open(db) as store:
        rows: list[tuple[Any, ...]] = []
        for table in ("devices", "history", "notes", "notices"):
            rows += [(table, *row) for row in store.conn.execute(f"SELECT * FROM {table}")]
        return rows


def status(db: Path, serial: str) -> str | None:
    with Store.open(db) as store:
        device = store.device(serial)
        return device.status if device else None


# ---- refusals --------------------------------------------------------------------------------

REFUSALS: list[tuple[str, list[str], str]] = [
    ("wrong status", ["release", "ACT"], "ACT is active: release needs return_confirmed"),
    ("removed", ["start", "GONE"], "GONE is removed: start needs active"),
    ("Dustin", ["start", "DUS"], "DUS is active: its distributor is Dustin Sverige AB"),
    ("store device", ["start", "STO"], "renews through Velory's normal process"),
    ("unknown serial", ["start", "NOPE"], "NOPE: no such device"),
    ("order before start", ["order", "ACT", "--model", "X1"], "ACT is active: order needs"),
    ("second order", ["order", "ORD", "--model", "X2"], "ORD is renewal_started: a replacement"),
    ("deliver without order", ["deliver", "STA", "--new-serial", "Z9"], "STA is renewal_started"),
    ("existing new serial", ["deliver", "ORD", "--new-serial", "act"], "already in the store"),
    ("confirm before start", ["confirm-return", "ACT"], "ACT is active: confirm-return needs"),
]


@pytest.mark.parametrize(
    ("args", "message"), [(a, m) for _, a, m in REFUSALS], ids=[n for n, _, _ in REFUSALS]
)
@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_every_refusal_exits_1_changes_nothing_and_says_why(
    invoke: Invoke, db: Path, args: list[str], message: str, as_json: bool
) -> None:
    seed(
        db,
        ("ACT", {}),
        ("GONE", {"status": "removed"}),
        ("DUS", {"distributor": "Dustin Sverige AB"}),
        ("STO", {"source": "store", "distributor": "Velory"}),
        ("STA", {"status": "renewal_started"}),
        (
            "ORD",
            {
                "status": "renewal_started",
                "ordered_model": "MacBook Air",
                "ordered_at": "2026-05-01T00:00:00Z",
            },
        ),
    )
    before = snapshot(db)
    result = invoke([*args, *(["--json"] if as_json else [])])
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert snapshot(db) == before
    if as_json:
        report = json_out(result)
        assert (report["succeeded"], report["unchanged"], report["failed"]) == (0, 0, 1)
        assert report["results"][0]["ok"] is False
        assert message in report["results"][0]["error"]
    else:
        assert "refused" in result.stdout


def test_order_needs_a_model(invoke: Invoke, db: Path) -> None:
    seed(db, ("A1", {"status": "renewal_started"}))
    result = invoke(["order", "A1"])
    assert result.exit_code == 2
    assert result.stdout == ""
    result = invoke(["order", "A1", "--model", "  "])
    assert result.exit_code == 2
    assert "--model is empty" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["start", " "],
        ["order", "", "--model", "M"],
        ["deliver", " ", "--new-serial", "N"],
        ["deliver", "A1", "--new-serial", " "],
        ["note", "", "text"],
    ],
)
def test_a_blank_serial_is_a_usage_error(invoke: Invoke, db: Path, args: list[str]) -> None:
    seed(db, ("A1", {"status": "renewal_started"}))
    result = invoke(args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "empty" in result.stderr


# ---- the actions -----------------------------------------------------------------------------


def test_start_prints_its_result_in_one_line(invoke: Invoke, db: Path) -> None:
    seed(db, ("A1", {}))
    result = invoke(["start", " a1 "])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert result.stdout == "A1: started (Active – pending return)\n"
    assert "1 started, 0 unchanged, 0 refused." in result.stderr
    again = invoke(["start", "A1", "--json"])
    assert again.exit_code == 0, again.output
    assert json_out(again)["unchanged"] == 1
    assert again.stderr == ""


def test_deliver_reminds_about_personal_data(invoke: Invoke, db: Path) -> None:
    seed(
        db,
        (
            "OLD",
            {
                "status": "renewal_started",
                "ordered_model": "MacBook Air",
                "ordered_at": "2026-05-01T00:00:00Z",
            },
        ),
    )
    result = invoke(["deliver", "OLD", "--new-serial", "NEW", "--json"])
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert report["new_device"]["serial"] == "NEW"
    assert report["new_device"]["replaces_serial"] == "OLD"
    assert "Personal data must be moved off OLD or deleted from it" in result.stderr
    assert "old@example.com" in result.stderr


def test_deliver_takes_term_months_from_the_configuration(invoke: Invoke, db: Path) -> None:
    seed(
        db,
        (
            "OLD",
            {
                "status": "renewal_started",
                "ordered_model": "MacBook Air",
                "ordered_at": "2026-05-01T00:00:00Z",
            },
        ),
    )
    result = invoke(
        ["deliver", "OLD", "--new-serial", "NEW", "--json"],
        extra_env={"VELORY_TERM_MONTHS": "24"},
    )
    assert result.exit_code == 0, result.output
    new = json_out(result)["new_device"]
    delivered = date.fromisoformat(new["purchase_date"])
    assert delivered in (today_local(), today_local() - relativedelta(days=1))
    assert new["renewal_date"] == (delivered + relativedelta(months=24)).isoformat()


def test_a_bad_term_months_is_a_configuration_error(invoke: Invoke, db: Path) -> None:
    seed(db, ("OLD", {"status": "renewal_started", "ordered_model": "M", "ordered_at": "t"}))
    result = invoke(
        ["deliver", "OLD", "--new-serial", "NEW"], extra_env={"VELORY_TERM_MONTHS": "three"}
    )
    assert result.exit_code == 78
    assert result.stdout == ""
    assert "term_months" in result.stderr


def test_note_adds_a_note(invoke: Invoke, db: Path) -> None:
    seed(db, ("A1", {}))
    result = invoke(["--actor", "eva", "note", "a1", "[red]charger missing[/red]", "--json"])
    assert result.exit_code == 0, result.output
    assert json_out(result)["succeeded"] == 1
    shown = json_out(invoke(["show", "A1", "--json"]))
    assert [(n["actor"], n["text"]) for n in shown["notes"]] == [
        ("eva", "[red]charger missing[/red]")
    ]
    empty = invoke(["note", "A1", " "])
    assert empty.exit_code == 2
    assert empty.stdout == ""


# ---- bulk ------------------------------------------------------------------------------------


def test_confirm_return_from_a_file(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    seed(db, ("S1", {"status": "renewal_started"}), ("S2", {"status": "renewal_started"}))
    listing = tmp_path / "returned.txt"
    listing.write_text("\ufeff# back from Atea\ns1\n\nS2\ns1\n", encoding="utf-8")
    result = invoke(
        ["confirm-return", "--file", str(listing), "--bought-out", "--note", "kept", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert [r["serial"] for r in report["results"]] == ["S1", "S2"]
    assert report["succeeded"] == 2
    shown = json_out(invoke(["show", "S2", "--json"]))
    assert (shown["status"], shown["outcome"]) == ("return_confirmed", "bought_out")
    assert [n["text"] for n in shown["notes"]] == ["kept"]


def test_every_action_has_its_wording() -> None:
    from velory_cli.lifecycle import TRANSITIONS

    assert set(lifecycle.DONE) == set(TRANSITIONS)


def test_result_tables_word_the_outcome(invoke: Invoke, db: Path) -> None:
    seed(db, ("B1", {"status": "renewal_started"}), ("R1", {"status": "renewal_started"}))
    dry = invoke(["confirm-return", "B1", "--bought-out", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Bought out" in dry.stdout
    result = invoke(["confirm-return", "B1", "--bought-out"])
    assert result.exit_code == 0, result.output
    assert "Bought out" in result.stdout
    assert "Return confirmed" not in result.stdout
    again = invoke(["confirm-return", "B1", "--bought-out"])
    assert "unchanged" in again.stdout and "Bought out" in again.stdout
    otherwise = invoke(["confirm-return", "B1"])  # refused: it was bought out
    assert "refused" in otherwise.stdout and "Bought out" in otherwise.stdout
    returned = invoke(["confirm-return", "R1"])
    assert "Return confirmed" in returned.stdout
    released = invoke(["release", "B1", "--json"])
    assert json_out(released)["results"][0]["outcome"] == "bought_out"


def test_a_note_given_to_a_confirmed_device_is_kept_and_said(invoke: Invoke, db: Path) -> None:
    seed(db, ("C1", {"status": "return_confirmed", "outcome": "returned"}))
    result = invoke(["confirm-return", "C1", "--note", "invoice 4471"])
    assert result.exit_code == 0, result.output
    assert "unchanged" in result.stdout
    assert "C1 was already return_confirmed: the note was added to its notes." in result.stderr
    again = invoke(["confirm-return", "C1", "--note", "invoice 4471", "--json"])
    assert again.exit_code == 0, again.output
    assert json_out(again)["unchanged"] == 1
    assert again.stderr == ""
    shown = json_out(invoke(["show", "C1", "--json"]))
    assert [n["text"] for n in shown["notes"]] == ["invoice 4471"]


@pytest.mark.parametrize(
    "args",
    [
        ["order", "S1", "--model", "X1\x1b]0;pwned\x07"],
        ["order", "S1", "--model", "X1\nX2"],
        ["deliver", "O1", "--new-serial", "N\x1b[31m1"],
        ["deliver", "O1", "--new-serial", "N1\tN2"],
        ["deliver", "O1", "--new-serial", "N1", "--model", "M\x1b[2J"],
    ],
)
def test_order_and_deliver_refuse_control_characters(
    invoke: Invoke, db: Path, args: list[str]
) -> None:
    seed(
        db,
        ("S1", {"status": "renewal_started"}),
        ("O1", {"status": "renewal_started", "ordered_model": "M", "ordered_at": "t"}),
    )
    before = snapshot(db)
    result = invoke([*args, "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "holds a control character" in result.stderr
    assert snapshot(db) == before


def test_serials_come_from_arguments_and_stdin_together(invoke: Invoke, db: Path) -> None:
    seed(db, ("R1", {"status": "return_confirmed"}), ("R2", {"status": "return_confirmed"}))
    result = invoke(["release", "R1", "--file", "-", "--json"], input="R2\nr1\n")
    assert result.exit_code == 0, result.output
    assert [r["serial"] for r in json_out(result)["results"]] == ["R1", "R2"]


def test_a_missing_file_is_exit_66_with_nothing_on_stdout(
    invoke: Invoke, db: Path, tmp_path: Path
) -> None:
    seed(db, ("R1", {"status": "return_confirmed"}))
    for command in ("release", "confirm-return"):
        result = invoke([command, "--file", str(tmp_path / "absent.txt")])
        assert result.exit_code == 66
        assert result.stdout == ""
        assert "absent.txt" in result.stderr
    assert status(db, "R1") == "return_confirmed"


def test_no_serials_at_all_is_a_usage_error(invoke: Invoke, db: Path) -> None:
    result = invoke(["release"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--file" in result.stderr


def test_an_empty_list_is_nothing_to_do(invoke: Invoke, db: Path) -> None:
    result = invoke(["release", "--file", "-", "--json"], input="# nothing today\n\n")
    assert result.exit_code == 0, result.output
    assert json_out(result)["results"] == []


def test_dry_run_changes_nothing(invoke: Invoke, db: Path) -> None:
    seed(db, ("R1", {"status": "return_confirmed"}), ("A1", {}))
    before = snapshot(db)
    result = invoke(["release", "R1", "A1", "--dry-run"])
    assert result.exit_code == 1
    assert "would be released" in result.stdout
    assert "Dry run: 1 would be released, 0 unchanged, 1 refused; nothing was changed." in (
        result.stderr
    )
    assert snapshot(db) == before
    ok = invoke(["release", "R1", "--dry-run", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json_out(ok)["dry_run"] is True
    assert snapshot(db) == before


# ---- release's question --------------------------------------------------------------------


@pytest.fixture
def at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "_interactive", lambda: True)


def test_release_at_a_terminal_asks_once_and_declined_releases_nothing(
    invoke: Invoke, db: Path, at_a_terminal: None
) -> None:
    seed(db, ("R1", {"status": "return_confirmed"}), ("R2", {"status": "return_confirmed"}))
    result = invoke(["release", "R1", "R2"], input="n\n")
    assert result.exit_code == 1
    assert result.stderr.count("Release R1 and R2?") == 1
    assert "no longer in MDM or any company system" in result.stderr
    assert "hardware view and the company assets" in result.stderr
    assert "Nothing released." in result.stderr
    assert "Serial" not in result.stdout  # no result table: nothing was done
    assert status(db, "R1") == "return_confirmed"


def test_release_at_a_terminal_goes_ahead_when_confirmed(
    invoke: Invoke, db: Path, at_a_terminal: None
) -> None:
    seed(db, ("R1", {"status": "return_confirmed"}))
    result = invoke(["release", "R1"], input="y\n")
    assert result.exit_code == 0, result.output
    assert status(db, "R1") == "removed"


@pytest.mark.parametrize("args", [["--yes"], ["-y"], ["--dry-run"]])
def test_yes_and_dry_run_never_ask(
    invoke: Invoke, db: Path, at_a_terminal: None, args: list[str]
) -> None:
    seed(db, ("R1", {"status": "return_confirmed"}))
    result = invoke(["release", "R1", *args])
    assert result.exit_code == 0, result.output
    assert "Release R1?" not in result.stderr


def test_nothing_to_release_asks_nothing(invoke: Invoke, db: Path, at_a_terminal: None) -> None:
    seed(db, ("X1", {"status": "removed"}))
    result = invoke(["release", "X1"])
    assert result.exit_code == 0, result.output
    assert "Release" not in result.stderr
    assert "unchanged" in result.stdout


def test_without_a_terminal_release_does_not_ask(invoke: Invoke, db: Path) -> None:
    seed(db, ("R1", {"status": "return_confirmed"}))
    result = invoke(["release", "R1"])
    assert result.exit_code == 0, result.output
    assert "Release R1?" not in result.stderr
    assert status(db, "R1") == "removed"


# ---- renewals, todo, stats -----------------------------------------------------------------


def renewal_fleet(db: Path) -> None:
    seed(
        db,
        ("LATE", {"renewal_date": "2026-05-25", "distributor": "DUSTIN AB"}),
        ("SOON", {"renewal_date": "2026-06-05", "user_name": "[bold]Eve[/bold]"}),
        ("EDGE", {"renewal_date": "2026-07-01", "status": "renewal_started"}),
        ("FAR", {"renewal_date": "2026-07-02"}),
        ("GONE", {"renewal_date": "2026-06-02", "status": "removed"}),
    )


def test_renewals_json(invoke: Invoke, db: Path) -> None:
    renewal_fleet(db)
    result = invoke(["renewals", "--as-of", "2026-06-01", "--json"])
    assert result.exit_code == 0, result.output
    rows = json_out(result)
    assert [(r["serial"], r["days_left"], r["notice_status"]) for r in rows] == [
        ("LATE", -7, None),
        ("SOON", 4, None),
        ("EDGE", 30, None),
    ]
    assert list(rows[0]) == list(RENEWAL_KEYS)
    narrow = json_out(invoke(["renewals", "--as-of", "2026-06-01", "--within", "4", "--json"]))
    assert [r["serial"] for r in narrow] == ["LATE", "SOON"]
    started = json_out(
        invoke(["renewals", "--as-of", "2026-06-01", "--status", "renewal_started", "--json"])
    )
    assert [r["serial"] for r in started] == ["EDGE"]


def test_renewals_table_and_csv(invoke: Invoke, db: Path) -> None:
    renewal_fleet(db)
    table = invoke(["renewals", "--as-of", "2026-06-01"])
    assert table.exit_code == 0, table.output
    assert "DUSTIN AB (own process)" in table.stdout
    assert "[bold]Eve[/bold]" in table.stdout
    assert "Active – pending return" in table.stdout
    assert "FAR" not in table.stdout
    as_csv = invoke(["renewals", "--as-of", "2026-06-01", "--csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == list(RENEWAL_KEYS)
    assert [(r["serial"], r["days_left"]) for r in rows] == [
        ("LATE", "-7"),
        ("SOON", "4"),
        ("EDGE", "30"),
    ]


@pytest.mark.parametrize("as_of", ["2026-06-01", "01.06.2026", "1.6.2026", "2026/06/01"])
def test_as_of_takes_the_dates_an_import_takes(invoke: Invoke, db: Path, as_of: str) -> None:
    renewal_fleet(db)
    result = invoke(["renewals", "--as-of", as_of, "--within", "4", "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert [(r["serial"], r["days_left"]) for r in json_out(result)] == [("LATE", -7), ("SOON", 4)]


def test_an_ambiguous_as_of_is_a_usage_error_that_says_why(invoke: Invoke, db: Path) -> None:
    result = invoke(["renewals", "--as-of", "03/04/2026"])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # the clean exit, not a crash
    assert result.stdout == ""
    assert "--as-of: '03/04/2026' is ambiguous" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--as-of", "tomorrow"],
        ["--within", "-1"],
        ["--within", "soon"],
        ["--status", "removed"],
        ["--json", "--csv"],
    ],
)
def test_renewals_bad_options_are_usage_errors(invoke: Invoke, db: Path, args: list[str]) -> None:
    result = invoke(["renewals", *args])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_renewals_default_as_of_is_today(invoke: Invoke, db: Path) -> None:
    today = today_local()
    seed(db, ("NOW", {"renewal_date": today.isoformat()}))
    rows = json_out(invoke(["renewals", "--json"]))
    assert [(r["serial"], r["days_left"]) for r in rows] == [("NOW", 0)]


def test_todo_outputs(invoke: Invoke, db: Path) -> None:
    seed(
        db,
        (
            "T1",
            {
                "status": "renewal_started",
                "status_changed_at": "2026-03-01T08:00:00Z",
                "replacement_serial": "NEW1",
                "delivered_at": "2026-03-09T08:00:00Z",
            },
        ),
        ("T2", {"status": "return_confirmed", "status_changed_at": "2026-03-04T08:00:00Z"}),
        ("T3", {"status": "renewal_started", "status_changed_at": "2026-03-02T08:00:00Z"}),
        ("T4", {}),  # active, renewing on 2026-12-01: nothing to do yet
    )
    rows = json_out(invoke(["todo", "--json", "--as-of", "2026-03-10"]))
    assert [(r["serial"], r["action"], r["since"]) for r in rows] == [
        ("T1", "confirm-return", "2026-03-09"),
        ("T2", "release", "2026-03-04"),
        ("T3", "wait-for-delivery", "2026-03-02"),
    ]
    as_csv = invoke(["todo", "--csv", "--as-of", "2026-03-10"])
    assert next(csv.DictReader(io.StringIO(as_csv.stdout)))["action"] == "confirm-return"
    assert as_csv.stdout.splitlines()[0] == ",".join(TODO_KEYS)
    table = invoke(["todo", "--as-of", "2026-03-10"])
    assert table.exit_code == 0, table.output
    assert "wait-for-delivery" in table.stdout


def test_todo_when_nothing_waits(invoke: Invoke, db: Path) -> None:
    result = invoke(["todo"])
    assert result.exit_code == 0, result.output
    assert "Nothing to do." in result.stdout


def test_stats_outputs(invoke: Invoke, db: Path) -> None:
    seed(
        db,
        ("A1", {"renewal_date": "2026-06-10"}),
        ("A2", {"renewal_date": "2026-08-10", "distributor": "Dustin AB"}),
        ("A3", {"renewal_date": "2026-06-20", "status": "removed"}),
    )
    result = invoke(["stats", "--as-of", "2026-06-01", "--json"])
    assert result.exit_code == 0, result.output
    stats = json_out(result)
    assert stats["by_status"] == {
        "active": 2,
        "renewal_started": 0,
        "return_confirmed": 0,
        "removed": 1,
    }
    assert stats["by_distributor"] == {"Atea": 1, "Dustin AB": 1}
    assert [m["count"] for m in stats["renewals_by_month"]] == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    table = invoke(["stats", "--as-of", "2026-06-01"])
    assert table.exit_code == 0, table.output
    assert "Dustin AB (own process)" in table.stdout
    assert "Renewals per month" in table.stdout
    assert "2026-06  " + "█" * 40 + " 1" in table.stdout
    assert "2027-05   0" in table.stdout


ALL_COMMANDS: list[Callable[..., None]] = [
    lifecycle.start,
    lifecycle.order,
    lifecycle.deliver,
    lifecycle.confirm_return,
    lifecycle.release,
    lifecycle.note,
    due.renewals,
    due.todo,
    due.stats,
]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: c.__name__)
def test_every_command_has_help(invoke: Invoke, command: Callable[..., None]) -> None:
    name = command.__name__.replace("_", "-")
    result = invoke([name, "--help"])
    assert result.exit_code == 0, result.output
    assert "--json" in result.stdout
