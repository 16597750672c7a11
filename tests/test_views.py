"""The device views: company assets, one device, a user's hardware, the export."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

import pytest

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


def test_json_and_csv_together_is_a_usage_error(invoke: Invoke, empty_store: Path) -> None:
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
    assert target.read_text(encoding="utf-8-sig").startswith("serial,")


def test_export_to_an_unwritable_place_exits_73(invoke: Invoke, home: Path, tmp_path: Path) -> None:
    seeded(home)
    result = invoke(["export", "--output", str(tmp_path / "missing" / "out.csv")])
    assert result.exit_code == 73
    assert "cannot write" in result.stderr


@pytest.mark.parametrize("first", [["db", "init"], ["import", "-"]], ids=["db init", "import"])
def test_store_created_on_first_use_is_private(
    invoke: Invoke, home: Path, first: list[str]
) -> None:
    created = invoke(first, input="Serial,Renewal Date\nA1,2027-01-01\n")
    assert created.exit_code == 0, created.output
    result = invoke(["devices", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json_out(result)) == (0 if first[0] == "db" else 1)
    assert stat.S_IMODE((home / "velory.db").stat().st_mode) == 0o600


def test_a_store_that_is_not_velorys_exits_74(invoke: Invoke, tmp_path: Path) -> None:
    alien = tmp_path / "alien.db"
    alien.write_text("not a database at all")
    result = invoke(["--db", str(alien), "devices"])
    assert result.exit_code == 74
    assert result.stdout == ""
    assert alien.read_text() == "not a database at all"


# ---- text from the data is never Rich markup, titles included -------------------------------

MARKUP = {
    "[/x]": {"user_email": "[/i]ann@x.se", "user_name": "[bold]Eve[/bold]", "distributor": "[/d]"},
    "[blink]Z": {"user_email": "[/i]ann@x.se", "model": "[red]M[/red]", "distributor": "[b]Atea"},
}


def markup_fleet(home: Path) -> None:
    with Store.open(home / "velory.db") as store:
        for serial, fields in MARKUP.items():
            add_device(store, serial, renewal_date="2026-06-10", **fields)
        add_device(
            store,
            "T1",
            status="return_confirmed",
            status_changed_at="2026-03-04T08:00:00Z",
            user_name="[/]",
        )


@pytest.mark.parametrize("serial", list(MARKUP))
def test_show_takes_a_serial_as_text(invoke: Invoke, home: Path, serial: str) -> None:
    markup_fleet(home)
    result = invoke(["show", serial])
    assert result.exit_code == 0, result.output
    assert f"Device {serial}" in result.stdout
    for value in MARKUP[serial].values():
        assert value in result.stdout


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["hardware", "[/i]ann@x.se"], ["Hardware of [/i]ann@x.se", "[/x]", "[blink]Z"]),
        (["devices"], ["[/x]", "[blink]Z", "[bold]Eve[/bold]", "[red]M[/red]", "[/d]"]),
        (["devices", "--distributor", "[b]"], ["[blink]Z", "[b]Atea"]),
        (["renewals", "--as-of", "2026-06-01"], ["[/x]", "[blink]Z", "[/i]ann@x.se", "[/d]"]),
        (["todo"], ["T1", "[/]"]),
        (["stats", "--as-of", "2026-06-01"], ["[/d]", "[b]Atea", "2026-06"]),
    ],
)
def test_markup_in_the_data_is_shown_as_written(
    invoke: Invoke, home: Path, args: list[str], shown: list[str]
) -> None:
    markup_fleet(home)
    result = invoke(args)
    assert result.exit_code == 0, result.output
    for text in shown:
        assert text in result.stdout


# ---- Unicode case ----------------------------------------------------------------------------


def test_distributor_and_email_match_any_case_beyond_ascii(invoke: Invoke, home: Path) -> None:
    with Store.open(home / "velory.db") as store:
        add_device(store, "E1", distributor="Elkjøp", user_email="Åsa.Ek@x.se")
        add_device(store, "E2", distributor="elkjøp", user_email="bo@x.se")
    for name in ("ELKJØP", "elkjøp", "Elkj"):
        found = json_out(invoke(["devices", "--distributor", name, "--json"]))
        assert sorted(d["serial"] for d in found) == ["E1", "E2"], name
    for email in ("åsa.ek@x.se", "ÅSA.EK@X.SE"):
        assert [d["serial"] for d in json_out(invoke(["hardware", email, "--json"]))] == ["E1"]
    shown = invoke(["show", "e1"])
    assert shown.exit_code == 0, shown.output


# ---- export: a file for spreadsheets -----------------------------------------------------------


def test_export_to_a_file_has_a_bom_and_imports_back(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    seeded(home)
    target = tmp_path / "fleet.csv"
    result = invoke(["export", "--output", str(target)])
    assert result.exit_code == 0, result.output
    data = target.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfserial,")  # Excel reads it as UTF-8: "Åsa", not "Ã…sa"
    assert "Åsa Lindström" in data.decode("utf-8-sig")
    piped = invoke(["export"])
    assert piped.stdout.startswith("serial,")  # pipes and scripts get no BOM
    assert json.loads(invoke(["export", "--json"]).stdout)
    again = invoke(["--db", str(tmp_path / "copy.db"), "import", str(target), "--json"])
    assert again.exit_code == 0, again.output
    summary = json_out(again)
    assert (summary["inserted"], summary["rejected"]) == (4, 0)
    copied = json_out(invoke(["--db", str(tmp_path / "copy.db"), "export", "--json"]))
    assert sorted(d["serial"] for d in copied) == ["PF1", "PF2", "PF3", "PF4"]
    pf1 = next(d for d in copied if d["serial"] == "PF1")
    assert (pf1["user_name"], pf1["user_email"]) == ("Åsa Lindström", "asa@nordlys.se")


def test_list_devices_searches_folded_texts(home: Path) -> None:
    from velory_cli.errors import UsageError
    from velory_cli.inventory import list_devices
    from velory_cli.store import DeviceFilter

    seeded(home)
    with Store.open(home / "velory.db") as store:
        found = list_devices(store, DeviceFilter(search="LINDSTRÖM"))
        assert [device.serial for device in found] == ["PF1"]
        found = list_devices(store, DeviceFilter(search="asa@", include_removed=True))
        assert sorted(device.serial for device in found) == ["PF1", "PF2"]
        found = list_devices(store, DeviceFilter(search="pf", exclude_distributors=("dustin",)))
        assert sorted(device.serial for device in found) == ["PF1", "PF4"]
        with pytest.raises(UsageError):
            list_devices(store, DeviceFilter(search=" "))
