"""Hostile input through the installed velory: SQL-looking values, control characters in every
field, header injection aimed at the mails, spreadsheet formulas in every exported cell, serial
and email tricks, a 50 MB line, output paths that exist already, and the modes of a new store.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Run, velory_command
from tests.factory import device_values
from tests.faultkit import (
    fingerprint,
    seed,
    velory_env,
)
from tests.faultkit import (
    run as run_velory,
)
from tests.smtp_server import SmtpServer

pytestmark = [pytest.mark.faults, pytest.mark.subprocess]

HEADER = ["Serial", "Model", "Category", "Email", "Full Name", "Distributor", "Purchase Date",
          "Renewal Date", "Notes"]  # fmt: skip
GOOD = ["S{n}", "Latitude 5440", "Laptop", "s{n}@example.com", "Sam Lind", "Atea", "2024-01-15",
        "2027-01-15", "ok"]  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store" / "velory.db"


@pytest.fixture
def velory(run: Run, db: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def call(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = run(["--db", str(db), *args], input=input, timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return call


Velory = Callable[..., subprocess.CompletedProcess[str]]


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def good_row(n: int) -> list[str]:
    return [value.format(n=n) for value in GOOD]


# ---- SQL-looking values ----------------------------------------------------------------------

SQLISH = ["' OR '1'='1", "x'); DROP TABLE devices; --", "%", "_"]


def test_sql_looking_values_are_only_ever_data(velory: Velory, tmp_path: Path, db: Path) -> None:
    rows = [good_row(1), good_row(2)]
    rows.append(["y'); DROP TABLE devices; --", "' OR 1=1 --", *good_row(3)[2:]])
    imported = ok(velory("import", str(write_csv(tmp_path / "in.csv", rows)), "--json"))
    assert imported["inserted"] == 3
    before = fingerprint(db)

    for value in SQLISH:
        for args in (
            ["devices", "--user", value],
            ["devices", "--distributor", value],
            ["renewals", "--as-of", "2026-12-01", "--within", "3650", "--user", value],
            ["renewals", "--as-of", "2026-12-01", "--within", "3650", "--distributor", value],
            ["hardware", value],
        ):
            assert ok(velory(*args, "--json")) == [], (args, value)
        missing = velory("show", value)
        assert (missing.returncode, missing.stdout) == (1, "")
        assert "no such device" in missing.stderr
    release = velory("release", *SQLISH, "--yes", "--json")
    assert release.returncode == 1
    assert json.loads(release.stdout)["failed"] == len(SQLISH)
    for args in (["devices", "--status", SQLISH[0]], ["notices", "list", "--status", SQLISH[1]]):
        refused = velory(*args, "--json")
        assert refused.returncode == 2, (args, refused.stderr)
        assert refused.stdout == ""

    shown = ok(velory("show", "Y'); drop table devices; --", "--json"))
    assert (shown["serial"], shown["model"]) == ("y'); DROP TABLE devices; --", "' OR 1=1 --")
    assert fingerprint(db) == before


# ---- control characters ------------------------------------------------------------------------

CONTROLS = {"CR": "\r", "LF": "\n", "CRLF": "\r\n", "NUL": "\x00", "ESC": "\x1b", "TAB": "\t"}
# A note may hold line breaks and tabs; no other field may hold any of these.
NOTE_ALLOWS = {"CR", "LF", "CRLF", "TAB"}


def test_control_characters_in_every_imported_field(
    velory: Velory, tmp_path: Path, db: Path
) -> None:
    rows: list[list[str]] = []
    expected: dict[int, tuple[str, str, bool]] = {}  # row -> (column, character, kept)
    for column, name in enumerate(HEADER):
        for label, char in CONTROLS.items():
            row = good_row(len(rows))
            value = row[column]
            row[column] = value[:1] + char + value[1:]  # inside the value, not around it
            rows.append(row)
            expected[len(rows) + 1] = (name, label, name == "Notes" and label in NOTE_ALLOWS)
    source = write_csv(tmp_path / "controls.csv", rows)

    refused = velory("import", str(source), "--json")

    assert refused.returncode == 65, refused.stderr
    report = json.loads(refused.stdout)
    rejected_rows = {error["row"] for error in report["errors"]}
    for row_number, (name, label, kept) in expected.items():
        if kept:
            assert row_number not in rejected_rows, (name, label)
        else:
            columns = {e["column"] for e in report["errors"] if e["row"] == row_number}
            assert name in columns, (name, label, report["errors"])
    assert not db.exists() or fingerprint(db)["devices"] == 0  # nothing was written

    skipped = ok(velory("import", str(source), "--skip-invalid", "--json"))
    assert skipped["inserted"] == len(NOTE_ALLOWS)
    notes = [
        note["text"]
        for device in ok(velory("devices", "--json"))
        for note in ok(velory("show", device["serial"], "--json"))["notes"]
    ]
    # Line breaks are kept as LF, however the file wrote them.
    assert sorted(notes) == ["o\tk", "o\nk", "o\nk", "o\nk"]


def test_control_characters_in_a_json_import_are_rejected_too(
    velory: Velory, tmp_path: Path
) -> None:
    source = tmp_path / "fleet.json"
    source.write_text(
        json.dumps(
            [
                {"serial": "J\u00001", "renewal_date": "2027-01-01"},
                {"serial": "J2", "renewal_date": "2027-01-01", "user_name": "Eve\u001b[2J"},
                {"serial": "J3", "renewal_date": "2027-01-01", "notes": "two\r\nlines"},
            ]
        ),
        encoding="utf-8",
    )
    report = json.loads(velory("import", str(source), "--json").stdout)
    assert sorted((e["row"], e["column"]) for e in report["errors"]) == [
        (1, "serial"),
        (2, "user_name"),
    ]


def test_a_note_keeps_its_line_breaks_and_refuses_other_control_characters(
    velory: Velory, db: Path
) -> None:
    seed(db, [device_values("PF1"), device_values("RS1", status="renewal_started")])
    text = "Returned with charger\nbox 14\r\nshelf B\tleft"

    assert ok(velory("note", "pf1", text, "--json"))["succeeded"] == 1
    stored = "Returned with charger\nbox 14\nshelf B\tleft"  # line breaks as LF, as an import
    assert ok(velory("show", "PF1", "--json"))["notes"][0]["text"] == stored

    for bad in ("\x1b[2J\x1b]0;pwned\x07", "bell\x07", "back\x08space", "del\x7f", "c1\x9b31m"):
        for args in (
            ["note", "PF1", bad],
            ["confirm-return", "RS1", "--note", bad],
        ):
            refused = velory(*args)
            assert refused.returncode == 2, (args, refused.stderr)
            assert refused.stdout == ""
            assert "control character" in refused.stderr
    shown = ok(velory("show", "RS1", "--json"))
    assert (shown["status"], shown["notes"]) == ("renewal_started", [])


def test_control_characters_from_a_store_never_reach_the_terminal(velory: Velory, db: Path) -> None:
    """Whatever a store holds (written by hand, or by another tool), a table shows an escape
    sequence as visible symbols, and an error message stays on one line."""
    seed(db, [device_values("ESC1", model="\x1b[2J\x1b]0;pwned\x07", user_name="Eve\x00")])
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO notes (device_id, at, actor, text) VALUES (1, 'x', ?, ?)",
        ("mal\x1b[31mlory", "line\x1b[1A\x1b[2Kerased"),
    )
    conn.commit()
    conn.close()

    for args in (["devices"], ["show", "ESC1"], ["hardware", "esc1@example.com"]):
        table = velory(*args)
        assert table.returncode == 0, table.stderr
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", table.stdout), (args, table.stdout)
    assert "␛[2J" in velory("show", "ESC1").stdout
    assert json.loads(velory("show", "ESC1", "--json").stdout)["model"] == "\x1b[2J\x1b]0;pwned\x07"

    missing = velory("show", "line1\nline2\x1b[2J")
    assert missing.returncode == 1
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "\x1b" not in missing.stderr


# ---- header injection towards the mails --------------------------------------------------------

EXPECTED_HEADERS = {
    "subject",
    "from",
    "to",
    "date",
    "message-id",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-language",
}


def test_names_and_addresses_never_add_a_header_or_a_recipient(
    db: Path, env: dict[str, str], tmp_path: Path, smtp_server: SmtpServer
) -> None:
    # What an import lets through (no control characters, but quotes, commas, brackets) and what
    # only a store written some other way could hold: both meet the mailer.
    seed(
        db,
        [
            device_values("N1", user_name='Eve <e@evil.example>, "M" <m@evil.example>'),
            device_values("N2", user_name="Eve\r\nBcc: victim@evil.example"),
            device_values("N3", model="X\r\nBcc: w@evil.example", category="C\nCc: c@evil.example"),
            device_values("N4\r\nBcc: s@evil.example", user_email="n4@example.com"),
            device_values("B1", user_email="b1@example.com\r\nBcc: x@evil.example"),
            device_values("B2", user_email="b2@example.com, y@evil.example"),
            device_values("B3", user_email="b3@example.com\nSubject: hi"),
            device_values("B4", user_email="<b4@example.com>"),
            device_values("B5", user_email="b5@example.com\x00z@evil.example"),
        ],
    )
    settings = velory_env(env, smtp_server.env)

    result = run_velory(
        ["--db", str(db), "notices", "send", "--as-of", "2026-11-20", "--json"], settings, tmp_path
    )

    assert result.returncode == 1, str(result)
    report = json.loads(result.stdout)
    states = {n["serial"].split("\r")[0]: n["status"] for n in report["notices"]}
    assert states == {
        "N1": "sent",
        "N2": "sent",
        "N3": "sent",
        "N4": "sent",
        "B1": "failed",
        "B2": "failed",
        "B3": "failed",
        "B4": "failed",
        "B5": "failed",
    }
    assert sorted(smtp_server.recipients()) == [f"n{n}@example.com" for n in range(1, 5)]
    for mail in smtp_server.messages():
        assert len(mail.rcpt_tos) == 1 and "evil" not in mail.rcpt_tos[0]
        message = mail.message
        assert {key.lower() for key in message} == EXPECTED_HEADERS, list(message)
        assert len(message["To"].addresses) == 1
        assert "evil" not in message["To"].addresses[0].addr_spec
        assert "\n" not in str(message["Subject"])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 5  # one line each, whatever the address held
    assert len(result.stderr.strip().splitlines()) == len(errors) + 1  # and the summary


# ---- spreadsheet formulas ----------------------------------------------------------------------

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1)",
            "=cmd|' /C calc'!A0"]  # fmt: skip


def assert_spreadsheet_safe(text: str) -> int:
    """Every cell a spreadsheet would run as a formula is prefixed with '; numbers velory
    writes itself (days left: -31) are left as numbers. Returns the cells checked."""
    cells = 0
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            cells += 1
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                assert re.fullmatch(r"-?\d+", cell), f"a formula a spreadsheet would run: {cell!r}"
    return cells


def test_formulas_in_every_field_are_defused_in_every_csv(
    velory: Velory, tmp_path: Path, db: Path
) -> None:
    rows = []
    for n, formula in enumerate(FORMULAS):
        rows.append(
            [
                f"{formula}{n}",
                formula,
                formula,
                f"user{n}@example.com",
                formula,
                formula,
                "2023-11-20",
                "2026-11-20",
                formula,
            ]
        )
    imported = ok(velory("import", str(write_csv(tmp_path / "in.csv", rows)), "--json"))
    assert imported["inserted"] == len(FORMULAS)
    # Every other column too: the replacement serials, the outcome, a notice's recipient.
    first = f"{FORMULAS[0]}0"
    ok(velory("start", first, "--json"))
    ok(velory("order", first, "--model", "=1+1", "--json"))
    ok(velory("deliver", first, "--new-serial", "=NEW()", "--json"))
    mailed = velory("notices", "send", "--as-of", "2026-11-01", "--outbox", str(tmp_path / "ob"))
    assert mailed.returncode == 0, mailed.stderr

    outputs = {
        "export": velory("export"),
        "export --output": None,
        "devices": velory("devices", "--include-removed", "--csv"),
        "renewals": velory("renewals", "--as-of", "2026-11-01", "--csv"),
        "hardware": velory("hardware", "user1@example.com", "--csv"),
        "todo": velory("todo", "--csv"),
        "notices list": velory("notices", "list", "--csv"),
    }
    target = tmp_path / "export.csv"
    assert velory("export", "--output", str(target)).returncode == 0
    for name, result in outputs.items():
        text = target.read_text(encoding="utf-8") if result is None else result.stdout
        if result is not None:
            assert result.returncode == 0, (name, result.stderr)
        assert assert_spreadsheet_safe(text) > 13, name
        assert "'=HYPERLINK" in text or name in ("todo", "notices list", "hardware"), name
    # JSON keeps the data as it is.
    assert ok(velory("show", "=NEW()", "--json"))["serial"] == "=NEW()"


# ---- serial and email tricks ---------------------------------------------------------------


def test_serials_and_emails_match_whatever_their_case_and_spaces(
    velory: Velory, tmp_path: Path
) -> None:
    rows = [[" pf1 ", "M", "Laptop", " Asa@Nordlys.SE ", "Åsa", "Atea", "2023-12-01", "", ""]]
    assert ok(velory("import", str(write_csv(tmp_path / "a.csv", rows)), "--json"))["inserted"] == 1
    again = [["PF1", "M", "Laptop", "asa@nordlys.se", "Åsa", "Atea", "2023-12-01", "", ""]]
    report = ok(velory("import", str(write_csv(tmp_path / "b.csv", again)), "--json"))
    assert report["inserted"] == 0  # the same device, never a second one

    for serial in ("pf1", "PF1", " pf1 ", "pf1\t", "\tPf1  "):
        assert ok(velory("show", serial, "--json"))["serial"] == "pf1", repr(serial)
    for email in ("asa@nordlys.se", "ASA@NORDLYS.SE", " Asa@Nordlys.se "):
        assert [d["serial"] for d in ok(velory("hardware", email, "--json"))] == ["pf1"]
    assert len(ok(velory("devices", "--user", "ASA@nordlys.se", "--json"))) == 1

    duplicates = [good_row(1), good_row(1), good_row(2)]
    duplicates[1][0] = "s1 "
    duplicates[2][0] = "S1\t"
    clash = velory("import", str(write_csv(tmp_path / "dup.csv", duplicates)), "--json")
    assert clash.returncode == 65
    assert sorted(e["row"] for e in json.loads(clash.stdout)["errors"]) == [3, 4]

    ok(velory("start", "PF1", "--json"))
    ok(velory("confirm-return", "pf1", "--json"))
    listing = "pf1\n PF1 \nPf1\t\n# pf1\n\n"
    released = ok(velory("release", "--file", "-", "--yes", "--json", input=listing))
    assert (released["succeeded"], len(released["results"])) == (1, 1)


# ---- a 50 MB line ----------------------------------------------------------------------------

LINE_BYTES = 50 * 1024 * 1024
# Well above what velory needs to read the file, well below several copies of the line.
MEMORY_BOUND_KB = 400 * 1024

MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize(
    ("name", "head", "fill", "tail"),
    [
        ("no-lines.csv", b"", b"a", b""),
        ("one-row.csv", b"Serial,Model,Renewal Date\nS1,", b"m", b",2027-01-01\n"),
        ("open-quote.csv", b'Serial,Model\n"', b"q", b""),
        ("one-object.json", b'[{"serial": "S1", "model": "', b"m", b'"}]'),
        ("one-line.jsonl", b'{"serial": "S1", "model": "', b"m", b'"}\n'),
    ],
)
def test_a_50_mb_line_is_a_clear_65_in_bounded_memory(
    db: Path, env: dict[str, str], tmp_path: Path, name: str, head: bytes, fill: bytes, tail: bytes
) -> None:
    source = tmp_path / name
    with source.open("wb") as handle:
        handle.write(head)
        chunk = fill * (1024 * 1024)
        for _ in range(LINE_BYTES // len(chunk)):
            handle.write(chunk)
        handle.write(tail)
    rss = tmp_path / "maxrss"
    # A small parent of its own, so the child's peak memory is its own and not this process's.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            str(rss),
            *velory_command(),
            "--db",
            str(db),
            "import",
            str(source),
            "--json",
        ],
        env=velory_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 65, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "nothing was written" in result.stderr
    assert int(rss.read_text()) < MEMORY_BOUND_KB
    assert not db.exists() or fingerprint(db)["devices"] == 0


# ---- a line, a cell or a record over 1 MiB, a line over 64 MiB --------------------------------

MIB = 1024 * 1024


def measured_import(
    db: Path, env: dict[str, str], tmp_path: Path, source: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], int]:
    """``velory import SOURCE ARGS --json`` in a parent of its own, and its peak memory (KiB)."""
    rss = tmp_path / "maxrss"
    command = [sys.executable, "-c", MEASURE, str(rss), *velory_command()]
    result = subprocess.run(
        [*command, "--db", str(db), "import", str(source), *args, "--json"],
        env=velory_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result, int(rss.read_text())


def write_with_fill(path: Path, head: bytes, fill: bytes, size: int, tail: bytes) -> Path:
    """``head``, ``size`` bytes of ``fill`` written a MiB at a time, then ``tail``."""
    with path.open("wb") as handle:
        handle.write(head)
        chunk = fill * (MIB // len(fill))
        for _ in range(size // len(chunk)):
            handle.write(chunk)
        handle.write(tail)
    return path


# A file of three rows whose second holds a cell of ``size`` bytes, in each text format; the
# serial column comes first, as in most inventories, and the column of the long cell is named.
LONG_CELL_FILES = {
    "unquoted.csv": (b"Serial,Notes,Renewal Date\nL1,ok,2027-01-01\nL2,", b"n",
                     b",2027-01-01\r\nL3,ok,2027-01-01\n", "Notes"),
    "quoted.csv": (b'Serial;Renewal Date;Notes\nL1;2027-01-01;ok\nL2;2027-01-01;"', b'n""',
                   b'"\nL3;2027-01-01;ok\n', "Notes"),
    "multi-line.csv": (b'Serial,Notes,Renewal Date\nL1,ok,2027-01-01\nL2,"first line\n', b"n",
                       b'\nlast line",2027-01-01\nL3,ok,2027-01-01\n', "Notes"),
    "ignored-column.csv": (b"Serial,Renewal Date,Comment\nL1,2027-01-01,\nL2,2027-01-01,",
                           b"c", b"\nL3,2027-01-01,\n", "Comment"),
    "lines.jsonl": (b'{"serial": "L1", "renewal": "2027-01-01"}\n'
                    b'{"serial": "L2", "renewal": "2027-01-01", "notes": "', b"n\\u00e5",
                    b'"}\n{"serial": "L3", "renewal": "2027-01-01"}\n', "notes"),
    "array.json": (b'[{"serial": "L1", "renewal": "2027-01-01"},\n'
                   b'{"serial": "L2", "renewal": "2027-01-01", "notes": "', b'[{\\"n\\"}]',
                   b'"},\n{"serial": "L3", "renewal": "2027-01-01"}]\n', "notes"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LONG_CELL_FILES))
def test_a_cell_over_1_mib_rejects_its_row_in_flat_memory(
    db: Path, env: dict[str, str], tmp_path: Path, name: str
) -> None:
    head, fill, tail, column = LONG_CELL_FILES[name]
    small = write_with_fill(tmp_path / f"small-{name}", head, fill, 12, tail)
    first, floor = measured_import(db, env, tmp_path, small, "--dry-run")
    assert ok(first)["rejected"] == 0
    source = write_with_fill(tmp_path / name, head, fill, 2 * MIB, tail)
    refused, _ = measured_import(db, env, tmp_path, source)
    assert refused.returncode == 65, refused.stderr
    summary = json.loads(refused.stdout)
    assert (summary["rows"], summary["rejected"], summary["inserted"]) == (3, 1, 0)
    [error] = summary["errors"]
    assert (error["row"], error["column"]) == (3 if name.endswith(".csv") else 2, column)
    assert "over 1 MiB" in error["message"]
    assert not db.exists() or fingerprint(db)["devices"] == 0
    # --skip-invalid imports the others; the rejects file has the row without its long cell.
    rejects = tmp_path / f"rejects-{name}"
    kept, _ = measured_import(
        db, env, tmp_path, source, "--skip-invalid", "--rejects", str(rejects)
    )
    assert (ok(kept)["inserted"], ok(kept)["rejected"]) == (2, 1)
    assert rejects.stat().st_size < 1000
    assert "L2" in rejects.read_text(encoding="utf-8")
    # A cell of 60 MiB, just under the file's limit: its row is rejected, and memory is what
    # the small file took give or take a few pieces of the line, far below the file's size.
    huge = write_with_fill(tmp_path / f"huge-{name}", head, fill, 60 * MIB, tail)
    result, peak = measured_import(db, env, tmp_path, huge, "--dry-run")
    assert result.returncode == 65, result.stderr
    assert "over 1 MiB" in json.loads(result.stdout)["errors"][0]["message"]
    assert peak - floor < 24 * 1024, (peak, floor)


def test_a_quoted_cell_of_many_short_lines_over_1_mib_rejects_its_row(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    # No line is long: the cell is, as notes pasted from a long log would make it.
    head = b'Serial,Notes,Renewal Date\nL1,ok,2027-01-01\nL2,"'
    tail = b'",2027-01-01\nL3,ok,2027-01-01\n'
    source = write_with_fill(tmp_path / "log.csv", head, b"a short line\n", 2 * MIB, tail)
    refused, _ = measured_import(db, env, tmp_path, source)
    assert refused.returncode == 65, refused.stderr
    summary = json.loads(refused.stdout)
    [error] = summary["errors"]
    assert (error["row"], error["column"]) == (3, "Notes")
    assert "the cell is over 1 MiB" in error["message"]
    kept, _ = measured_import(db, env, tmp_path, source, "--skip-invalid")
    assert (ok(kept)["inserted"], ok(kept)["rejected"]) == (2, 1)
    # A quote never closed runs the rest of the file into one cell: past 64 MiB, the file.
    endless = write_with_fill(tmp_path / "open.csv", head, b"a short line\n", 70 * MIB, b"")
    result, _ = measured_import(db, env, tmp_path, endless, "--dry-run")
    assert result.returncode == 65, result.stderr
    assert "over 64 MiB" in result.stderr and "never closed" in result.stderr


@pytest.mark.parametrize(
    ("name", "head", "tail"),
    [
        ("second-line.jsonl", b'{"serial": "L1", "renewal": "2027-01-01"}\n{"serial": "L2", '
         b'"notes": "', b'"}\n{"serial": "L3", "renewal": "2027-01-01"}\n'),
        ("first-line.jsonl", b'{"serial": "L2", "notes": "', b'"}\n'),
        ("row.csv", b"Serial,Notes\nL1,ok\nL2,", b"\nL3,ok\n"),
        ("element.json", b'[{"serial": "L1", "renewal": "2027-01-01"}, {"serial": "L2", '
         b'"notes": "', b'"}, {"serial": "L3", "renewal": "2027-01-01"}]'),
    ],
)  # fmt: skip
def test_a_line_over_64_mib_refuses_the_file_in_flat_memory(
    db: Path, env: dict[str, str], tmp_path: Path, name: str, head: bytes, tail: bytes
) -> None:
    source = write_with_fill(tmp_path / name, head, b"x", 70 * MIB, tail)
    result, peak = measured_import(db, env, tmp_path, source, "--skip-invalid")
    assert result.returncode == 65, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "over 64 MiB" in result.stderr and "nothing was written" in result.stderr
    row = 1 if name.startswith("first") else 3 if name.endswith(".csv") else 2
    assert json.loads(result.stdout)["errors"] == [
        {"row": row, "column": None, "message": json.loads(result.stdout)["errors"][0]["message"]}
    ]
    assert not db.exists() or fingerprint(db)["devices"] == 0
    # Well under the size of the file: the line is never held, only pieces of it.
    assert peak < 60 * 1024, peak


# ---- output paths that exist already -----------------------------------------------------------


def test_existing_output_files_are_never_overwritten_without_force(
    velory: Velory, tmp_path: Path, db: Path
) -> None:
    seed(db, [device_values("A1"), device_values("DUE1", renewal_date="2026-11-20")])
    before = fingerprint(db)
    precious = "yesterday's file\n"
    bad_rows = write_csv(tmp_path / "bad.csv", [good_row(1), ["", *good_row(2)[1:]]])

    paths = {name: tmp_path / name for name in ("export.csv", "rejects.csv", "backup.db")}
    for path in paths.values():
        path.write_text(precious, encoding="utf-8")
    attempts = [
        ["export", "--output", str(paths["export.csv"])],
        ["export", "--json", "--output", str(paths["export.csv"])],
        ["import", str(bad_rows), "--skip-invalid", "--rejects", str(paths["rejects.csv"])],
        ["db", "backup", str(paths["backup.db"])],
    ]
    for args in attempts:
        result = velory(*args)
        assert result.returncode == 73, (args, result.stderr)
        assert result.stdout == ""
        assert "--force" in result.stderr
    for path in paths.values():
        assert path.read_text(encoding="utf-8") == precious
    assert fingerprint(db) == before  # the import never ran: its rejects file was refused first

    for args in (  # a folder is named as one, --force or not
        ["export", "--output", str(tmp_path)],
        ["export", "--output", str(tmp_path), "--force"],
        ["import", str(bad_rows), "--skip-invalid", "--rejects", str(tmp_path), "--force"],
        ["db", "backup", str(tmp_path), "--force"],
    ):
        result = velory(*args)
        assert (result.returncode, result.stdout) == (73, ""), (args, result.stderr)
        assert "is a folder" in result.stderr, (args, result.stderr)
    assert fingerprint(db) == before

    for args in attempts:
        assert velory(*args, "--force").returncode == 0, args
    assert paths["export.csv"].read_text(encoding="utf-8").startswith("[")
    assert paths["rejects.csv"].read_text(encoding="utf-8-sig").startswith("Serial")
    assert paths["backup.db"].read_bytes().startswith(b"SQLite format 3\x00")


@pytest.mark.parametrize("kind", ["fifo", "folder", "link to /dev/null"])
def test_an_output_that_is_not_a_regular_file_is_refused_force_or_not(
    velory: Velory, tmp_path: Path, db: Path, kind: str
) -> None:
    """``export --output /dev/null --force`` replaced the device node with a file of names and
    emails; a named pipe or a folder in an output's place is refused the same way (73)."""
    seed(db, [device_values("A1")])
    before = fingerprint(db)
    bad_rows = write_csv(tmp_path / "bad.csv", [good_row(1), ["", *good_row(2)[1:]]])
    target = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        target.symlink_to(os.devnull)
    node = os.lstat(target)
    for args in (
        ["export", "--output", str(target)],
        ["export", "--json", "--output", str(target)],
        ["import", str(bad_rows), "--skip-invalid", "--rejects", str(target)],
        ["db", "backup", str(target)],
    ):
        for force in ([], ["--force"]):
            result = velory(*args, *force)
            assert_clean_failure_cp(result, 73, str(target))
            after = os.lstat(target)
            assert (after.st_ino, after.st_mode) == (node.st_ino, node.st_mode), args
    assert fingerprint(db) == before  # the import never ran: its rejects file was refused first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".target")] == []


def test_files_with_personal_data_are_private_whatever_the_umask(
    env: dict[str, str], tmp_path: Path, db: Path
) -> None:
    seed(db, [device_values("DUE1", renewal_date="2026-11-20")])
    bad_rows = write_csv(tmp_path / "bad.csv", [good_row(1), ["", *good_row(2)[1:]]])
    settings = velory_env(env)
    written = {
        "export": tmp_path / "export.csv",
        "rejects": tmp_path / "rejects.csv",
        "backup": tmp_path / "backup.db",
    }
    outbox = tmp_path / "outbox"
    for args in (
        ["export", "--output", str(written["export"])],
        ["import", str(bad_rows), "--skip-invalid", "--rejects", str(written["rejects"])],
        ["db", "backup", str(written["backup"])],
        ["notices", "send", "--as-of", "2026-11-01", "--outbox", str(outbox)],
    ):
        result = run_velory(
            ["--db", str(db), *args], settings, tmp_path, preexec_fn=lambda: _umask(0o022)
        )
        assert result.returncode == 0, (args, str(result))
    mails = list(outbox.glob("*.eml"))
    assert len(mails) == 1
    for path in [*written.values(), *mails]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_the_store_itself_is_never_an_output_even_with_force(
    velory: Velory, tmp_path: Path, db: Path
) -> None:
    seed(db, [device_values("A1")])
    data = db.read_bytes()
    bad_rows = write_csv(tmp_path / "bad.csv", [good_row(1), ["", *good_row(2)[1:]]])

    for args in (
        ["export", "--output", str(db), "--force"],
        ["import", str(bad_rows), "--skip-invalid", "--rejects", str(db), "--force"],
        ["db", "backup", str(db), "--force"],
        ["notices", "send", "--outbox", str(db), "--as-of", "2026-11-20"],
    ):
        result = velory(*args)
        assert result.returncode == 73, (args, result.stderr)
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == data
    assert ok(velory("devices", "--json"))[0]["serial"] == "A1"


def test_an_outbox_that_is_a_file_is_refused_and_a_folder_is_added_to(
    velory: Velory, tmp_path: Path, db: Path
) -> None:
    seed(db, [device_values(f"DUE{n}", renewal_date="2026-11-20") for n in range(2)])
    as_file = tmp_path / "outbox-file"
    as_file.write_text("not a folder", encoding="utf-8")

    refused = velory("notices", "send", "--as-of", "2026-11-01", "--outbox", str(as_file))
    assert_clean_failure_cp(refused, 73, "is a file")
    assert as_file.read_text(encoding="utf-8") == "not a folder"
    assert ok(velory("notices", "list", "--json")) == []  # nothing was claimed or queued

    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / "earlier.eml").write_text("an earlier mail", encoding="utf-8")
    sent = ok(velory("notices", "send", "--as-of", "2026-11-01", "--outbox", str(folder), "--json"))
    assert sent["sent"] == 2
    assert (folder / "earlier.eml").read_text(encoding="utf-8") == "an earlier mail"
    assert len(list(folder.glob("*.eml"))) == 3


def assert_clean_failure_cp(
    result: subprocess.CompletedProcess[str], code: int, *words: str
) -> None:
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], result.stderr


# ---- a new store is private --------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_a_new_store_is_0600_in_a_0700_folder_whatever_the_umask(
    env: dict[str, str], tmp_path: Path, umask: int
) -> None:
    home = tmp_path / "user"
    home.mkdir()
    settings = {key: value for key, value in velory_env(env).items() if key != "VELORY_HOME"}
    settings["HOME"] = str(home)
    settings.pop("XDG_CONFIG_HOME", None)
    explicit = tmp_path / "elsewhere" / "fleet" / "velory.db"

    source = write_csv(tmp_path / "one.csv", [good_row(1)])
    # The two ways a store is created: db init, and the first import.
    for args in (["db", "init"], ["--db", str(explicit), "import", str(source)]):
        result = run_velory(args, settings, tmp_path, preexec_fn=lambda: _umask(umask))
        assert result.returncode == 0, str(result)
    for store in (home / ".config" / "velory" / "velory.db", explicit):
        assert stat.S_IMODE(store.stat().st_mode) == 0o600, store
        assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700, store.parent
        for companion in store.parent.iterdir():
            assert stat.S_IMODE(companion.stat().st_mode) & 0o077 == 0, companion


def _umask(mask: int) -> None:
    os.umask(mask)


# ---- what a file holds before or beside its rows --------------------------------------------

BLANK_LINES_BOUND_KB = 150 * 1024


@pytest.mark.parametrize(
    ("name", "head", "tail", "code"),
    [
        # Millions of blank lines before the header: skipped, never kept.
        ("blank-lines.csv", b" \n" * 3_000_000, b"Serial,Renewal Date\nS1,2027-01-01\n", 0),
        # A header far wider than any inventory: refused before it is mapped.
        ("wide.csv", b"Serial," + b",".join(b"c%d" % i for i in range(120_000)) + b"\n", b"", 65),
    ],
)
def test_memory_does_not_grow_with_what_comes_before_the_rows(
    db: Path, env: dict[str, str], tmp_path: Path, name: str, head: bytes, tail: bytes, code: int
) -> None:
    source = tmp_path / name
    source.write_bytes(head + tail)
    rss = tmp_path / "maxrss"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            str(rss),
            *velory_command(),
            "--db",
            str(db),
            "import",
            str(source),
            "--json",
        ],
        env=velory_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert all(len(line) < 300 for line in result.stderr.splitlines()), result.stderr
    assert int(rss.read_text()) < BLANK_LINES_BOUND_KB
