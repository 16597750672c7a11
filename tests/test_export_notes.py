"""The export carries every device's notes, and velory reads that export back exactly: an
export imported again changes nothing and adds no note, as CSV, JSON and a workbook."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from velory_cli.inventory import EXPORT_KEYS, export_devices
from velory_cli.models import DEVICE_KEYS
from velory_cli.store import Store


def noted(home: Path) -> Path:
    """Devices with notes of every kind: imported, added, both, several lines, none, one
    that starts like a formula, and a removed device."""
    path = home / "velory.db"
    with Store.open(path) as store:
        first = add_device(store, "PF1", import_notes="Arrived with a scratch")
        second = add_device(store, "PF2")
        third = add_device(store, "PF3", import_notes="=SUM(A1)")
        add_device(store, "PF4")
        removed = add_device(store, "PF5", status="removed")
        with store.transaction():
            store.add_note(first, at="2026-02-01T10:00:00Z", actor="kim", text="Bought a bag")
            store.add_note(first, at="2026-03-01T10:00:00Z", actor="ola", text="Bag returned")
            store.add_note(second, at="2026-02-01T10:00:00Z", actor="kim", text="two\nlines")
            store.add_note(third, at="2026-02-01T10:00:00Z", actor="kim", text="-1 key")
            store.add_note(removed, at="2026-02-01T10:00:00Z", actor="kim", text="Lost")
    return path


def counts(path: Path) -> tuple[int, int, int]:
    with sqlite3.connect(path) as conn:
        return (
            conn.execute("SELECT count(*) FROM devices").fetchone()[0],
            conn.execute("SELECT count(*) FROM notes").fetchone()[0],
            conn.execute("SELECT count(*) FROM history").fetchone()[0],
        )


def test_the_export_has_each_devices_notes_oldest_first(home: Path) -> None:
    noted(home)
    with Store.open(home / "velory.db") as store:
        exported = {item.device.serial: item for item in export_devices(store)}
    assert [note.text for note in exported["PF1"].notes] == [
        "Arrived with a scratch",
        "Bought a bag",
        "Bag returned",
    ]
    assert [note.actor for note in exported["PF1"].notes] == ["import", "kim", "ola"]
    assert exported["PF1"].to_row()["notes"] == "Arrived with a scratch\nBought a bag\nBag returned"
    assert exported["PF4"].notes == []
    assert exported["PF4"].to_row()["notes"] is None
    assert [note.text for note in exported["PF5"].notes] == ["Lost"]


def test_export_json_has_the_notes_as_show_has_them(invoke: Invoke, home: Path) -> None:
    noted(home)
    result = invoke(["export", "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    devices = {device["serial"]: device for device in json_out(result)}
    assert list(devices["PF1"]) == [*DEVICE_KEYS, "notes"]
    shown = json_out(invoke(["show", "PF1", "--json"]))
    assert devices["PF1"]["notes"] == shown["notes"]
    assert devices["PF1"]["notes"][1] == {
        "at": "2026-02-01T10:00:00Z",
        "actor": "kim",
        "text": "Bought a bag",
    }
    assert devices["PF4"]["notes"] == []


def test_export_csv_has_one_notes_column(invoke: Invoke, home: Path) -> None:
    noted(home)
    result = invoke(["export"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    rows = {row["serial"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert list(rows["PF1"]) == list(EXPORT_KEYS)
    assert rows["PF1"]["notes"] == "Arrived with a scratch\nBought a bag\nBag returned"
    assert rows["PF2"]["notes"] == "two\nlines"
    assert rows["PF3"]["notes"] == "'=SUM(A1)\n-1 key"  # safe in a spreadsheet
    assert rows["PF4"]["notes"] == ""


def test_export_workbook_has_a_notes_text_cell(invoke: Invoke, home: Path, tmp_path: Path) -> None:
    from python_calamine import CalamineWorkbook

    noted(home)
    target = tmp_path / "devices.xlsx"
    result = invoke(["export", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    sheet = CalamineWorkbook.from_path(str(target)).get_sheet_by_index(0).to_python()
    header, *rows = sheet
    assert header == list(EXPORT_KEYS)
    by_serial = {row[0]: row for row in rows}
    assert by_serial["PF3"][header.index("notes")] == "=SUM(A1)\n-1 key"
    assert str(by_serial["PF1"][header.index("notes")]).startswith("Arrived with a scratch\n")


@pytest.mark.parametrize("form", ["csv", "json", "xlsx", "csv-file"])
def test_an_export_imports_back_unchanged_with_no_note_added(
    invoke: Invoke, home: Path, tmp_path: Path, form: str
) -> None:
    path = noted(home)
    before = json_out(invoke(["export", "--json"]))
    target = tmp_path / f"export.{form.removesuffix('-file')}"
    if form == "csv":
        target.write_text(invoke(["export"]).stdout, encoding="utf-8")
    elif form == "json":
        target.write_text(invoke(["export", "--json"]).stdout, encoding="utf-8")
    else:
        assert invoke(["export", "--output", str(target)]).exit_code == 0
    stored = counts(path)
    result = invoke(["import", str(target), "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    summary = json_out(result)
    # The removed device is skipped, as an import skips every removed device.
    assert (summary["inserted"], summary["updated"], summary["rejected"]) == (0, 0, 0), summary
    assert (summary["unchanged"], summary["skipped"]) == (4, 1), summary
    assert counts(path) == stored
    assert json_out(invoke(["export", "--json"])) == before


def test_a_changed_notes_cell_is_still_an_update(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    noted(home)
    rows = list(csv.DictReader(io.StringIO(invoke(["export"]).stdout)))
    for row in rows:
        if row["serial"] == "PF2":
            row["notes"] = "two\nlines\nand a third"
    target = tmp_path / "edited.csv"
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = json_out(invoke(["import", str(target), "--json"]))
    assert (summary["updated"], summary["unchanged"]) == (1, 3), summary


def test_an_export_into_a_new_store_keeps_every_note_text(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    noted(home)
    target = tmp_path / "export.json"
    target.write_text(invoke(["export", "--json"]).stdout, encoding="utf-8")
    copy = tmp_path / "copy.db"
    result = invoke(["--db", str(copy), "import", str(target), "--json"])
    assert result.exit_code == 0, result.output
    assert json_out(result)["inserted"] == 5
    shown = json_out(invoke(["--db", str(copy), "show", "PF1", "--json"]))
    assert [note["text"] for note in shown["notes"]] == [
        "Arrived with a scratch\nBought a bag\nBag returned"
    ]


def test_a_json_notes_list_of_something_else_rejects_its_row(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "devices.json"
    target.write_text(
        json.dumps(
            [
                {"serial": "N1", "renewal date": "2027-01-01", "notes": [{"text": "fine"}, "ok"]},
                {"serial": "N2", "renewal date": "2027-01-01", "notes": [{"at": "2026-01-01"}]},
            ]
        ),
        encoding="utf-8",
    )
    result = invoke(["import", str(target), "--json"])
    assert result.exit_code == 65, result.output
    assert isinstance(result.exception, SystemExit)  # an exit code, not a crash
    errors = json_out(result)["errors"]
    assert [(error["row"], error["column"]) for error in errors] == [(2, "notes")]
    imported = invoke(["import", str(target), "--skip-invalid", "--json"])
    assert json_out(imported)["inserted"] == 1
    shown = json_out(invoke(["show", "N1", "--json"]))
    assert [note["text"] for note in shown["notes"]] == ["fine\nok"]


# ---- a large export in flat memory -----------------------------------------------------------

PEAK = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss if os.waitstatus_to_exitcode(status) == 0 else -1)
"""


def _fleet(tmp_path: Path, rows: int) -> Path:
    source = tmp_path / f"fleet-{rows}.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["Serial", "Model", "Full Name", "Email", "Renewal Date", "Notes"])
        for n in range(rows):
            out.writerow(
                [
                    f"SN{n:08d}",
                    "Latitude 5440",
                    f"Åsa Lindström {n}",
                    f"user{n}@nordlys.se",
                    "2027-03-01",
                    f"Bought {n}\nbox {n % 97}",
                ]
            )
    return source


@pytest.mark.subprocess
@pytest.mark.parametrize("form", [["--json"], []], ids=["json", "csv"])
def test_an_export_of_many_devices_is_written_in_flat_memory(
    tmp_path: Path, form: list[str]
) -> None:
    import subprocess
    import sys

    from tests.conftest import velory_command

    peaks = []
    for rows in (5_000, 100_000):
        db = tmp_path / f"store-{rows}.db"
        made = subprocess.run(
            [*velory_command(), "--db", str(db), "import", str(_fleet(tmp_path, rows)), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert made.returncode == 0, made.stderr
        out = tmp_path / f"export-{rows}"
        measured = subprocess.run(
            [
                sys.executable,
                "-c",
                PEAK,
                *velory_command(),
                "--db",
                str(db),
                "export",
                *form,
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        peaks.append(int(measured.stdout))
        assert peaks[-1] > 0, measured.stderr
        assert out.read_text(encoding="utf-8-sig").count("box ") == rows
    # Twenty times the devices, about the same memory: the rows are written as they are read
    # (held whole, 100,000 devices took some 120 MB more than 5,000).
    assert peaks[1] - peaks[0] < 25 * 1024, peaks
