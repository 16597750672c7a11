"""Finding devices from the command line: users to chase in `todo`, `devices --search`,
`--exclude-distributor`, and the serials an unknown one may have meant."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from velory_cli.renewals import TODO_KEYS
from velory_cli.store import Store

AS_OF = "2026-12-10"


@pytest.fixture
def fleet(empty_store: Path) -> Path:
    with Store.open(empty_store) as store:
        add_device(
            store,
            "PF1K2X9Z",
            user_email="asa.lindstrom@nordlys.se",
            user_name="Åsa LINDSTRÖM",
            model="MacBook Pro 14",
            distributor="Atea Sverige AB",
            renewal_date="2026-11-20",
        )
        sent = add_device(
            store,
            "C02XK1ZLJG5H",
            user_email="bo.ek@nordlys.se",
            user_name="Bo Ek",
            model="ThinkPad T14",
            distributor="Elkjøp Business",
            renewal_date="2026-12-01",
        )
        add_device(
            store,
            "DU55TIN1",
            user_email="cia@nordlys.se",
            user_name="Cia Berg",
            distributor="Dustin Sverige AB",
            renewal_date="2026-10-01",
        )
        add_device(
            store,
            "FUTURE1",
            user_email="dan@nordlys.se",
            user_name="Dan Öberg",
            model="iPhone 15",
            category="Phone",
            distributor="Atea Norge AS",
            renewal_date="2027-06-01",
        )
        add_device(store, "OLD9", user_name="Åsa Lindström", status="removed")
        with store.transaction():
            store.queue_notice(
                sent,
                kind="renewal",
                renewal_date="2026-12-01",
                recipient="bo.ek@nordlys.se",
                at="2026-11-01T08:00:00Z",
            )
    return empty_store


def test_todo_lists_the_users_to_chase_with_their_notice(invoke: Invoke, fleet: Path) -> None:
    result = invoke(["todo", "--json", "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    rows = json_out(result)
    assert [(r["serial"], r["action"], r["since"], r["notice_status"]) for r in rows] == [
        ("PF1K2X9Z", "chase-user", "2026-11-20", None),
        ("C02XK1ZLJG5H", "chase-user", "2026-12-01", "pending"),
    ]
    assert list(rows[0]) == list(TODO_KEYS)
    as_csv = invoke(["todo", "--csv", "--as-of", AS_OF])
    assert as_csv.exit_code == 0 and as_csv.exception is None
    lines = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["serial"], r["action"], r["notice_status"]) for r in lines] == [
        ("PF1K2X9Z", "chase-user", ""),
        ("C02XK1ZLJG5H", "chase-user", "pending"),
    ]
    table = invoke(["todo", "--as-of", AS_OF])
    assert table.exit_code == 0, table.output
    assert table.exception is None
    assert "Notice" in table.stdout
    assert [line.split()[0] for line in table.stdout.splitlines() if "chase-user" in line] == [
        "chase-user",
        "chase-user",
    ]
    before = invoke(["todo", "--json", "--as-of", "2026-11-20"])
    assert json_out(before) == []  # the renewal date itself has not passed yet


# ---- --exclude-distributor -------------------------------------------------------------------


def serials(result: object) -> list[str]:
    return sorted(device["serial"] for device in json_out(result))  # type: ignore[arg-type]


def test_exclude_distributor_leaves_out_names_containing_it(invoke: Invoke, fleet: Path) -> None:
    result = invoke(["devices", "--exclude-distributor", "DUSTIN", "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert serials(result) == ["C02XK1ZLJG5H", "FUTURE1", "PF1K2X9Z"]
    twice = invoke(
        ["devices", "--exclude-distributor", "dustin", "--exclude-distributor", "ELKJØP", "--json"]
    )
    assert serials(twice) == ["FUTURE1", "PF1K2X9Z"]  # ELKJØP as Elkjøp, beyond ASCII
    with_include = invoke(["devices", "--distributor", "atea", "--exclude-distributor", "norge"])
    assert with_include.exit_code == 0 and with_include.exception is None
    assert "PF1K2X9Z" in with_include.stdout and "FUTURE1" not in with_include.stdout


def test_a_device_without_a_distributor_is_never_excluded(invoke: Invoke, fleet: Path) -> None:
    with Store.open(fleet) as store:
        add_device(store, "NODIST", distributor=None)
    result = invoke(["devices", "--exclude-distributor", "e", "--json"])
    assert serials(result) == ["NODIST"]


def test_renewals_and_todo_take_exclude_distributor(invoke: Invoke, fleet: Path) -> None:
    args = ["--as-of", AS_OF, "--json"]
    renewals = invoke(["renewals", *args, "--exclude-distributor", "elkjøp"])
    assert renewals.exit_code == 0, renewals.output
    assert renewals.exception is None
    assert [r["serial"] for r in json_out(renewals)] == ["DU55TIN1", "PF1K2X9Z"]
    renewals = invoke(["renewals", "--as-of", AS_OF, "--exclude-distributor", "atea", "--csv"])
    assert renewals.exit_code == 0 and renewals.exception is None
    rows = list(csv.DictReader(io.StringIO(renewals.stdout)))
    assert [r["serial"] for r in rows] == ["DU55TIN1", "C02XK1ZLJG5H"]
    todo = invoke(["todo", *args, "--exclude-distributor", "atea"])
    assert todo.exit_code == 0, todo.output
    assert todo.exception is None
    assert [r["serial"] for r in json_out(todo)] == ["C02XK1ZLJG5H"]


# ---- devices --search ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("åsa", ["OLD9", "PF1K2X9Z"]),  # the name, in any case beyond ASCII
        ("lindström", ["OLD9", "PF1K2X9Z"]),  # LINDSTRÖM
        ("LINDSTRÖM", ["OLD9", "PF1K2X9Z"]),
        ("A\u030asa", ["OLD9", "PF1K2X9Z"]),  # a decomposed Å is the same letter
        ("1k2x", ["PF1K2X9Z"]),  # part of the serial
        ("BO.EK@", ["C02XK1ZLJG5H"]),  # part of the email
        ("thinkpad", ["C02XK1ZLJG5H", "DU55TIN1", "OLD9"]),  # part of the model
        ("iphone 15", ["FUTURE1"]),
        ("öberg", ["FUTURE1"]),
        ("nordlys.se", ["C02XK1ZLJG5H", "DU55TIN1", "FUTURE1", "PF1K2X9Z"]),
        ("nobody", []),
        ("%", []),  # no wildcard
        ("_", []),
    ],
)
def test_search_finds_part_of_serial_email_name_or_model(
    invoke: Invoke, fleet: Path, text: str, found: list[str]
) -> None:
    result = invoke(["devices", "--search", text, "--include-removed", "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert serials(result) == found


def test_search_combines_with_the_other_filters(invoke: Invoke, fleet: Path) -> None:
    assert serials(invoke(["devices", "--search", "åsa", "--json"])) == ["PF1K2X9Z"]
    assert serials(invoke(["devices", "--search", "se", "--user", "cia@nordlys.se", "--json"])) == [
        "DU55TIN1"
    ]
    found = invoke(["devices", "--search", "nordlys", "--exclude-distributor", "atea", "--json"])
    assert serials(found) == ["C02XK1ZLJG5H", "DU55TIN1"]
    found = invoke(["devices", "--search", "nordlys", "--distributor", "atea", "--json"])
    assert serials(found) == ["FUTURE1", "PF1K2X9Z"]
    by_status = invoke(["devices", "--search", "lindstr", "--status", "removed", "--csv"])
    assert by_status.exit_code == 0 and by_status.exception is None
    assert [r["serial"] for r in csv.DictReader(io.StringIO(by_status.stdout))] == ["OLD9"]
    table = invoke(["devices", "--search", "ÅSA"])
    assert table.exit_code == 0 and table.exception is None
    assert "PF1K2X9Z" in table.stdout and "FUTURE1" not in table.stdout


def test_an_empty_search_is_a_usage_error(invoke: Invoke, fleet: Path) -> None:
    result = invoke(["devices", "--search", "  ", "--json"])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.strip() == "error: --search needs some text to look for"


# ---- did you mean ----------------------------------------------------------------------------


def test_show_suggests_the_nearest_serial(invoke: Invoke, fleet: Path) -> None:
    result = invoke(["show", "PF1K2X8Z"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr == "error: PF1K2X8Z: no such device (did you mean PF1K2X9Z?)\n"
    as_json = invoke(["show", "c02xk1zljg5", "--json"])
    assert as_json.exit_code == 1 and as_json.stdout == ""
    assert "(did you mean C02XK1ZLJG5H?)" in as_json.stderr
    nothing_near = invoke(["show", "NOPE"])
    assert nothing_near.stderr == "error: NOPE: no such device\n"


@pytest.mark.parametrize(
    "args",
    [
        ["start", "PF1K2X8Z"],
        ["note", "PF1K2X8Z", "a note"],
        ["release", "PF1K2X8Z", "--yes"],
        ["confirm-return", "PF1K2X8Z"],
        ["notices", "retry", "PF1K2X8Z"],
        ["edit", "PF1K2X8Z", "--model", "MacBook Air"],
        ["retire", "PF1K2X8Z", "--outcome", "lost", "--note", "Lost", "--yes"],
    ],
    ids=lambda args: args[0] if args[0] != "notices" else "notices-retry",
)
def test_actions_suggest_the_nearest_serial(invoke: Invoke, fleet: Path, args: list[str]) -> None:
    result = invoke([*args, "--json"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    (refused,) = [r for r in json_out(result)["results"] if not r["ok"]]
    assert refused["error"] == "PF1K2X8Z: no such device (did you mean PF1K2X9Z?)"
    assert "did you mean PF1K2X9Z?" in result.stderr


def test_a_bulk_command_suggests_for_each_unknown_serial(
    invoke: Invoke, fleet: Path, tmp_path: Path
) -> None:
    serials_file = tmp_path / "serials.txt"
    serials_file.write_text("PF1K2X8Z\nFUTURE2\nDU55TIN1\nGHOST-WITH-NO-MATCH\n", encoding="utf-8")
    result = invoke(["release", "--file", str(serials_file), "--dry-run", "--json"])
    assert result.exit_code == 1, result.output
    errors = {r["serial"]: r["error"] for r in json_out(result)["results"]}
    assert errors["PF1K2X8Z"] == "PF1K2X8Z: no such device (did you mean PF1K2X9Z?)"
    assert errors["FUTURE2"] == "FUTURE2: no such device (did you mean FUTURE1?)"
    assert errors["GHOST-WITH-NO-MATCH"] == "GHOST-WITH-NO-MATCH: no such device"
    assert "no such device" not in (errors["DU55TIN1"] or "")


def test_notes_from_a_file_suggest_for_an_unknown_serial(
    invoke: Invoke, fleet: Path, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.tsv"
    notes.write_text("PF1K2X8Z\tScreen replaced\nFUTURE1\tNew bag\n", encoding="utf-8")
    result = invoke(["note", "--file", str(notes), "--json"])
    assert result.exit_code == 1, result.output
    errors = [r["error"] for r in json_out(result)["results"]]
    assert errors == ["PF1K2X8Z: no such device (did you mean PF1K2X9Z?)", None]
