"""Workbooks in and out, and other systems' exports: .xlsx and .ods read as they are (typed dates,
numeric serials, error cells, a chosen sheet), exports and rejects written as .xlsx and read back
by two independent readers, --column, the Jamf and Intune headers, Snipe-IT's API answer."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlsxwriter
from python_calamine import CalamineWorkbook

from tests.conftest import SAMPLE_DATA, SNIPE_IT, Invoke, json_out, velory_command
from velory_cli.importer import FIELDS, map_columns, parse_column_options
from velory_cli.importer.workbooks import cell_text

HEADER = ["Serial Number", "Model", "Email", "Full Name", "Purchase Date", "Renewal Date"]


def make_xlsx(path: Path, rows: list[list[Any]], *, top: int = 0, second: bool = False) -> Path:
    """A workbook as Excel keeps one: dates as date cells, numbers as numbers; ``top`` empty
    rows above the header; ``second`` adds a sheet of its own before nothing else."""
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Inventory")
    day = book.add_format({"num_format": "dd.mm.yyyy"})
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if isinstance(value, dt.date):
                sheet.write_datetime(top + r, c, value, day)
            elif isinstance(value, tuple):  # a formula whose cached value is an error
                sheet.write_formula(top + r, c, value[0], None, value[1])
            elif isinstance(value, int | float):
                sheet.write_number(top + r, c, value)
            elif value is not None:
                sheet.write_string(top + r, c, value)
    if second:
        other = book.add_worksheet("Phones")
        other.write_row(0, 0, ["serial", "renewal date"])
        other.write_row(1, 0, ["PHONE1", "2027-03-01"])
    book.close()
    return path


def stored(home: Path) -> dict[str, dict[str, Any]]:
    from velory_cli.store import Store

    with Store.open(home / "velory.db") as store:
        store.conn.row_factory = __import__("sqlite3").Row
        rows = store.conn.execute("SELECT * FROM devices").fetchall()
    return {row["serial"]: dict(row) for row in rows}


def imported(invoke: Invoke, path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = invoke(["import", str(path), "--json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, json_out(result)


# ---- reading a workbook -------------------------------------------------------------------


def test_typed_dates_and_whole_number_serials(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    path = make_xlsx(
        tmp_path / "fleet.xlsx",
        [
            HEADER,
            ["PF1", "ThinkPad", "asa@x.se", "Åsa", dt.date(2024, 3, 4), dt.date(2027, 3, 4)],
            [123456, "iPhone", "bo@x.se", "Bo", dt.date(2024, 1, 2), None],
            ["PF3", "iPad", None, None, "04.03.2024", None],
        ],
    )
    code, report = imported(invoke, path)
    assert code == 0, report
    assert report["inserted"] == 3 and report["format"] == "workbook"
    devices = stored(home)
    # 04.03.2024 is read as 4 March, no --dayfirst needed; the date cell whatever its format.
    assert devices["PF1"]["purchase_date"] == "2024-03-04"
    assert devices["PF1"]["renewal_date"] == "2027-03-04"
    assert devices["123456"]["renewal_date"] == "2027-01-02"  # purchase + 36 months
    assert devices["PF3"]["purchase_date"] == "2024-03-04"


def test_lost_serials_and_error_cells_reject_their_rows(invoke: Invoke, tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "fleet.xlsx",
        [
            HEADER,
            [6377020000000001, "a", None, None, dt.date(2024, 1, 2), None],
            [12.5, "b", None, None, dt.date(2024, 1, 2), None],
            ["PF4", "c", ("=1/0", "#DIV/0!"), None, dt.date(2024, 1, 2), None],
            ["PF5", "d", None, None, ("=NA()", "#N/A"), dt.date(2027, 1, 1)],
            [("=A1", "#REF!"), "e", None, None, dt.date(2024, 1, 2), None],
            ["PF7", "f", None, None, dt.date(2024, 1, 2), None],
        ],
    )
    code, report = imported(invoke, path)
    assert code == 65
    by_row = {(e["row"], e["column"]): e["message"] for e in report["errors"]}
    assert "16 digits" in by_row[(2, "Serial Number")]
    assert "fraction" in by_row[(3, "Serial Number")]
    assert "#DIV/0!" in by_row[(4, "Email")]
    assert "#N/A" in by_row[(5, "Purchase Date")]
    assert (6, "Serial Number") in by_row
    assert report["rejected"] == 5

    code, report = imported(invoke, path, "--skip-invalid")
    assert code == 0 and report["inserted"] == 1


def test_header_under_empty_rows_and_the_rows_numbered_as_the_sheet(
    invoke: Invoke, tmp_path: Path
) -> None:
    path = make_xlsx(
        tmp_path / "fleet.xlsx",
        [HEADER, ["PF1", "a", "not-an-email", None, dt.date(2024, 1, 2), None]],
        top=3,
    )
    code, report = imported(invoke, path)
    assert code == 65
    assert report["errors"][0]["row"] == 5  # the header is on the sheet's row 4


def test_blank_rows_between_devices_are_skipped_and_counted(invoke: Invoke, tmp_path: Path) -> None:
    row = ["PF1", "a", None, None, dt.date(2024, 1, 2), None]
    blank = [None, "   ", None, None, None, None]
    bad = ["PF9", "b", "nope", None, dt.date(2024, 1, 2), None]
    path = make_xlsx(tmp_path / "fleet.xlsx", [HEADER, row, [], blank, bad])
    code, report = imported(invoke, path, "--dry-run")
    assert code == 65 and report["rows"] == 2
    assert [e["row"] for e in report["errors"]] == [5]


def test_a_changed_workbook_updates_with_history(
    invoke: Invoke, tmp_path: Path, home: Path
) -> None:
    first: list[list[Any]] = [
        HEADER,
        ["PF1", "ThinkPad", "asa@x.se", "Åsa", dt.date(2024, 1, 2), None],
    ]
    assert imported(invoke, make_xlsx(tmp_path / "a.xlsx", first))[0] == 0
    second: list[list[Any]] = [
        HEADER,
        ["PF1", "ThinkPad", "bo@x.se", "Bo", dt.date(2024, 1, 2), None],
    ]
    path = make_xlsx(tmp_path / "b.xlsx", second)
    code, report = imported(invoke, path, "--dry-run")
    assert code == 0 and report["updated"] == 1 and stored(home)["PF1"]["user_email"] == "asa@x.se"
    code, report = imported(invoke, path)
    assert code == 0 and report["updated"] == 1
    shown = json_out(invoke(["show", "PF1", "--json"]))
    change = shown["history"][-1]
    assert change["action"] == "import"
    assert change["details"]["user_email"] == {"old": "asa@x.se", "new": "bo@x.se"}


def test_sheet_chooses_the_sheet(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    path = make_xlsx(
        tmp_path / "fleet.xlsx",
        [HEADER, ["PF1", "a", None, None, dt.date(2024, 1, 2), None]],
        second=True,
    )
    code, report = imported(invoke, path, "--sheet", "Phones")
    assert code == 0, report
    assert set(stored(home)) == {"PHONE1"}
    result = invoke(["import", str(path), "--sheet", "Laptops"])
    assert result.exit_code == 65
    assert 'no sheet named "Laptops"' in result.stderr and '"Phones"' in result.stderr


def test_a_file_that_is_not_a_workbook_is_65(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    fake = tmp_path / "fleet.xlsx"
    fake.write_text("Serial,Purchase Date\nPF1,2024-01-01\n")
    result = invoke(["import", str(fake)])
    assert result.exit_code == 65 and "not a workbook" in result.stderr
    protected = tmp_path / "locked.xlsx"
    protected.write_bytes(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500) + "EncryptionInfo".encode("utf-16-le")
    )
    result = invoke(["import", str(protected)])
    assert result.exit_code == 65 and "protected with a password" in result.stderr
    assert not (home / "velory.db").exists() or not stored(home)


def make_ods(path: Path) -> Path:
    """A LibreOffice spreadsheet, as small as the format allows: a date cell, a float serial."""
    content = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">
<office:body><office:spreadsheet><table:table table:name="Devices">
<table:table-row><table:table-cell office:value-type="string"><text:p>Serial</text:p>
</table:table-cell><table:table-cell office:value-type="string"><text:p>Purchase Date</text:p>
</table:table-cell></table:table-row>
<table:table-row><table:table-cell office:value-type="float" office:value="778899">
<text:p>778899</text:p></table:table-cell><table:table-cell office:value-type="date"
 office:date-value="2024-05-06"><text:p>06.05.2024</text:p></table:table-cell></table:table-row>
<table:table-row><table:table-cell office:value-type="string"><text:p>OD2</text:p>
</table:table-cell><table:table-cell office:value-type="string"><text:p>#N/A</text:p>
</table:table-cell></table:table-row>
</table:table></office:spreadsheet></office:body></office:document-content>"""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet"
        )
        archive.writestr(
            "META-INF/manifest.xml",
            '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest='
            '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry '
            'manifest:full-path="/" manifest:media-type='
            '"application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry '
            'manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
            "</manifest:manifest>",
        )
        archive.writestr("content.xml", content)
    return path


def test_an_ods_spreadsheet(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    path = make_ods(tmp_path / "fleet.ods")
    code, report = imported(invoke, path, "--skip-invalid")
    assert code == 0, report
    assert stored(home)["778899"]["purchase_date"] == "2024-05-06"
    assert report["rejected"] == 1 and "#N/A" in report["errors"][0]["message"]


@pytest.mark.subprocess
def test_a_workbook_on_stdin(tmp_path: Path, env: dict[str, str]) -> None:
    path = make_xlsx(
        tmp_path / "fleet.xlsx", [HEADER, ["PF1", "a", None, None, dt.date(2024, 1, 2), None]]
    )
    result = subprocess.run(
        [*velory_command(), "import", "-", "--json"],
        stdin=path.open("rb"),
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inserted"] == 1


# ---- writing workbooks --------------------------------------------------------------------


def test_export_as_a_workbook_read_back_by_two_readers(
    invoke: Invoke, tmp_path: Path, home: Path
) -> None:
    source = tmp_path / "fleet.csv"
    source.write_text(
        "Serial,Model,Email,Purchase Date,Renewal Date\n"
        'PF1,"=HYPERLINK(""http://x"")",asa@x.se,2024-01-02,2027-01-02\n'
        "0042,+46 ThinkPad,,2024-02-03,\n"
    )
    assert invoke(["import", str(source)]).exit_code == 0
    out = tmp_path / "export.xlsx"
    result = invoke(["export", "--output", str(out)])
    assert result.exit_code == 0, result.output

    book = openpyxl.load_workbook(out)
    sheet = book.active
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith("A1:")
    header = [cell.value for cell in sheet[1]]
    rows = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    model = rows["PF1"][header.index("model")]
    assert model.data_type == "s" and model.value == '=HYPERLINK("http://x")'
    assert rows["0042"][header.index("serial")].data_type == "s"  # not the number 42
    renewal = rows["PF1"][header.index("renewal_date")]
    assert renewal.is_date and renewal.value.date() == dt.date(2027, 1, 2)
    with zipfile.ZipFile(out) as archive:
        assert b"<f>" not in archive.read("xl/worksheets/sheet1.xml")  # no formula anywhere

    calamine = CalamineWorkbook.from_path(str(out)).get_sheet_by_index(0).to_python()
    by_serial = {row[0]: row for row in calamine[1:]}
    assert by_serial["PF1"][header.index("purchase_date")] == dt.date(2024, 1, 2)
    assert by_serial["0042"][header.index("model")] == "+46 ThinkPad"

    # Read back by velory itself, the export changes nothing.
    code, report = imported(invoke, out)
    assert code == 0 and report["unchanged"] == 2 and report["inserted"] == 0, report


def test_rejects_as_a_workbook(invoke: Invoke, tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "fleet.xlsx",
        [
            HEADER,
            ["PF1", "a", "bad address", None, dt.date(2024, 1, 2), None],
            ["PF2", "b", None, None, dt.date(2024, 1, 2), None],
        ],
    )
    rejects = tmp_path / "rejects.xlsx"
    result = invoke(["import", str(path), "--skip-invalid", "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    sheet = openpyxl.load_workbook(rejects).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == (*HEADER, "reason")
    assert rows[1][0] == "PF1" and "not an email address" in rows[1][-1]
    assert isinstance(rows[1][4], dt.datetime) and rows[1][4].date() == dt.date(2024, 1, 2)
    assert len(rows) == 2

    csv_rejects = tmp_path / "rejects.csv"
    assert invoke(["import", str(path), "--dry-run", "--rejects", str(csv_rejects)]).exit_code
    text = csv_rejects.read_text(encoding="utf-8-sig")
    assert "PF1,a,bad address,,2024-01-02" in text


# ---- other systems' headers ---------------------------------------------------------------


def test_column_names_the_header_of_a_field(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("Asset S/N,Bought,Owner\nPF1,2024-01-02,asa@x.se\n")
    code, report = imported(
        invoke,
        path,
        "--column",
        "serial=Asset S/N",
        "--column",
        "purchase_date=bought",
        "--column",
        "user_email=Owner",
    )
    assert code == 0, report
    assert stored(home)["PF1"]["user_email"] == "asa@x.se"

    result = invoke(["import", str(path), "--column", "serial=Computer Serial"])
    assert result.exit_code == 65
    assert '"Asset S/N", "Bought", "Owner"' in result.stderr
    result = invoke(["import", str(path), "--column", "colour=Asset S/N"])
    assert result.exit_code == 2 and "no field 'colour'" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_jamf_and_intune_headers(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    jamf = tmp_path / "jamf.csv"
    jamf.write_text(
        "Computer Name,Computer Serial,Real Name,Email Address,PO Date,Lease Expires\n"
        "Mac-1,C02XJ1,Åsa Ek,asa@x.se,2024-01-02,2027-01-02\n"
    )
    code, report = imported(invoke, jamf)
    assert code == 0, report
    mac = stored(home)["C02XJ1"]
    assert mac["user_name"] == "Åsa Ek" and mac["renewal_date"] == "2027-01-02"

    intune = tmp_path / "intune.csv"
    intune.write_text(
        "Device name,Serial number,Primary user email address,Primary user display name,"
        "Purchase date\nPC-1,INT1,bo@x.se,Bo Ek,2024-05-06\n"
    )
    code, report = imported(invoke, intune)
    assert code == 0, report
    pc = stored(home)["INT1"]
    assert (pc["user_email"], pc["user_name"]) == ("bo@x.se", "Bo Ek")


def test_map_columns_with_overrides() -> None:
    overrides = dict(parse_column_options(["serial=Tag", "model = Serial Number"]))
    columns = map_columns(["Serial Number", "Tag"], overrides)
    assert columns.positions[FIELDS.index("serial")] == 1
    assert columns.positions[FIELDS.index("model")] == 0
    assert cell_text(123456.0) == "123456" and cell_text(dt.date(2026, 1, 2)) == "2026-01-02"


# ---- Snipe-IT's API answer ----------------------------------------------------------------


def test_snipe_it_real_answer_is_read(invoke: Invoke) -> None:
    answer = SNIPE_IT / "api" / "hardware.json"
    if not answer.exists():
        pytest.skip("the real Snipe-IT answer is not here")
    code, report = imported(invoke, answer)
    # The real answer holds no dates, which a new device needs: every asset is rejected, by
    # its place in rows, and nothing is written.
    assert code == 65 and report["format"] == "snipe-it"
    assert [e["row"] for e in report["errors"]] == [1, 2, 3]


def test_snipe_it_answer_with_nested_values(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    answer = SNIPE_IT / "api" / "hardware.json"
    if not answer.exists():
        pytest.skip("the real Snipe-IT answer is not here")
    data = json.loads(answer.read_text())
    data["rows"][2]["purchase_date"] = {"date": "2024-01-02", "formatted": "2024-01-02 AM"}
    data["rows"][2]["asset_eol_date"] = {"date": "2027-01-02", "formatted": "2027-01-02"}
    data["rows"][2]["supplier"] = {"id": 4, "name": "Atea &amp; Co"}
    data["rows"][0]["purchase_date"] = {"date": "2024-01-02", "formatted": "x"}
    path = tmp_path / "answer.json"
    path.write_text(json.dumps(data, indent=2))
    result = invoke(["import", "-", "--json", "--skip-invalid"], input=path.read_bytes())
    assert result.exit_code == 0, result.output
    devices = stored(home)
    user = devices["0123456789"]
    assert user["user_email"] == "redacted@example.com"
    assert user["model"] == "Microsoft" and user["distributor"] == "Atea & Co"
    assert user["renewal_date"] == "2027-01-02"
    # Checked out to an asset, not a person: no user.
    assert devices["741852963"]["user_email"] is None or devices["741852963"]["user_email"] == ""

    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps(data))
    code, report = imported(invoke, compact, "--skip-invalid")
    assert code == 0 and report["unchanged"] == 2, report


# ---- the sample workbook ------------------------------------------------------------------


def test_the_sample_workbook_is_the_sample_fleet(invoke: Invoke, tmp_path: Path) -> None:
    book = SAMPLE_DATA / "devices.xlsx"
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    assert invoke(["--db", a, "import", str(SAMPLE_DATA / "devices.csv")]).exit_code == 0
    from_csv = {d["serial"]: d for d in json_out(invoke(["--db", a, "export", "--json"]))}
    result = invoke(["--db", b, "import", str(book), "--json"])
    assert result.exit_code == 0, result.output
    from_book = {d["serial"]: d for d in json_out(invoke(["--db", b, "export", "--json"]))}
    # The same 50 devices, dates and all, and the three phones added in Excel by their IMEI,
    # which Excel made numbers: velory reads them back as their digits.
    assert {k: v for k, v in from_book.items() if k in from_csv} == from_csv
    added = sorted(set(from_book) - set(from_csv))
    assert added == ["353918057362271", "356938035643809", "490154203237518"]
    rows = CalamineWorkbook.from_path(str(book)).get_sheet_by_index(0).to_python()
    assert sum(isinstance(row[0], float) for row in rows[1:]) == 3
    assert all(isinstance(row[6], dt.date) for row in rows[1:])
