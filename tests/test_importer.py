"""The importer: files as Excel and other asset systems write them, every row checked, every
problem reported by row and column, and the store changed all at once or not at all."""

from __future__ import annotations

import codecs
import errno
import io
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from velory_cli import dates, importer
from velory_cli.errors import InputUnreadable, OutputUnwritable
from velory_cli.folding import fold
from velory_cli.importer import (
    ALIASES,
    FIELDS,
    ImportOptions,
    ImportReport,
    RejectsWriter,
    import_file,
    job,
    map_columns,
    open_source,
)
from velory_cli.importer.writes import ImportWrites
from velory_cli.store import Store

NOW = "2026-11-01T09:00:00Z"
LATER = "2026-11-02T09:00:00Z"
HEADER = "Serial,Model,Email,Full Name,Distributor,Purchase Date,Renewal Date,Notes\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def run_import(
    store: Store,
    path: Path,
    *,
    now: str = NOW,
    rejects: RejectsWriter | None = None,
    **options: Any,
) -> ImportReport:
    with open_source(str(path)) as source:
        return import_file(
            store, source, ImportOptions(**options), now=now, actor="tester", rejects=rejects
        )


def devices(store: Store) -> dict[str, dict[str, Any]]:
    rows = store.conn.execute("SELECT * FROM devices ORDER BY id").fetchall()
    return {row["serial"]: dict(row) for row in rows}


def history(store: Store, serial: str) -> list[dict[str, Any]]:
    device = store.device(serial)
    assert device is not None
    return [entry.to_dict() for entry in store.history(device.id)]


def errors(report: ImportReport) -> list[tuple[int | None, str | None, str]]:
    return [(e["row"], e["column"], e["message"]) for e in report.to_dict()["errors"]]


def store_snapshot(store: Store) -> list[tuple[Any, ...]]:
    tables = ("devices", "history", "notes", "notices")
    return [tuple(row) for t in tables for row in store.conn.execute(f"SELECT * FROM {t}")]


# ---- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "alias"), [(field, alias) for field, aliases in ALIASES.items() for alias in aliases]
)
def test_every_alias_of_the_table_is_recognised(field: str, alias: str) -> None:
    index = FIELDS.index(field)
    for spelling in (alias, alias.upper(), alias.title(), alias.replace(" ", "_")):
        columns = map_columns(["x", spelling])
        assert columns.positions[index] == 1, spelling
        assert columns.names[index] == spelling


def test_headers_ignore_case_spaces_underscores_dashes_dots_and_colons() -> None:
    columns = map_columns(["SERIAL-NO.", " e_mail ", "Purchase:Date", "Asset EOL.Date"])
    assert columns.positions[FIELDS.index("serial")] == 0
    assert columns.positions[FIELDS.index("user_email")] == 1
    assert columns.positions[FIELDS.index("purchase_date")] == 2
    assert columns.positions[FIELDS.index("renewal_date")] == 3


def test_the_alias_earlier_in_the_table_wins_whatever_the_column_order() -> None:
    columns = map_columns(["Username", "Email", "Full Name", "Serial"])
    assert columns.names[FIELDS.index("user_name")] == "Full Name"
    assert columns.ignored == ("Username (Full Name is used)",)
    columns = map_columns(["Supplier", "Distributor", "Serial Number", "SN"])
    assert columns.names[FIELDS.index("distributor")] == "Distributor"
    assert columns.names[FIELDS.index("serial")] == "Serial Number"
    # "Serial Number" is the table's second alias even though it also reads as "serialnumber".
    columns = map_columns(["Serial No", "SerialNumber", "E-Mail", "Email"])
    assert columns.names[FIELDS.index("serial")] == "SerialNumber"
    # "E-Mail" and "Email" read alike: the same header twice, so the first is used.
    assert columns.names[FIELDS.index("user_email")] == "E-Mail"


def test_a_repeated_header_uses_the_first_and_other_columns_are_named_once() -> None:
    columns = map_columns(["Serial", "Category", "Company", "", "Category", "Company", " "])
    assert columns.positions[FIELDS.index("category")] == 1
    assert columns.ignored == ("Company", "Category (the first Category is used)")


# ---- files as they come --------------------------------------------------------------------


def test_excel_csv_with_bom_semicolons_and_crlf(store: Store, tmp_path: Path) -> None:
    content = (
        "\ufeffSerienummer;Serial;Model;E-mail;Full name;Supplier;Purchase date;Notes\r\n"
        'x;PF1;ThinkPad T14;asa@nordlys.se;Åsa Lindström;Atea;01.12.2023;"Bytt skärm\r\n'
        'andra raden"\r\n'
        "x;PF2;MacBook Air;bo@nordlys.se;Bo Ek;Dustin AB;2024-02-29;\r\n"
    )
    report = run_import(store, write(tmp_path, "assets.csv", content.encode("utf-8")))
    assert report.exit_code == 0, errors(report)
    assert (report.inserted, report.encoding, report.warnings[:0]) == (2, "utf-8", [])
    stored = devices(store)
    assert stored["PF1"]["user_name"] == "Åsa Lindström"
    assert stored["PF1"]["import_notes"] == "Bytt skärm\nandra raden"
    assert stored["PF1"]["renewal_date"] == "2026-12-01"
    assert stored["PF2"]["renewal_date"] == "2027-02-28"
    assert stored["PF2"]["distributor"] == "Dustin AB"
    assert report.warnings == ["columns velory does not import were ignored: Serienummer"]


def test_windows_1252_bytes_are_read_and_the_encoding_is_named(
    store: Store, tmp_path: Path
) -> None:
    content = (HEADER + "PF1,X1,e@x.se,Sjöberg – Åkesson,Atea,2024-01-01,,€ note\r\n").encode(
        "cp1252"
    )
    report = run_import(store, write(tmp_path, "assets.csv", content))
    assert report.exit_code == 0, errors(report)
    assert report.encoding == "windows-1252"
    assert report.to_dict()["encoding"] == "windows-1252"
    assert any("not UTF-8: read it as Windows-1252" in w for w in report.warnings)
    assert devices(store)["PF1"]["user_name"] == "Sjöberg – Åkesson"
    assert devices(store)["PF1"]["import_notes"] == "€ note"


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_a_windows_1252_byte_far_into_the_file_starts_the_import_again(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skip_invalid: bool
) -> None:
    """UTF-8 is taken on trust; a Windows-1252 byte deep in the file undoes everything read so
    far (devices, errors, rejects) and the file is read again from its start."""
    monkeypatch.setattr(job, "CHUNK_ROWS", 3)
    rows = [f"S{i},X,,,,2024-01-01,," for i in range(20)]
    rows[2] = "BAD,X,,,,not a date,,"
    rows[15] = "S15,X,,Sjöberg,,2024-01-01,,"
    content = (HEADER + "\n".join(rows) + "\n").encode("cp1252")
    out = io.StringIO()
    report = run_import(
        store,
        write(tmp_path, "a.csv", content),
        rejects=RejectsWriter(out),
        skip_invalid=skip_invalid,
    )
    assert report.encoding == "windows-1252"
    assert [w for w in report.warnings if "Windows-1252" in w] == [report.warnings[0]]
    assert errors(report) == [
        (4, "Purchase Date", "'not a date' is not a date; write it like " + dates.FORMS)
    ]
    assert (report.rows, report.rejected) == (20, 1)
    assert out.getvalue().count("BAD,") == 1
    stored = devices(store)
    if skip_invalid:
        assert (report.inserted, len(stored)) == (19, 19)
        assert stored["S15"]["user_name"] == "Sjöberg"
    else:
        assert (report.exit_code, stored) == (65, {})


def test_bytes_windows_1252_leaves_undefined_are_read_as_latin_1(
    store: Store, tmp_path: Path
) -> None:
    # 0x81 and 0x8d mean nothing in Windows-1252; they sit in a column velory ignores.
    content = b"Serial,Location,Purchase Date\rPF1,Tu\x80\x8depi \x81,2024-01-01\r"
    report = run_import(store, write(tmp_path, "assets.csv", content))
    assert report.exit_code == 0, errors(report)
    assert report.encoding == "windows-1252"
    assert any("2 bytes Windows-1252 does not define read as Latin-1" in w for w in report.warnings)


def test_the_encoding_option_overrides_the_guess(store: Store, tmp_path: Path) -> None:
    content = (HEADER + "PF1,X1,,Sjöberg,,2024-01-01,,\n").encode("latin-1")
    report = run_import(store, write(tmp_path, "a.csv", content), encoding="iso8859-1")
    assert report.exit_code == 0, errors(report)
    assert report.encoding == "latin-1"
    assert report.warnings == []
    assert devices(store)["PF1"]["user_name"] == "Sjöberg"


def test_a_wrong_encoding_option_is_a_file_error_not_a_crash(store: Store, tmp_path: Path) -> None:
    content = (HEADER + "PF1,X1,,Sjöberg,,2024-01-01,,\n").encode("cp1252")
    report = run_import(store, write(tmp_path, "a.csv", content), encoding="utf-8")
    assert report.exit_code == 65
    assert report.file_error is not None and "cannot be read as utf-8" in report.file_error.message
    assert devices(store) == {}


def test_utf16_with_its_byte_order_mark(store: Store, tmp_path: Path) -> None:
    content = "Serial\tModel\tPurchase Date\r\nPF1\tÅngström\t2024-01-01\r\n".encode("utf-16")
    report = run_import(store, write(tmp_path, "unicode.txt", content))
    assert report.exit_code == 0, errors(report)
    assert report.encoding == "utf-16"
    assert devices(store)["PF1"]["model"] == "Ångström"


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_line_ends_and_delimiters(
    store: Store, tmp_path: Path, line_end: str, delimiter: str
) -> None:
    rows = [
        ["Serial", "Model", "Purchase Date", "Notes"],
        ["PF1", "Model, with comma; and semicolon", "2024-01-01", f'"line one{line_end}two"'],
        ["PF2", "Other", "2024-01-02", ""],
    ]

    def cell(value: str) -> str:
        if value.startswith('"'):
            return value
        return f'"{value}"' if ("," in value or ";" in value) else value

    text = line_end.join(delimiter.join(cell(v) for v in row) for row in rows) + line_end
    report = run_import(store, write(tmp_path, "a.csv", text))
    assert report.exit_code == 0, errors(report)
    stored = devices(store)
    assert stored["PF1"]["model"] == "Model, with comma; and semicolon"
    assert stored["PF1"]["import_notes"] == "line one\ntwo"
    assert stored["PF2"]["import_notes"] is None


def test_excel_sep_line_names_the_separator(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "sep=;\nSerial;Purchase Date\nPF1;2024-01-01\nPF2;x\n")
    report = run_import(store, path)
    # Excel does not show the sep= line: the header is row 1 there, and here.
    assert errors(report) == [(3, "Purchase Date", "'x' is not a date; " + _FORMS)]


_FORMS = "write it like 2026-12-01, 01.12.2026, 2026/12/01 or 12/1/2026"


def test_json_array_of_objects(store: Store, tmp_path: Path) -> None:
    data = [
        {"serial": "PF1", "model": "X1", "purchase_date": "2024-01-01", "asset_id": 7},
        {"Serial Number": 12345, "Purchased": "01.02.2024", "Comments": None},
    ]
    report = run_import(store, write(tmp_path, "a.json", json.dumps(data, indent=2)))
    assert report.exit_code == 0, errors(report)
    assert report.format == "json"
    assert sorted(devices(store)) == ["12345", "PF1"]
    assert any("asset_id" in w for w in report.warnings)


def test_json_rows_are_element_positions(store: Store, tmp_path: Path) -> None:
    text = """[
        {"serial": "PF1", "purchase_date": "2024-01-01"},
        {"serial": "PF2", "purchase_date": "1/2/2024"},
        {"serial": 6.37702E+15, "purchase_date": "2024-01-01"},
        {"serial": "PF4", "purchase_date": "2024-01-01", "model": ["a"]}
    ]"""
    report = run_import(store, write(tmp_path, "a.json", text))
    assert [(row, column) for row, column, _ in errors(report)] == [
        (2, "purchase_date"),
        (3, "serial"),
        (4, "model"),
    ]
    assert "scientific notation" in errors(report)[1][2]
    assert "must be text, not a list" in errors(report)[2][2]


def test_a_large_json_array_streams_across_reads(store: Store, tmp_path: Path) -> None:
    notes = "n" * 5000
    data = [{"serial": f"S{i}", "purchase_date": "2024-01-01", "notes": notes} for i in range(600)]
    report = run_import(store, write(tmp_path, "big.json", json.dumps(data)))
    assert report.exit_code == 0, errors(report)
    assert report.inserted == 600


def test_json_lines_rows_are_line_numbers(store: Store, tmp_path: Path) -> None:
    text = (
        '{"serial": "PF1", "purchase_date": "2024-01-01"}\n'
        "\n"
        '{"serial": "PF2", "email": "not-an-email", "purchase_date": "2024-01-01"}\n'
    )
    report = run_import(store, write(tmp_path, "a.jsonl", text))
    assert report.format == "jsonl"
    assert errors(report) == [(3, "email", "'not-an-email' is not an email address")]


def test_an_api_answer_on_one_line_over_1_mib_is_read_as_one(store: Store, tmp_path: Path) -> None:
    # Snipe-IT answers a page of up to 500 assets on one line, which often runs over 1 MiB.
    assets = [
        {"serial": f"SN{n}", "purchase_date": {"date": "2024-01-01"}, "notes": "n" * 3000}
        for n in range(400)
    ]
    text = json.dumps({"total": 400, "rows": assets}) + "\n"
    assert len(text) > 1024 * 1024 and text.count("\n") == 1
    report = run_import(store, write(tmp_path, "hardware.json", text))
    assert (report.exit_code, report.inserted, report.format) == (0, 400, "snipe-it")
    # A line that starts like an answer and is none is a row over 1 MiB, and the lines after
    # it are read on.
    other = '{"total": 1, "serial": "L1", "notes": "' + "x" * 1024 * 1024 + '"}\n'
    other += '{"serial": "L2", "renewal": "2027-01-01"}\n'
    report = run_import(store, write(tmp_path, "lines.jsonl", other), skip_invalid=True)
    assert errors(report) == [(1, "notes", "the line is over 1 MiB (1,048,617 characters)")]
    assert (report.exit_code, report.inserted) == (0, 1)


def test_format_is_sniffed_without_a_known_extension(store: Store, tmp_path: Path) -> None:
    jsonl = '  {"serial": "PF1", "purchase_date": "2024-01-01"}\n'
    assert run_import(store, write(tmp_path, "export", jsonl)).format == "jsonl"
    array = '\n[{"serial": "PF2", "purchase_date": "2024-01-01"}]'
    assert run_import(store, write(tmp_path, "export2", array)).format == "json"
    csv_text = "serial,purchase date\nPF3,2024-01-01\n"
    assert run_import(store, write(tmp_path, "export3", csv_text)).format == "csv"
    assert sorted(devices(store)) == ["PF1", "PF2", "PF3"]


def test_a_json_file_of_one_object_a_line_is_json_lines(store: Store, tmp_path: Path) -> None:
    text = '{"serial": "PF1", "purchase_date": "2024-01-01"}\n'
    report = run_import(store, write(tmp_path, "a.json", text))
    assert (report.exit_code, report.format, report.inserted) == (0, "jsonl", 1)


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf"])
def test_a_file_without_rows_is_no_error(store: Store, tmp_path: Path, content: bytes) -> None:
    report = run_import(store, write(tmp_path, "a.csv", content))
    assert report.exit_code == 0
    assert report.to_dict()["errors"] == []
    assert (report.rows, report.inserted) == (0, 0)


def test_a_header_without_rows_is_no_error(store: Store, tmp_path: Path) -> None:
    report = run_import(store, write(tmp_path, "a.csv", HEADER))
    assert (report.exit_code, report.rows) == (0, 0)
    assert run_import(store, write(tmp_path, "a.json", "[]")).exit_code == 0


# ---- problems with the whole file ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "row", "message"),
    [
        ("a.csv", "Name,Model\nx,y\n", 1, "no serial column"),
        ("a.csv", "\n\nName,Model\nx,y\n", 3, "no serial column"),
        ("a.csv", 'Serial,Purchase Date\nPF1,"2024-01-01\nPF2,2024-01-01\n', 2, "never closed"),
        ("a.csv", 'Serial,Purchase Date\n"PF1"x,2024-01-01\n', 2, "after its closing quote"),
        ("a.csv", b"\x00\x01\x02\x03binary\n", None, "binary data"),
        ("a.json", '[{"serial": "PF1"}, {"serial": }]', 2, "not valid JSON at line 1"),
        ("a.json", '[{"serial": "PF1"}, 42]', 2, "not an object"),
        ("a.json", '[{"serial": "PF1"}', 2, "never closed"),
        ("a.json", '[{"serial": "PF1", "purchase_date": "2024-01-01"}] x', None, "after"),
        ("a.json", '"just a string"', None, "not a JSON array"),
        ("a.json", "[" * 100_000, 1, "nested too deeply"),
        ("a.json", '[{"serial": "PF\\ud800"}]', 1, "lone surrogate"),
        ("a.jsonl", '{"serial": "PF1"}\n{"serial": \n', 2, "line 2 is not valid JSON"),
        ("a.jsonl", '{"serial": "PF1"}\n\n[1, 2]\n', 3, "line 3 is not a JSON object"),
    ],
)
def test_a_whole_file_problem_writes_nothing_and_says_where(
    store: Store,
    tmp_path: Path,
    name: str,
    content: str | bytes,
    row: int | None,
    message: str,
) -> None:
    report = run_import(store, write(tmp_path, name, content))
    assert report.exit_code == 65
    assert report.file_error is not None
    assert report.file_error.row == row
    assert message in report.file_error.message
    assert report.to_dict()["errors"][-1] == {
        "row": row,
        "column": None,
        "message": report.file_error.message,
    }
    assert devices(store) == {}


def test_no_serial_column_names_what_it_found(store: Store, tmp_path: Path) -> None:
    report = run_import(store, write(tmp_path, "a.csv", "Asset Tag,Purchase Date\n1,2024-01-01\n"))
    assert report.file_error is not None
    assert '"serial number"' in report.file_error.message
    assert "found Asset Tag, Purchase Date" in report.file_error.message


# ---- rows velory rejects -------------------------------------------------------------------


def test_each_reason_a_row_is_rejected_with_its_row_and_column(
    store: Store, tmp_path: Path
) -> None:
    text = (
        "Serial No,Model,E-Mail,Purchased,Lease End,Notes,Ignored\n"
        "OK1,M,ok@x.se,2024-01-01,,,\n"  # 2
        ",M,,2024-01-01,,,\n"  # 3: empty serial
        "6.37702E+15,M,,2024-01-01,,,\n"  # 4: scientific notation
        "ok1,M,,2024-01-01,,,\n"  # 5: repeats row 2 (any case)
        "OK5,M,not an email,2024-01-01,,,\n"  # 6
        "OK6,M,,31.02.2026,,,\n"  # 7: no such day
        "OK7,M,,2026-01-01,2025-01-01,,\n"  # 8: renewal before purchase
        "OK8,M,,,,,\n"  # 9: no date
        "OK9,M\x07,,2024-01-01,,,\n"  # 10: control character
        'OK10,M,,2024-01-01,,"tab\tand\nbreak",\x07 ignored\n'  # 11: fine
        "OK11,M,,03/04/2026,,,\n"  # 12: ambiguous
        "OK12,M,,2024-01-01,,note \x1b[31m,\n"  # 13: escape in notes
    )
    report = run_import(store, write(tmp_path, "a.csv", text))
    found = errors(report)
    assert [(row, column) for row, column, _ in found] == [
        (3, "Serial No"),
        (4, "Serial No"),
        (5, "Serial No"),
        (6, "E-Mail"),
        (7, "Purchased"),
        (8, "Lease End"),
        (9, "Purchased"),
        (10, "Model"),
        (12, "Purchased"),
        (13, "Notes"),
    ]
    messages = [message for _, _, message in found]
    assert messages[0] == "serial is empty"
    assert "scientific notation" in messages[1] and "lost" in messages[1]
    assert messages[2] == "serial 'ok1' is already in row 2"
    assert messages[3] == "'not an email' is not an email address"
    assert messages[4] == "'31.02.2026' is not a date: February 2026 has no day 31"
    assert messages[5] == "the renewal date 2025-01-01 is before the purchase date 2026-01-01"
    assert messages[6] == "a new device needs a purchase or a renewal date"
    assert "control character (U+0007)" in messages[7]
    assert "--dayfirst" in messages[8]
    assert "U+001B" in messages[9]
    assert (report.rejected, report.rows, report.exit_code) == (10, 12, 65)
    assert devices(store) == {}


@pytest.mark.parametrize("serial", ["6.37702E+15", "6.37702e15", "6,37702E15", "1E-05", "6.4e+15"])
def test_a_serial_in_scientific_notation_is_rejected_with_or_without_a_sign(
    store: Store, tmp_path: Path, serial: str
) -> None:
    text = f"Serial;Purchased\nPF1;2024-01-01\n{serial};2024-01-01\nE15X;2024-01-01\n"
    report = run_import(store, write(tmp_path, "a.csv", text), skip_invalid=True)
    assert [(row, column) for row, column, _ in errors(report)] == [(3, "Serial")]
    assert "scientific notation" in errors(report)[0][2]
    assert sorted(devices(store)) == ["E15X", "PF1"]


@pytest.mark.parametrize("serial", ["0E0", "0E00", "1E5", "9E-1", "2E3F", "0.5E+15", "00E12"])
def test_a_serial_that_is_no_number_a_spreadsheet_writes_is_a_serial(
    store: Store, tmp_path: Path, serial: str
) -> None:
    # A spreadsheet writes a normalised mantissa (zero is "0") and a two- or three-digit
    # exponent: these were typed as they are.
    text = f"Serial;Purchased\n{serial};2024-01-01\n"
    report = run_import(store, write(tmp_path, "a.csv", text))
    assert (report.exit_code, errors(report)) == (0, [])
    assert list(devices(store)) == [serial]


@pytest.mark.parametrize(
    "email",
    ["a@b", "a b@c.se", "a@b@c.se", "@c.se", "a@.se", "a@c..se", "a,b@c.se", "<a@c.se>", "a.@c.se"],
)
def test_emails_that_are_not_emails(store: Store, tmp_path: Path, email: str) -> None:
    path = write(tmp_path, "a.csv", f'Serial,Email,Purchase Date\nPF1,"{email}",2024-01-01\n')
    assert errors(run_import(store, path)) == [(2, "Email", f"{email!r} is not an email address")]


@pytest.mark.parametrize(
    "email", ["a@b.se", "First.Last+tag@Sub.Example.COM", "åsa@nordlys.se", "o'brien@x.ie"]
)
def test_emails_are_stored_as_given(store: Store, tmp_path: Path, email: str) -> None:
    path = write(tmp_path, "a.csv", f"Serial,Email,Purchase Date\nPF1,  {email} ,2024-01-01\n")
    assert run_import(store, path).exit_code == 0
    assert devices(store)["PF1"]["user_email"] == email


def test_the_repeat_names_the_first_row_across_chunks(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job, "CHUNK_ROWS", 2)
    lines = [f"S{i},2024-01-01" for i in range(7)] + ["s1,2024-01-01", "S1,2024-01-01"]
    report = run_import(store, write(tmp_path, "a.csv", "Serial,Purchased\n" + "\n".join(lines)))
    assert errors(report) == [
        (9, "Serial", "serial 's1' is already in row 3"),
        (10, "Serial", "serial 'S1' is already in row 3"),
    ]


@pytest.mark.parametrize("stored", [False, True], ids=["empty store", "store with devices"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["write", "dry run"])
def test_repeats_are_found_in_every_chunk_however_the_rows_are_placed(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: bool, dry_run: bool
) -> None:
    """Each way a serial is placed (a new device written, a stored device, a new serial not
    written, a rejected row) still finds a later row with the same serial, chunks apart."""
    if stored:
        run_import(store, write(tmp_path, "first.csv", "Serial,Purchased\nST1,2024-01-01\n"))
    monkeypatch.setattr(job, "CHUNK_ROWS", 2)
    lines = [
        "N1,,2024-01-01",  # row 2: a new device
        "BAD,not-an-email,2024-01-01",  # row 3: rejected, holds BAD
        "ST1,,2024-01-01",  # row 4: a stored device (when there is one)
        "N2,,2024-01-01",
        "n1,,2024-01-01",  # row 6: repeats row 2
        "bad,ok@x.se,2024-01-01",  # row 7: repeats row 3 (valid itself)
        "St1,,2024-01-01",  # row 8: repeats row 4
        "N1,bad-too,2024-01-01",  # row 9: rejected, and repeats row 2
        "n2,,2024-01-01",  # row 10: repeats row 5
        "N2,,2024-01-01",  # row 11: repeats row 5 too (not row 10)
        "N3,,2024-01-01",
    ]
    path = write(tmp_path, "a.csv", "Serial,Email,Purchased\n" + "\n".join(lines) + "\n")
    report = run_import(store, path, skip_invalid=True, dry_run=dry_run)
    assert errors(report) == [
        (3, "Email", "'not-an-email' is not an email address"),
        (6, "Serial", "serial 'n1' is already in row 2"),
        (7, "Serial", "serial 'bad' is already in row 3"),
        (8, "Serial", "serial 'St1' is already in row 4"),
        (9, "Email", "'bad-too' is not an email address"),
        (9, "Serial", "serial 'N1' is already in row 2"),
        (10, "Serial", "serial 'n2' is already in row 5"),
        (11, "Serial", "serial 'N2' is already in row 5"),
    ]
    assert (report.inserted, report.unchanged, report.rejected) == (
        (3, 1, 7) if stored else (4, 0, 7)
    )
    expected = [] if dry_run else ["N1", "N2", "N3", "ST1"]
    assert sorted(devices(store)) == (["ST1"] if stored and dry_run else expected)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 1000])
def test_a_repeat_names_the_first_row_with_the_serial_however_the_chunks_fall(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    monkeypatch.setattr(job, "CHUNK_ROWS", chunk_rows)
    serials = ["A", "B", "C", "b", "B", "D", "a", "A"]
    lines = [f"{serial},2024-01-01" for serial in serials]
    path = write(tmp_path, "a.csv", "Serial,Purchased\n" + "\n".join(lines) + "\n")
    report = run_import(store, path, skip_invalid=True)
    assert errors(report) == [
        (5, "Serial", "serial 'b' is already in row 3"),
        (6, "Serial", "serial 'B' is already in row 3"),
        (8, "Serial", "serial 'a' is already in row 2"),
        (9, "Serial", "serial 'A' is already in row 2"),
    ]
    assert sorted(devices(store)) == ["A", "B", "C", "D"]
    assert {row["serial"]: row["import_row"] for row in devices(store).values()} == {
        "A": 2,
        "B": 3,
        "C": 4,
        "D": 7,
    }


def test_a_file_found_invalid_half_way_still_finds_repeats_of_the_rows_before(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job, "CHUNK_ROWS", 2)
    lines = ["A,,2024-01-01", "B,,2024-01-01", "C,bad,2024-01-01", "D,,2024-01-01", "a,,2024-01-01"]
    path = write(tmp_path, "a.csv", "Serial,Email,Purchased\n" + "\n".join(lines) + "\n")
    report = run_import(store, path)
    assert errors(report) == [
        (4, "Email", "'bad' is not an email address"),
        (6, "Serial", "serial 'a' is already in row 2"),
    ]
    assert (report.exit_code, report.inserted, devices(store)) == (65, 0, {})


def test_a_rejected_row_still_holds_its_serial(store: Store, tmp_path: Path) -> None:
    text = "Serial,Email,Purchased\nPF1,bad,2024-01-01\nPF1,ok@x.se,2024-01-01\n"
    report = run_import(store, write(tmp_path, "a.csv", text), skip_invalid=True)
    assert [message for _, _, message in errors(report)] == [
        "'bad' is not an email address",
        "serial 'PF1' is already in row 2",
    ]
    assert devices(store) == {}


def test_sql_looking_values_are_just_values(store: Store, tmp_path: Path) -> None:
    text = (
        "Serial,Model,Full Name,Purchase Date\n"
        '"\'; DROP TABLE devices; --","Robert\'); DELETE FROM history;--",'
        '"x"" OR 1=1 --",2024-01-01\n'
    )
    assert run_import(store, write(tmp_path, "a.csv", text)).exit_code == 0
    stored = devices(store)["'; DROP TABLE devices; --"]
    assert stored["model"] == "Robert'); DELETE FROM history;--"
    assert stored["user_name"] == 'x" OR 1=1 --'


# ---- all or nothing ------------------------------------------------------------------------


def test_one_invalid_row_writes_nothing_by_default(store: Store, tmp_path: Path) -> None:
    text = HEADER + "PF1,X,,,,2024-01-01,,\nPF2,X,,,,not a date,,\n"
    report = run_import(store, write(tmp_path, "a.csv", text))
    assert report.exit_code == 65
    assert report.to_dict()["inserted"] == 0
    assert (report.rejected, report.valid, report.written) == (1, 1, False)
    assert devices(store) == {}


def test_skip_invalid_writes_the_valid_rows(store: Store, tmp_path: Path) -> None:
    text = HEADER + "PF1,X,,,,2024-01-01,,\nPF2,X,,,,not a date,,\n"
    report = run_import(store, write(tmp_path, "a.csv", text), skip_invalid=True)
    assert report.exit_code == 0
    assert (report.inserted, report.rejected, report.written) == (1, 1, True)
    assert list(devices(store)) == ["PF1"]


def test_a_dry_run_counts_what_would_happen_and_writes_nothing(
    store: Store, tmp_path: Path
) -> None:
    run_import(store, write(tmp_path, "a.csv", HEADER + "PF1,X,,,,2024-01-01,,\n"))
    before = store_snapshot(store)
    text = HEADER + "PF1,Y,,,,2024-01-01,,\nPF2,X,,,,2024-01-01,,\n"
    report = run_import(store, write(tmp_path, "b.csv", text), dry_run=True, now=LATER)
    assert (report.inserted, report.updated, report.dry_run, report.written) == (1, 1, True, False)
    assert store_snapshot(store) == before


def test_a_failure_half_way_leaves_the_store_as_it_was(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(store, write(tmp_path, "a.csv", HEADER + "PF0,X,,,,2024-01-01,,\n"))
    before = store_snapshot(store)
    monkeypatch.setattr(job, "CHUNK_ROWS", 10)
    calls = 0
    real_write = ImportWrites.insert

    def failing_write(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # the admin pressed Ctrl-C in the middle of the import
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ImportWrites, "insert", failing_write)
    rows = "".join(f"S{i},X,,,,2024-01-01,,\n" for i in range(50)) + "PF0,Changed,,,,,,\n"
    with pytest.raises(KeyboardInterrupt):
        run_import(store, write(tmp_path, "b.csv", HEADER + rows))
    assert calls == 3
    assert store_snapshot(store) == before
    assert not store.conn.in_transaction


# ---- updates -------------------------------------------------------------------------------


def test_new_devices_are_active_imported_with_history(store: Store, tmp_path: Path) -> None:
    text = HEADER + "PF1,X1,a@x.se,Åsa,Atea,2024-01-01,,First note\n"
    report = run_import(store, write(tmp_path, "a.csv", text))
    assert report.to_dict()["inserted"] == 1
    stored = devices(store)["PF1"]
    assert (stored["status"], stored["source"]) == ("active", "imported")
    assert stored["import_notes"] == "First note"
    assert (stored["created_at"], stored["updated_at"]) == (NOW, NOW)
    assert history(store, "PF1") == [
        {
            "at": NOW,
            "actor": "tester",
            "action": "import",
            "from_status": None,
            "to_status": "active",
            "details": None,
        }
    ]


def test_reimporting_the_same_file_changes_nothing(store: Store, tmp_path: Path) -> None:
    text = HEADER + "PF1,X1,a@x.se,Åsa,Atea,2024-01-01,,Note\nPF2,X2,,,,,2027-01-01,\n"
    path = write(tmp_path, "a.csv", text)
    run_import(store, path)
    before = store_snapshot(store)
    report = run_import(store, path, now=LATER)
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 2)
    assert report.written is False
    assert store_snapshot(store) == before


def test_an_edited_file_updates_exactly_the_edited_devices(store: Store, tmp_path: Path) -> None:
    run_import(
        store,
        write(
            tmp_path,
            "a.csv",
            HEADER
            + "PF1,X1,a@x.se,Åsa,Atea,2024-01-01,,Note\n"
            + "PF2,X2,b@x.se,Bo,Atea,2024-01-01,,\n"
            + "PF3,X3,c@x.se,Cy,Atea,2024-01-01,,\n",
        ),
    )
    edited = (
        HEADER
        + " pf1 ,X1 Gen 2,a@x.se,Åsa,Atea,2024-01-01,2028-01-01,Note\n"
        + "PF2,X2,,,,2024-01-01,,\n"  # empty cells never clear stored values
        + "PF3,X3,c@x.se,Cy,Atea,2024-01-01,,\n"
    )
    report = run_import(store, write(tmp_path, "b.csv", edited), now=LATER)
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 2)
    stored = devices(store)
    assert sorted(stored) == ["PF1", "PF2", "PF3"]  # the serial keeps its first spelling
    assert stored["PF1"]["model"] == "X1 Gen 2"
    assert stored["PF1"]["renewal_date"] == "2028-01-01"
    assert stored["PF1"]["updated_at"] == LATER
    assert stored["PF2"]["user_email"] == "b@x.se" and stored["PF2"]["updated_at"] == NOW
    last = history(store, "PF1")[-1]
    assert last == {
        "at": LATER,
        "actor": "tester",
        "action": "import",
        "from_status": "active",
        "to_status": "active",
        "details": {
            "model": {"old": "X1", "new": "X1 Gen 2"},
            "renewal_date": {"old": "2027-01-01", "new": "2028-01-01"},
        },
    }
    assert len(history(store, "PF2")) == 1 and len(history(store, "PF3")) == 1


def test_import_never_changes_a_status_and_never_touches_a_removed_device(
    store: Store, tmp_path: Path
) -> None:
    run_import(
        store, write(tmp_path, "a.csv", HEADER + "PF1,X,,,,2024-01-01,,\nPF2,X,,,,2024-01-01,,\n")
    )
    with store.transaction():
        store.conn.execute("UPDATE devices SET status = 'renewal_started' WHERE serial = 'PF1'")
        store.conn.execute("UPDATE devices SET status = 'removed' WHERE serial = 'PF2'")
    before_removed = devices(store)["PF2"]
    text = HEADER + "PF1,New,,,,2024-01-01,,\nPF2,New,,,,2024-01-01,,\n"
    report = run_import(store, write(tmp_path, "b.csv", text), now=LATER)
    assert (report.updated, report.skipped) == (1, 1)
    stored = devices(store)
    assert (stored["PF1"]["model"], stored["PF1"]["status"]) == ("New", "renewal_started")
    assert stored["PF2"] == before_removed
    assert history(store, "PF1")[-1]["from_status"] == "renewal_started"
    assert history(store, "PF1")[-1]["to_status"] == "renewal_started"


def test_the_renewal_date_comes_from_the_purchase_date_and_term(
    store: Store, tmp_path: Path
) -> None:
    text = HEADER + "PF1,X,,,,2024-02-29,,\nPF2,X,,,,2024-02-29,2025-06-30,\n"
    run_import(store, write(tmp_path, "a.csv", text), term_months=12)
    stored = devices(store)
    assert stored["PF1"]["renewal_date"] == "2025-02-28"
    assert stored["PF2"]["renewal_date"] == "2025-06-30"
    run_import(store, write(tmp_path, "b.csv", "Serial,Purchase Date\nPF3,2024-02-29\n"))
    assert devices(store)["PF3"]["renewal_date"] == "2027-02-28"


def test_a_renewal_date_alone_is_enough(store: Store, tmp_path: Path) -> None:
    report = run_import(store, write(tmp_path, "a.csv", "SN,EOL Date\nPF1,12/31/2027\n"))
    assert report.exit_code == 0, errors(report)
    stored = devices(store)["PF1"]
    assert (stored["purchase_date"], stored["renewal_date"]) == (None, "2027-12-31")


def test_date_order_option_reads_ambiguous_dates(store: Store, tmp_path: Path) -> None:
    text = "Serial,Purchase Date\nPF1,03/04/2024\nPF2,2024-03-04\n"
    run_import(store, write(tmp_path, "a.csv", text), date_order="dayfirst")
    assert devices(store)["PF1"]["purchase_date"] == "2024-04-03"
    assert devices(store)["PF2"]["purchase_date"] == "2024-03-04"


# ---- the rejects file ----------------------------------------------------------------------


def test_rejects_keep_the_original_columns_and_add_a_reason(store: Store, tmp_path: Path) -> None:
    import io

    text = (
        "Serial;Model;Extra;Purchased\nPF1;X;keep me;2024-01-01\n;Y;lost serial;2024-01-01\nPF3\n"
    )
    out = io.StringIO()
    report = run_import(store, write(tmp_path, "a.csv", text), rejects=RejectsWriter(out))
    assert report.rejected == 2
    lines = out.getvalue().split("\r\n")
    assert lines[0] == "\ufeffSerial;Model;Extra;Purchased;reason"
    assert lines[1] == ";Y;lost serial;2024-01-01;row 3, Serial: serial is empty"
    assert lines[2] == "PF3;;;;row 4, Purchased: a new device needs a purchase or a renewal date"
    assert lines[3] == ""


def test_json_rejects_are_the_objects_with_a_reason(store: Store, tmp_path: Path) -> None:
    data = [{"serial": "PF1", "purchase_date": "x", "n": 1}, {"serial": "PF2"}]
    out = io.StringIO()
    run_import(store, write(tmp_path, "a.json", json.dumps(data)), rejects=RejectsWriter(out))
    rejected = json.loads(out.getvalue())
    assert [r["serial"] for r in rejected] == ["PF1", "PF2"]
    assert rejected[0]["n"] == "1"
    assert rejected[0]["reason"].startswith("row 1, purchase_date: 'x' is not a date")
    assert rejected[1]["reason"] == "row 2: a new device needs a purchase or a renewal date"


def test_the_page_cache_of_an_import_holds_the_serials_index_of_the_store(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from velory_cli.importer import writes

    assert writes.import_cache_size(0) == -16 * 1024
    assert writes.import_cache_size(1_000_000) == -31_250  # the index takes ~18 MiB
    assert writes.import_cache_size(10_000_000) == -64 * 1024
    seen: list[int] = []
    begin = ImportWrites.begin

    def begin_and_look(self: ImportWrites) -> None:
        seen.append(self.conn.execute("PRAGMA main.cache_size").fetchone()[0])
        begin(self)

    monkeypatch.setattr(ImportWrites, "begin", begin_and_look)
    # As if each device took 16 MiB of the index: two of them want a cache of 32 MiB.
    monkeypatch.setattr(writes, "IMPORT_CACHE_BYTES_PER_DEVICE", 16 * 1024 * 1024)
    before = store.conn.execute("PRAGMA main.cache_size").fetchone()[0]
    path = write(tmp_path, "a.csv", "Serial,Purchased\nA1,2024-01-01\nA2,2024-01-01\n")
    run_import(store, path)
    run_import(store, path, now=LATER)
    assert seen == [-16 * 1024, -32 * 1024]
    assert store.conn.execute("PRAGMA main.cache_size").fetchone()[0] == before


# ---- property: whatever the bytes, a report and 0 or 65 ------------------------------------

_cells = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_serials = st.from_regex(r"[A-Z0-9]{2,8}", fullmatch=True)
_dates = st.sampled_from(
    ["2026-12-01", "01.12.2026", "2026/12/01", "03/04/2026", "4/13/16", "31.02.2026", "", "x"]
)


@st.composite
def _csv_files(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    line_end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    header = draw(
        st.lists(
            st.sampled_from(["Serial", "SN", "Model", "E-mail", "Purchase Date", "EOL Date", "X"]),
            min_size=1,
            max_size=6,
        )
    )
    if draw(st.booleans()):
        header = ["Serial", "Purchase Date", *header]
    cell = st.one_of(_cells, _dates, _serials, st.just("a@b.se"))
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=len(header) + 1), max_size=8))

    def quote(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    text = line_end.join(delimiter.join(quote(c) for c in row) for row in [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    return text.encode(encoding, errors="replace")


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    content=st.one_of(st.binary(max_size=400), _csv_files()),
    suffix=st.sampled_from([".csv", ".json", ".jsonl", ".txt", ""]),
    order=st.sampled_from([None, "dayfirst", "monthfirst"]),
    skip_invalid=st.booleans(),
)
def test_any_bytes_give_a_report_and_exit_0_or_65(
    content: bytes, suffix: str, order: str | None, skip_invalid: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(content)
        with Store.open(Path(folder) / "velory.db") as store:
            report = run_import(store, path, date_order=order, skip_invalid=skip_invalid)
            summary = report.to_dict()
            json.dumps(summary, ensure_ascii=False).encode("utf-8")
            assert report.exit_code in (0, 65)
            event(f"exit {report.exit_code}, {'some' if report.inserted else 'no'} rows written")
            stored = store.conn.execute("SELECT count(*) FROM devices").fetchone()[0]
            assert stored == (summary["inserted"] if report.exit_code == 0 else 0)
            for error in summary["errors"]:
                assert set(error) == {"row", "column", "message"}
                assert error["message"]


def test_a_codec_registered_once_reads_windows_1252_fallbacks() -> None:
    # The Latin-1 fallback is an error handler of the standard codecs, registered on first use.
    importer.detect_encoding(io.BytesIO(b"\x81\xff"), "x", None)
    assert codecs.lookup_error("velory-latin-1-fallback") is not None


_text_values = st.text(
    alphabet=st.characters(
        codec="cp1252",
        exclude_categories=["Cc", "Cf", "Cs", "Zl", "Zp"],
        exclude_characters="\ufeff",
    ),
    max_size=15,
).map(str.strip)


# What a spreadsheet writes for a long number (6.37702E+15, 1E-05), a rejected serial: not in a
# valid file. 0E0 or 1E5 are serials (the example below).
_EXCEL_SCIENTIFIC = re.compile(r"[1-9]E[+-]?[0-9]{2,3}")


@st.composite
def _valid_inventories(draw: st.DrawFn) -> tuple[bytes, str, dict[str, dict[str, str | None]]]:
    """A valid file in one of the ways Excel writes one, and what the store should then hold."""
    from datetime import date, timedelta

    count = draw(st.integers(min_value=1, max_value=12))
    serials = draw(
        st.lists(
            st.from_regex(r"[A-Z0-9][A-Z0-9-]{1,10}", fullmatch=True).filter(
                lambda serial: not _EXCEL_SCIENTIFIC.fullmatch(serial)
            ),
            min_size=count,
            max_size=count,
            unique_by=str.upper,
        )
    )
    style = draw(st.sampled_from(["iso", "nordic", "slash-year-first", "us", "eu"]))
    expected: dict[str, dict[str, str | None]] = {}
    rows = []
    for serial in serials:
        model = draw(_text_values)
        day = date(2020, 1, 1) + timedelta(days=draw(st.integers(0, 2500)))
        written = {
            "iso": day.isoformat(),
            "nordic": day.strftime("%d.%m.%Y"),
            "slash-year-first": day.strftime("%Y/%m/%d"),
            "us": f"{day.month}/{day.day}/{day.year}",
            "eu": f"{day.day}/{day.month}/{day.year % 100:02d}",
        }[style]
        rows.append([serial, model, written])
        expected[serial] = {"model": model or None, "purchase_date": day.isoformat()}
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    line_end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))

    def quote(value: str) -> str:
        needs = any(c in value for c in (delimiter, '"', "\n", "\r")) or draw(st.booleans())
        return '"' + value.replace('"', '""') + '"' if needs else value

    lines = [delimiter.join(["Serial", "Model", "Purchase Date"])]
    lines += [delimiter.join(quote(v) for v in row) for row in rows]
    order = {"us": "monthfirst", "eu": "dayfirst"}.get(style, "")
    content = (line_end.join(lines) + line_end).encode(encoding)
    if encoding == "cp1252" and not content.isascii():
        # Windows-1252 text whose bytes all happen to be UTF-8 too ("Â¡" is b"\xc2\xa1", which
        # is "¡" in UTF-8) is read as UTF-8, as the rule says: it tests nothing of Windows-1252.
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            assume(False)
    return content, order, expected


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(inventory=_valid_inventories())
@example(
    inventory=(
        b"Serial,Model,Purchase Date\r\n0E0,,2024-01-01\r\n1E5,M,2024-01-02\r\n",
        "",
        {
            "0E0": {"model": None, "purchase_date": "2024-01-01"},
            "1E5": {"model": "M", "purchase_date": "2024-01-02"},
        },
    )
)
def test_a_valid_file_imports_exactly_whatever_its_encoding_and_layout(
    inventory: tuple[bytes, str, dict[str, dict[str, str | None]]],
) -> None:
    content, order, expected = inventory
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "inventory.csv"
        path.write_bytes(content)
        with Store.open(Path(folder) / "velory.db") as store:
            report = run_import(store, path, date_order=order or None)
            assert report.exit_code == 0, errors(report)
            assert report.inserted == len(expected)
            stored = {
                serial: {"model": row["model"], "purchase_date": row["purchase_date"]}
                for serial, row in devices(store).items()
            }
            assert stored == expected
            again = run_import(store, path, date_order=order or None, now=LATER)
            assert (again.unchanged, again.written) == (len(expected), False)


# ---- input and output failing under the import ---------------------------------------------


class _FailingDisk(io.BytesIO):
    """A file whose disk fails after the first ``good`` reads."""

    def __init__(self, content: bytes, good: int) -> None:
        super().__init__(content)
        self.good = good

    def read(self, size: int | None = -1, /) -> bytes:
        if self.good <= 0:
            raise OSError(errno.EIO, "Input/output error")
        self.good -= 1
        return super().read(size)

    def read1(self, size: int | None = -1, /) -> bytes:
        return self.read(size)


def test_a_read_error_half_way_is_input_unreadable_and_writes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = (HEADER + "".join(f"S{i},X,,,,2024-01-01,,\n" for i in range(20_000))).encode()
    # Three reads tell the encoding; the disk fails some 40 pieces into the rows.
    disk = _FailingDisk(content, good=3 + 40)
    source = importer.Source(name="d.csv", stream=disk, size=None, suffix=".csv")
    chunks_written = 0
    real_write = ImportWrites.insert

    def counting_write(*args: Any, **kwargs: Any) -> int:
        nonlocal chunks_written
        chunks_written += 1
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ImportWrites, "insert", counting_write)
    with pytest.raises(InputUnreadable, match=r"cannot read d\.csv: Input/output error"):
        import_file(store, source, ImportOptions(), now=NOW, actor="tester")
    assert chunks_written >= 2
    assert devices(store) == {}
    assert not store.conn.in_transaction


def test_a_rejects_file_that_cannot_be_written_stops_the_import(
    store: Store, tmp_path: Path
) -> None:
    class FullDisk(io.StringIO):
        def write(self, text: str, /) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    text = HEADER + "PF1,X,,,,2024-01-01,,\nPF2,X,,,,bad,,\n"
    with pytest.raises(OutputUnwritable, match="No space left on device"):
        run_import(
            store,
            write(tmp_path, "a.csv", text),
            rejects=RejectsWriter(FullDisk()),
            skip_invalid=True,
        )
    assert devices(store) == {}


def test_progress_is_reported_as_bytes_read(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job, "CHUNK_ROWS", 100)
    path = write(
        tmp_path, "a.csv", HEADER + "".join(f"S{i},X,,,,2024-01-01,,\n" for i in range(1000))
    )
    seen: list[int] = []
    with open_source(str(path)) as source:
        import_file(store, source, ImportOptions(), now=NOW, actor="t", progress=seen.append)
    assert len(seen) >= 10
    assert seen == sorted(seen)
    assert 0 < seen[-1] <= path.stat().st_size


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_progress_is_reported_for_json_too(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setattr(job, "CHUNK_ROWS", 100)
    objects = [json.dumps({"serial": f"S{i}", "purchased": "2024-01-01"}) for i in range(1000)]
    text = "[" + ",\n".join(objects) + "]" if suffix == ".json" else "\n".join(objects)
    path = write(tmp_path, f"a{suffix}", text)
    seen: list[int] = []
    with open_source(str(path)) as source:
        report = import_file(
            store, source, ImportOptions(), now=NOW, actor="t", progress=seen.append
        )
    assert report.inserted == 1000
    assert len(seen) == 10 and seen == sorted(seen) and seen[-1] == path.stat().st_size


def index_definitions(store: Store) -> list[tuple[str, str]]:
    rows = store.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
    return sorted((row[0], row[1] or "") for row in rows)


def test_a_first_import_builds_the_indexes_again_as_they_were(store: Store, tmp_path: Path) -> None:
    before = index_definitions(store)
    assert any(name == "devices_status_renewal" for name, _ in before)
    invalid = run_import(store, write(tmp_path, "bad.csv", HEADER + "PF1,X,,,,bad,,\n"))
    assert invalid.exit_code == 65
    assert index_definitions(store) == before
    report = run_import(store, write(tmp_path, "a.csv", HEADER + "PF1,X,,,,2024-01-01,,\n"))
    assert report.inserted == 1
    assert index_definitions(store) == before
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    plan = store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT serial FROM devices"
        " WHERE status = 'active' AND renewal_date <= '2027-01-01'"
    ).fetchall()
    assert "devices_status_renewal" in " ".join(str(tuple(row)) for row in plan)


def triggers(store: Store) -> list[tuple[str, str]]:
    rows = store.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
    return sorted((row[0], row[1]) for row in rows)


def test_an_import_inserts_without_the_key_trigger_and_leaves_it_as_it_was(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = triggers(store)
    assert [name for name, _ in before] == ["devices_serial_key_default"]
    during: list[list[tuple[str, str]]] = []
    insert = ImportWrites.insert

    def insert_and_look(self: ImportWrites, *args: Any, **kwargs: Any) -> int:
        during.append(triggers(store))
        return insert(self, *args, **kwargs)

    monkeypatch.setattr(ImportWrites, "insert", insert_and_look)
    bad = run_import(
        store, write(tmp_path, "bad.csv", HEADER + "PF0,X,,,,2024-01-01,,\nPF9,X,,,,bad,,\n")
    )
    assert bad.exit_code == 65 and triggers(store) == before
    for name, serial in (("a.csv", "PF1"), ("b.csv", "PF2")):  # into an empty store, and not
        report = run_import(store, write(tmp_path, name, HEADER + f"{serial},X,,,,2024-01-01,,\n"))
        assert report.inserted == 1 and triggers(store) == before
    assert during and all(found == [] for found in during)
    # What the trigger is for still works: a device a tool inserts without a key gets one.
    store.conn.execute(
        "INSERT INTO devices (serial, created_at, updated_at) VALUES (' Tool1 ', 'x', 'x')"
    )
    key = store.conn.execute("SELECT serial_key FROM devices WHERE serial = ' Tool1 '").fetchone()
    assert key[0] == "tool1"


def _import_everything(content: bytes, suffix: str, options: dict[str, Any]) -> tuple[Any, ...]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(content)
        with Store.open(Path(folder) / "velory.db") as store:
            report = run_import(store, path, **options).to_dict()
            del report["file"]
            report["warnings"] = [w.replace(str(path), "FILE") for w in report["warnings"]]
            stored = sorted(
                tuple(row)
                for row in store.conn.execute(
                    "SELECT serial, model, category, user_email, user_name, distributor,"
                    " purchase_date, renewal_date, import_notes, status, source FROM devices"
                )
            )
            return report, stored


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    content=st.one_of(_csv_files(), _valid_inventories().map(lambda inventory: inventory[0])),
    order=st.sampled_from([None, "dayfirst", "monthfirst"]),
    skip_invalid=st.booleans(),
)
def test_the_column_checks_agree_with_the_row_checks(
    content: bytes, order: str | None, skip_invalid: bool
) -> None:
    """Chunks are first checked a column at a time; whatever that lets through must be what
    the row-by-row checks make of the same file."""
    from unittest import mock

    options = {"date_order": order, "skip_invalid": skip_invalid}
    fast = _import_everything(content, ".csv", options)
    with mock.patch.object(job._Checker, "screen", lambda self, batch: None):
        slow = _import_everything(content, ".csv", options)
    assert fast == slow


def test_a_clean_file_is_checked_a_column_at_a_time(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_row_by_row(self: Any, row: Any) -> Any:
        raise AssertionError("a clean chunk should not be checked row by row")

    monkeypatch.setattr(job._Checker, "check", no_row_by_row)
    text = (
        HEADER
        + "PF1,X1,a@x.se,Åsa,Atea,01.12.2023,,\n"
        + 'PF2,X2,,,,2024-02-29,2027-01-01,"n\r\n2"\n'
    )
    report = run_import(store, write(tmp_path, "a.csv", text))
    assert report.inserted == 2
    stored = devices(store)
    assert stored["PF1"]["renewal_date"] == "2026-12-01"
    assert stored["PF2"]["import_notes"] == "n\n2"
    assert stored["PF1"]["category"] is None


@pytest.mark.parametrize(
    "rows",
    [
        ["A1", '"a1 "'],  # white space at the very end of a column's text
        ["A1", "a1 "],
        [" a1", "A1"],  # and at its very start
        ["E1", "e1\u00a0"],  # a non-breaking space is a space
    ],
)
def test_surrounding_white_space_is_never_part_of_a_serial_wherever_the_row_is(
    store: Store, tmp_path: Path, rows: list[str]
) -> None:
    lines = "".join(f"{serial},2024-01-01\n" for serial in rows)
    report = run_import(store, write(tmp_path, "a.csv", "Serial,Purchased\n" + lines))
    assert report.inserted == 0 and report.rejected == 1
    assert errors(report)[0][0] == 3
    assert devices(store) == {}


def test_a_file_of_new_emails_needs_no_date_column(store: Store, tmp_path: Path) -> None:
    first = HEADER + "PF1,X1,old@x.se,Åsa,Atea,2024-01-01,2027-01-01,\nPF2,X2,,,,2024-02-01,,\n"
    run_import(store, write(tmp_path, "first.csv", first))
    emails = "Serial,Email,Full Name\nPF1,new@x.se,Åsa Ek\npf2,bo@x.se,Bo\n"
    report = run_import(store, write(tmp_path, "emails.csv", emails), now=LATER)
    assert report.file_error is None and errors(report) == []
    assert (report.updated, report.inserted, report.rejected) == (2, 0, 0)
    stored = devices(store)
    assert stored["PF1"]["user_email"] == "new@x.se"
    assert stored["PF1"]["renewal_date"] == "2027-01-01"  # an empty cell never clears a value
    assert stored["PF2"]["user_name"] == "Bo"


@pytest.mark.parametrize("chunk_rows", [1, 1000])
def test_a_row_of_a_known_device_may_leave_its_dates_empty(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    run_import(store, write(tmp_path, "first.csv", HEADER + "PF1,X1,,,,2024-01-01,,\n"))
    monkeypatch.setattr(job, "CHUNK_ROWS", chunk_rows)
    text = HEADER + "PF1,X2,,,,,,\nNEW1,X3,,,,,,\nNEW2,X4,,,,2024-05-01,,\n"
    report = run_import(store, write(tmp_path, "again.csv", text), skip_invalid=True, now=LATER)
    assert errors(report) == [
        (3, "Purchase Date", "a new device needs a purchase or a renewal date")
    ]
    assert (report.updated, report.inserted, report.rejected) == (1, 1, 1)
    assert sorted(devices(store)) == ["NEW2", "PF1"]
    assert devices(store)["PF1"]["model"] == "X2"


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_new_device_without_a_date_is_rejected_and_still_holds_its_serial(
    store: Store, tmp_path: Path, dry_run: bool
) -> None:
    text = "Serial,Model\nA1,X\na1,Y\n"
    report = run_import(store, write(tmp_path, "a.csv", text), dry_run=dry_run)
    assert report.exit_code == 65 and report.file_error is None
    assert errors(report) == [
        (2, None, "a new device needs a purchase or a renewal date"),
        (3, None, "a new device needs a purchase or a renewal date"),
        (3, "Serial", "serial 'a1' is already in row 2"),
    ]
    assert devices(store) == {}


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ("ÅB1", "åb1"),
        ("ß1", "SS1"),
        ("Å1", "A\u030a1"),  # composed and decomposed
        ("ＰＦ１", "pf1"),  # full-width
        ("Ä\u00a01", "ä 1"),  # a non-breaking space is a space
    ],
)
def test_one_spelling_of_a_serial_is_one_device_in_a_file_and_in_the_store(
    store: Store, tmp_path: Path, first: str, again: str
) -> None:
    both = f"Serial,Purchased\n{first},2024-01-01\n{again},2024-01-01\n"
    report = run_import(store, write(tmp_path, "both.csv", both), skip_invalid=True)
    assert errors(report) == [(3, "Serial", f"serial {again!r} is already in row 2")]
    assert list(devices(store)) == [first]
    later = f"Serial,Model\n{again},New model\n"
    report = run_import(store, write(tmp_path, "later.csv", later), now=LATER)
    assert (report.inserted, report.updated) == (0, 1), errors(report)
    assert [row["model"] for row in devices(store).values()] == ["New model"]


@pytest.mark.parametrize("invisible", ["\u200b", "\u202e", "\u2066", "\ufeff", "\u00ad"])
@pytest.mark.parametrize("field", ["Serial", "Model", "Notes"])
def test_invisible_format_characters_reject_the_row(
    store: Store, tmp_path: Path, invisible: str, field: str
) -> None:
    values = {"Serial": "PF1", "Model": "X1", "Notes": "n"}
    values[field] = values[field][:1] + invisible + values[field][1:]
    text = "Serial,Model,Notes,Purchased\n" + ",".join(values.values()) + ",2024-01-01\n"
    report = run_import(store, write(tmp_path, "a.csv", text))
    assert report.rejected == 1
    ((row, column, message),) = errors(report)
    assert (row, column) == (2, field)
    assert f"invisible format character (U+{ord(invisible):04X})" in message
    assert devices(store) == {}


def test_the_format_characters_are_unicodes_category_cf() -> None:
    import re
    import sys
    import unicodedata

    listed = re.compile(f"[{job._FORMAT_CHARS}]")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        category = unicodedata.category(char)
        # Later Unicode versions than this Python's may assign some listed ones: Cn here.
        assert bool(listed.match(char)) == (category == "Cf") or category == "Cn", hex(code)


# ---- the fast paths give what a plain reading gives ------------------------------------------

_SPELLINGS = st.lists(
    st.sampled_from(
        [
            "A",
            "a",
            "Å",
            "å",
            "A\u030a",
            "ß",
            "S",
            "s",
            "ı",
            "I",
            "i",
            "1",
            "２",
            "Ａ",
            " ",
            "\u00a0",
        ]
    ),
    max_size=4,
).map("".join)


def _plain_reading(
    rows: list[tuple[str, str]], stored: dict[str, tuple[str, str | None]]
) -> tuple[set[int], dict[str, str | None]]:
    """What an import of ``rows`` (serial, model) should do to a store holding ``stored``
    (key: serial, model), read one row at a time with nothing clever: the rows it rejects
    and the devices (serial: model) the store then holds."""
    import unicodedata

    def key(serial: str) -> str:
        return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", serial).casefold())

    devices = dict(stored)
    seen: set[str] = set()
    rejected: set[int] = set()
    for number, (serial, model) in enumerate(rows, start=2):
        serial, model = serial.strip(), model.strip()
        if not serial or key(serial).strip() in seen:
            rejected.add(number)
            continue
        seen.add(key(serial).strip())
        old = devices.get(key(serial).strip())
        if old is None:
            devices[key(serial).strip()] = (serial, model or None)
        elif model:
            devices[key(serial).strip()] = (old[0], model)
    return rejected, dict(devices.values())


def _csv_cell(value: str, quoted: bool) -> str:
    return '"' + value.replace('"', '""') + '"' if quoted or "," in value else value


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(st.tuples(_SPELLINGS, _SPELLINGS), max_size=8),
    rows=st.lists(st.tuples(_SPELLINGS, _SPELLINGS, st.booleans()), min_size=1, max_size=14),
    chunk_rows=st.sampled_from([1, 2, 3, 5000]),
)
def test_the_fast_paths_give_what_a_plain_reading_gives(
    first: list[tuple[str, str]], rows: list[tuple[str, str, bool]], chunk_rows: int
) -> None:
    from unittest import mock

    def csv_text(lines: list[tuple[str, str, bool]]) -> str:
        body = "".join(
            f"{_csv_cell(serial, quoted)},{_csv_cell(model, quoted)},2024-01-01\n"
            for serial, model, quoted in lines
        )
        return "Serial,Model,Purchased\n" + body

    with tempfile.TemporaryDirectory() as folder, mock.patch.object(job, "CHUNK_ROWS", chunk_rows):
        base = Path(folder)
        with Store.open(base / "velory.db") as store:
            setup = [(serial, model, False) for serial, model in first]
            (base / "first.csv").write_text(csv_text(setup), encoding="utf-8")
            run_import(store, base / "first.csv", skip_invalid=True)
            stored = {
                fold(row["serial"]): (row["serial"], row["model"])
                for row in devices(store).values()
            }
            (base / "file.csv").write_text(csv_text(rows), encoding="utf-8")
            report = run_import(store, base / "file.csv", skip_invalid=True, now=LATER)
            expected_rejected, expected_devices = _plain_reading(
                [(serial, model) for serial, model, _ in rows], stored
            )
            assert {row for row, _, _ in errors(report)} == expected_rejected
            assert {s: d["model"] for s, d in devices(store).items()} == expected_devices


@pytest.mark.parametrize("blank", ["\n", "   \n", ",,,\n", ";;\r\n", " , ;\t\n"])
def test_blank_lines_before_the_header_are_skipped_and_counted(
    store: Store, tmp_path: Path, blank: str
) -> None:
    text = blank * 3 + "Serial,Purchased\nPF1,2024-01-01\n,2024-01-01\n"
    report = run_import(store, write(tmp_path, "a.csv", text), skip_invalid=True)
    assert report.file_error is None
    assert report.inserted == 1
    assert errors(report) == [(6, "Serial", "serial is empty")]  # rows as Excel counts them


def test_json_lines_after_blank_lines_keep_their_line_numbers(store: Store, tmp_path: Path) -> None:
    text = "\n  \n" + '{"serial": "PF1", "renewal": "2027-01-01"}\n{"serial": ""}\n'
    report = run_import(store, write(tmp_path, "a.jsonl", text), skip_invalid=True)
    assert errors(report) == [(4, "serial", "serial is empty")]


def test_a_header_of_more_than_10000_columns_is_refused_as_a_whole(
    store: Store, tmp_path: Path
) -> None:
    header = "Serial,Purchased," + ",".join(f"c{i}" for i in range(10_000))
    report = run_import(store, write(tmp_path, "a.csv", header + "\nPF1,2024-01-01\n"))
    assert report.exit_code == 65
    assert report.file_error is not None and report.file_error.row == 1
    assert "10,002 columns" in report.file_error.message


def test_the_ignored_columns_warning_stays_one_short_line(store: Store, tmp_path: Path) -> None:
    header = "Serial,Purchased," + ",".join(f"column {i} " + "x" * 80 for i in range(5000))
    report = run_import(store, write(tmp_path, "a.csv", header + "\nPF1,2024-01-01\n"))
    assert report.exit_code == 0
    (warning,) = report.warnings
    assert len(warning) < 1000 and "\n" not in warning
    assert warning.endswith("and 4,990 more")
