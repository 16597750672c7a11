"""Real exports from another asset system (Snipe-IT's sample CSVs), imported as they are.

What velory makes of each is pinned here: the files are Mac Roman bytes with CR-only line ends,
repeated and empty headers, serials missing and US dates written M/D/YY, and one has no serial
column at all. None of them may produce a traceback or a wrong date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SNIPE_IT, Invoke, json_out
from velory_cli.store import Store

pytestmark = pytest.mark.skipif(
    not SNIPE_IT.is_dir(), reason=f"the real exports are not here ({SNIPE_IT})"
)

# The spreadsheet rows of assets-sample-BAD.csv and -BLANKS.csv whose Serial cell is empty.
ROWS_WITHOUT_SERIAL = [13, 35, 50, 69, 78, 79, 83, 90, 91, 107, 118, 125, 133, 153, 155, 166, 201]

# Devices checked by hand against the file: its row, and what velory must store.
BY_HAND: dict[str, dict[str, str | None]] = {
    # row 2: Bonnie Nelson, purchased 4/5/16 (April 5th: the file writes month first)
    "27aa8378-b0f4-4289-84a4-405da95c6147": {
        "model": "massa id",
        "category": "quam",
        "user_email": "bnelson0@cdbaby.com",
        "user_name": "Bonnie Nelson",
        "distributor": "Blogspan",
        "purchase_date": "2016-04-05",
        "renewal_date": "2019-04-05",
    },
    # row 3: Judith Ferguson, 3/8/16
    "4bc7fc90-5a97-412f-8eed-77ecacc643fc": {
        "user_name": "Judith Ferguson",
        "distributor": "Oyope",
        "purchase_date": "2016-03-08",
        "renewal_date": "2019-03-08",
    },
    # row 5: Brandon Lee, 10/11/15, no supplier
    "18d6e6a4-d362-4de9-beb4-7f62fb93de6f": {
        "user_name": "Brandon Lee",
        "distributor": None,
        "purchase_date": "2015-10-11",
        "renewal_date": "2018-10-11",
    },
    # row 6: Betty Powell, 6/16/15 (one reading only)
    "f9b473c6-c810-42f2-8335-27ce468889a8": {
        "user_email": "bpowell4@tuttocitta.it",
        "purchase_date": "2015-06-16",
        "renewal_date": "2018-06-16",
    },
}


def stored(home: Path, serial: str) -> dict[str, Any]:
    with Store.open(home / "velory.db") as store:
        device = store.device(serial)
        assert device is not None, serial
        return {**device.to_dict(), "import_notes": device.import_notes}


def device_count(home: Path) -> int:
    path = home / "velory.db"
    if not path.exists():
        return 0
    with Store.open(path) as store:
        return int(store.conn.execute("SELECT count(*) FROM devices").fetchone()[0])


def test_assets_sample_has_no_serial_column(invoke: Invoke, home: Path) -> None:
    result = invoke(["import", str(SNIPE_IT / "assets-sample.csv"), "--json"])
    assert result.exit_code == 65
    summary = json_out(result)
    assert summary["encoding"] == "utf-8"
    assert len(summary["errors"]) == 1
    error = summary["errors"][0]
    assert (error["row"], error["column"]) == (1, None)
    assert error["message"].startswith("no serial column")
    assert "Checked Out To: Email" in error["message"]
    assert "Traceback" not in result.stderr
    assert device_count(home) == 0


@pytest.mark.parametrize("name", ["assets-sample-BAD.csv", "assets-sample-BLANKS.csv"])
def test_by_default_nothing_is_written_and_every_problem_is_listed(
    invoke: Invoke, home: Path, name: str
) -> None:
    result = invoke(["import", str(SNIPE_IT / name), "--json"])
    assert result.exit_code == 65
    summary = json_out(result)
    assert summary["encoding"] == "windows-1252"
    assert (summary["rows"], summary["rejected"], summary["inserted"]) == (200, 101, 0)
    errors = summary["errors"]
    assert [e["row"] for e in errors if e["message"] == "serial is empty"] == ROWS_WITHOUT_SERIAL
    assert {e["column"] for e in errors if e["message"] == "serial is empty"} == {"Serial"}
    ambiguous = [e for e in errors if "ambiguous" in e["message"]]
    assert len(ambiguous) == 89
    assert ambiguous[0] == {
        "row": 2,
        "column": "Purchase Date",
        "message": "'4/5/16' is ambiguous: 4 May or 5 April 2016? say how the file writes "
        "dates with --dayfirst or --monthfirst",
    }
    assert len(errors) == 17 + 89
    # Model Number's 6.37702E+15 is in a column velory ignores: not a problem of the import.
    assert not any(e["column"] == "Model Number" for e in errors)
    assert "read it as Windows-1252" in result.stderr
    assert "Traceback" not in result.stderr
    assert device_count(home) == 0


@pytest.mark.parametrize("name", ["assets-sample-BAD.csv", "assets-sample-BLANKS.csv"])
def test_month_first_and_skip_invalid_import_the_valid_rows_with_their_dates(
    invoke: Invoke, home: Path, name: str
) -> None:
    result = invoke(["import", str(SNIPE_IT / name), "--monthfirst", "--skip-invalid", "--json"])
    assert result.exit_code == 0, result.output
    summary = json_out(result)
    assert (summary["inserted"], summary["rejected"]) == (183, 17)
    assert [e["row"] for e in summary["errors"]] == ROWS_WITHOUT_SERIAL
    assert device_count(home) == 183
    for serial, expected in BY_HAND.items():
        device = stored(home, serial)
        assert {key: device[key] for key in expected} == expected, serial
        assert (device["status"], device["source"]) == ("active", "imported")
    notes = stored(home, "27aa8378-b0f4-4289-84a4-405da95c6147")["import_notes"]
    assert notes.startswith("Curabitur in libero ut massa volutpat convallis.")
    # Imported again, the same file changes nothing.
    again = invoke(["import", str(SNIPE_IT / name), "--monthfirst", "--skip-invalid", "--json"])
    assert json_out(again)["unchanged"] == 183
    assert json_out(again)["updated"] == 0


def test_the_headers_velory_ignores_are_named_once(invoke: Invoke) -> None:
    bad = invoke(["import", str(SNIPE_IT / "assets-sample-BAD.csv"), "--monthfirst", "--json"])
    warnings = json_out(bad)["warnings"]
    assert any("12 bytes Windows-1252 does not define read as Latin-1" in w for w in warnings)
    ignored = next(w for w in warnings if w.startswith("columns velory does not import"))
    assert "Username (Full Name is used)" in ignored
    assert "Category (the first Category is used)" in ignored
    assert ignored.count("Company") == 1
    blanks = invoke(["import", str(SNIPE_IT / "assets-sample-BLANKS.csv"), "--monthfirst"])
    assert "Username (Full Name is used)" in blanks.stderr
    assert ", ," not in blanks.stderr  # empty headers are no columns to name


def test_day_first_is_refused_where_the_file_is_plainly_month_first(invoke: Invoke) -> None:
    result = invoke(
        [
            "import",
            str(SNIPE_IT / "assets-sample-BAD.csv"),
            "--dayfirst",
            "--skip-invalid",
            "--json",
        ]
    )
    summary = json_out(result)
    contradictions = [e for e in summary["errors"] if "cannot be read day first" in e["message"]]
    assert contradictions[0]["message"].startswith("'6/16/15' cannot be read day first")
    # The rows whose dates only read month first are refused: --dayfirst was the wrong guess.
    assert summary["rejected"] == 112
