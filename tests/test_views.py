"""The device views: company assets, one device, a user's hardware, the export."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from velory_cli.models import DEVICE_KEYS
from velory_cli.store import Store


def seeded(home: Path) -> Path:
    path = home / "velory.db"
    with Store.open(path) as store:
        add_device(store, "PF1", user_email="asa@nordlys.se", user_name="Åsa Lindström")
        add_device(store, "PF2", user_email="ASA@nordlys.se", distributor="Dustin Sverige AB")
        add_device(store, "PF3", user_email="bo@nordlys.se", status="removed")
        add_device(
            store,
            "PF4",
            user_email="bo@nordlys.se",
            user_name='=HYPERLINK("http://evil")',
            model="[bold red]not markup[/]",
        )
    return path


def test_devices_lists_company_assets_without_removed(invoke: Invoke, home: Path) -> None:
    seeded(home)
    result = invoke(["devices", "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    serials = [device["serial"] for device in json_out(result)]
    assert sorted(serials) == ["PF1", "PF2", "PF4"]
    assert list(json_out(result)[0]) == list(DEVICE_KEYS)


def test_devices_filters(invoke: Invoke, home: Path) -> None:
    seeded(home)
    removed = json_out(invoke(["devices", "--status", "removed", "--json"]))
    assert [d["serial"] for d in removed] == ["PF3"]
    everything = json_out(invoke(["devices", "--include-removed", "--json"]))
    assert len(everything) == 4
    dustin = json_out(invoke(["devices", "--distributor", "dustin", "--json"]))
    assert [d["serial"] for d in dustin] == ["PF2"]
    by_user = json_out(invoke(["devices", "--user", " Asa@Nordlys.SE ", "--json"]))
    assert sorted(d["serial"] for d in by_user) == ["PF1", "PF2"]


def test_sql_looking_filter_values_are_just_values(invoke: Invoke, home: Path) -> None:
    seeded(home)
    for value in ["' OR 1=1 --", "%", "_", "\\"]:
        result = invoke(["devices", "--distributor", value, "--json"])
        assert result.exit_code == 0, result.output
        assert json_out(result) == []
        result = invoke(["devices", "--user", value, "--json"])
        assert json_out(result) == []


def test_unknown_status_is_a_usage_error(invoke: Invoke, home: Path) -> None:
    seeded(home)
    result = invoke(["devices", "--status", "lost"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "unknown status" in result.stderr


def test_devices_table_and_csv(invoke: Invoke, home: Path) -> None:
    seeded(home)
    table = invoke(["devices"])
    assert table.exit_code == 0, table.output
    assert "Åsa Lindström" in table.stdout
    assert "[bold red]not markup[/]" in table.stdout  # data is never read as markup
    assert "\x1b[" not in table.stdout  # no colour when not a terminal
    rows = list(csv.DictReader(io.StringIO(invoke(["devices", "--csv"]).stdout)))
    assert sorted(row["serial"] for row in rows) == ["PF1", "PF2", "PF4"]


def test_json_and_csv_together_is_a_usage_error(invoke: Invoke, home: Path) -> None:
    result = invoke(["devices", "--json", "--csv"])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_hardware_view_is_the_users_devices_not_removed(invoke: Invoke, home: Path) -> None:
    seeded(home)
    result = invoke(["hardware", "BO@nordlys.se", "--json"])
    assert result.exit_code == 0, result.output
    assert [d["serial"] for d in json_out(result)] == ["PF4"]


def test_show_has_notes_history_and_notices(invoke: Invoke, home: Path) -> None:
    seeded(home)
    result = invoke(["show", "  pf1 ", "--json"])
    assert result.exit_code == 0, result.output
    shown = json_out(result)
    assert shown["serial"] == "PF1"
    assert shown["notes"] == []
    assert shown["notices"] == []
    assert shown["history"][0]["action"] == "import"
    assert shown["history"][0]["to_status"] == "active"
    table = invoke(["show", "PF1"])
    assert "Åsa Lindström" in table.stdout
    assert "History" in table.stdout


def test_show_unknown_serial_exits_1_with_empty_stdout(invoke: Invoke, home: Path) -> None:
    seeded(home)
    result = invoke(["show", "NOPE", "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "NOPE" in result.stderr


def test_export_is_every_device_and_safe_in_a_spreadsheet(invoke: Invoke, home: Path) -> None:
    seeded(home)
    result = invoke(["export"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 4
    pf4 = next(row for row in rows if row["serial"] == "PF4")
    assert pf4["user_name"] == '\'=HYPERLINK("http://evil")'
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_export_json_to_a_file_never_overwrites(invoke: Invoke, home: Path, tmp_path: Path) -> None:
    seeded(home)
    target = tmp_path / "out.json"
    result = invoke(["export", "--json", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert len(json.loads(target.read_text(encoding="utf-8"))) == 4
    again = invoke(["export", "--json", "--output", str(target)])
    assert again.exit_code == 73
    assert "--force" in again.stderr
    forced = invoke(["export", "--output", str(target), "--force"])
    assert forced.exit_code == 0, forced.output
    assert target.read_text(encoding="utf-8").startswith("serial,")


def test_export_to_an_unwritable_place_exits_73(invoke: Invoke, home: Path, tmp_path: Path) -> None:
    seeded(home)
    result = invoke(["export", "--output", str(tmp_path / "missing" / "out.csv")])
    assert result.exit_code == 73
    assert "cannot write" in result.stderr


def test_store_created_on_first_use_is_private(invoke: Invoke, home: Path) -> None:
    result = invoke(["devices", "--json"])
    assert result.exit_code == 0, result.output
    assert json_out(result) == []
    assert stat.S_IMODE((home / "velory.db").stat().st_mode) == 0o600


def test_a_store_that_is_not_velorys_exits_74(invoke: Invoke, tmp_path: Path) -> None:
    alien = tmp_path / "alien.db"
    alien.write_text("not a database at all")
    result = invoke(["--db", str(alien), "devices"])
    assert result.exit_code == 74
    assert result.stdout == ""
    assert alien.read_text() == "not a database at all"
