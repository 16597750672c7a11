"""velory's benchmarks: each case timed side by side with the floor bare Python reaches.

Only ratios measured in the same run count: the machine is shared and noisy, so velory and its
baseline are interleaved (velory, baseline, velory, baseline, ...) and the median of each is
taken. The table goes to stdout, the figures to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
RESULTS = BENCH / "results"
PYTHON = sys.executable
VELORY = [str(Path(sys.executable).parent / "velory")]
if not Path(VELORY[0]).exists():
    VELORY = [sys.executable, "-m", "velory_cli"]

AS_OF = date(2026, 12, 1)
HEADER = [
    "Serial Number",
    "Model",
    "Category",
    "Full Name",
    "Email",
    "Distributor",
    "Purchase Date",
    "Renewal Date",
    "Notes",
]
DISTRIBUTORS = ["Atea", "Advania", "Dustin", "Komplett Bedrift", "Inetum", "Elkjøp Business"]
MODELS = ["ThinkPad T14", "MacBook Air 13", "Latitude 5440", "iPhone 15", "Galaxy S23", "iPad Air"]
CATEGORIES = ["Laptop", "Laptop", "Laptop", "Phone", "Phone", "Tablet"]
FIRST = ["Åsa", "Björn", "Märta", "Søren", "Ingrid", "Per", "Linnéa", "Øystein", "Karin", "Elin"]
LAST = ["Lindström", "Öberg", "Kjær", "Sæther", "Åkesson", "Ström", "Brøndum", "Ekström"]


# ---- data ------------------------------------------------------------------------------------


# Serials as another system exports them: in no order, of letters and digits. Number n is
# scrambled into ten base-36 digits by a multiplication modulo 36**10 that has an inverse
# (its factor is prime to 36), so no two devices share one, whatever the fleet's size.
_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SERIAL_SPACE = 36**10
_SCRAMBLE = 1_779_033_703_952_769  # odd and not a multiple of 3


def serial_of(number: int) -> str:
    value = (number * _SCRAMBLE + 0x5DEECE66D) % _SERIAL_SPACE
    digits = []
    for _ in range(10):
        value, digit = divmod(value, 36)
        digits.append(_ALPHANUMERIC[digit])
    return "".join(digits)


def fleet_row(rng: random.Random, number: int) -> list[str]:
    kind = rng.randrange(len(MODELS))
    first, last = rng.choice(FIRST), rng.choice(LAST)
    renewal = AS_OF + timedelta(days=rng.randint(-60, 3 * 365))
    purchase = renewal - timedelta(days=36 * 30 + rng.randint(0, 20))
    return [
        serial_of(number),
        MODELS[kind],
        CATEGORIES[kind],
        f"{first} {last}",
        f"user{number % 250_000}@example.com",
        rng.choice(DISTRIBUTORS),
        purchase.isoformat(),
        renewal.isoformat(),
        "" if rng.random() < 0.9 else "Screen replaced under warranty",
    ]


def make_fleet(rows: int, *, excel: bool = False, edited_percent: float = 0.0) -> Path:
    """A deterministic inventory of ``rows`` devices; the Excel variant as Sweden saves it."""
    import csv

    DATA.mkdir(parents=True, exist_ok=True)
    suffix = "-excel" if excel else ""
    suffix += f"-edited{edited_percent:g}" if edited_percent else ""
    path = DATA / f"fleet-{rows}-unsorted{suffix}.csv"
    if path.exists():
        return path
    rng = random.Random(20261201)
    edit_rng = random.Random(7)
    temp = path.with_suffix(".tmp")
    with temp.open("w", encoding="utf-8-sig" if excel else "utf-8", newline="") as handle:
        writer = csv.writer(
            handle, delimiter=";" if excel else ",", lineterminator="\r\n" if excel else "\n"
        )
        writer.writerow(HEADER)
        for number in range(rows):
            row = fleet_row(rng, number)
            if edited_percent and edit_rng.random() < edited_percent / 100:
                row[1] = row[1] + " (refurbished)"
            if excel:
                for index in (6, 7):
                    row[index] = date.fromisoformat(row[index]).strftime("%d.%m.%Y")
            writer.writerow(row)
    temp.replace(path)
    return path


# ---- timing ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: str
    n: int
    velory: float
    baseline: float
    ratio: float
    unit: str
    target: str
    holds: bool | None
    note: str = ""


def run_measured(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    to_pipe: bool = False,
) -> tuple[float, int]:
    """Wall time and peak memory (KiB) of one subprocess; a failure stops the benchmark.
    ``to_pipe``: stdout is a pipe this process reads to the end (as ``| wc -l`` would), not
    /dev/null."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE if to_pipe else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        text=True,
    )
    if stdin is not None:
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()
    if to_pipe:
        assert process.stdout is not None
        while process.stdout.read(1 << 20):
            pass
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stderr is not None
    errors = process.stderr.read()
    if process.returncode not in (0,):
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {errors[-2000:]}")
    return elapsed, usage.ru_maxrss


def interleave(
    repeat: int, first: Callable[[], float], second: Callable[[], float]
) -> tuple[float, float]:
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        a.append(first())
        b.append(second())
    return statistics.median(a), statistics.median(b)


def velory_env(db: Path) -> dict[str, str]:
    return {"VELORY_DB": str(db), "VELORY_HOME": str(db.parent), "VELORY_ACTOR": "bench"}


# ---- baselines -------------------------------------------------------------------------------

FLOOR_IMPORT = textwrap.dedent(
    """
    import csv, sqlite3, sys
    conn = sqlite3.connect(sys.argv[2], isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE devices (id INTEGER PRIMARY KEY, serial TEXT NOT NULL, model TEXT,"
        " category TEXT, user_name TEXT, user_email TEXT, distributor TEXT,"
        " purchase_date TEXT, renewal_date TEXT, notes TEXT)"
    )
    with open(sys.argv[1], encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=sys.argv[3])
        next(reader)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO devices (serial, model, category, user_name, user_email, distributor,"
            " purchase_date, renewal_date, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            reader,
        )
        conn.execute("CREATE UNIQUE INDEX devices_serial ON devices (serial)")
        conn.execute("CREATE INDEX devices_renewal ON devices (renewal_date)")
        conn.execute("COMMIT")
    """
)

BARE_RENEWALS = textwrap.dedent(
    """
    import json, sqlite3, sys
    conn = sqlite3.connect(sys.argv[1])
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT serial, model, category, user_email, user_name, distributor, source,"
        " purchase_date, renewal_date, status, outcome, replacement_serial, replaces_serial"
        " FROM devices WHERE renewal_date <= ? AND status != 'removed' ORDER BY renewal_date",
        (sys.argv[2],),
    )
    print(json.dumps([dict(row) for row in rows], indent=2))
    """
)

BARE_RELEASE = textwrap.dedent(
    """
    import sqlite3, sys
    serials = [line.strip() for line in open(sys.argv[2]) if line.strip()]
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    ids = []
    for start in range(0, len(serials), 500):
        chunk = serials[start:start + 500]
        marks = ",".join("?" * len(chunk))
        ids += [row[0] for row in conn.execute(
            f"SELECT id FROM devices WHERE serial IN ({marks}) AND status = 'return_confirmed'",
            chunk)]
    conn.executemany("UPDATE devices SET status = 'removed' WHERE id = ?", [(i,) for i in ids])
    conn.executemany(
        "INSERT INTO history (device_id, at, actor, action, from_status, to_status)"
        " VALUES (?, '2026-12-01T00:00:00Z', 'bench', 'release', 'return_confirmed', 'removed')",
        [(i,) for i in ids])
    conn.execute("COMMIT")
    """
)

# A snapshot as bare Python keeps it: the serial, user and check-in columns of the export in a
# table keyed by serial, one transaction.
FLOOR_MDM = textwrap.dedent(
    """
    import csv, sqlite3, sys
    conn = sqlite3.connect(sys.argv[2], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS snapshot (serial TEXT PRIMARY KEY, user TEXT,"
        " last_check_in TEXT) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM snapshot")
    with open(sys.argv[1], encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        at = [header.index(name) for name in
              ("Serial number", "Primary user email address", "Last check-in")]
        conn.executemany(
            "INSERT OR REPLACE INTO snapshot VALUES (?, ?, ?)",
            ((row[at[0]].lower(), row[at[1]], row[at[2]]) for row in reader),
        )
    conn.execute("COMMIT")
    """
)

BARE_SMTP = textwrap.dedent(
    """
    import smtplib, sys
    from email.message import EmailMessage
    port, count = int(sys.argv[1]), int(sys.argv[2])
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for number in range(count):
            message = EmailMessage()
            message["From"] = "IT <it@example.com>"
            message["To"] = f"user{number}@example.com"
            message["Subject"] = f"Your device SN{number:09d} is up for renewal"
            message["Message-ID"] = f"<notice-{number}@example.com>"
            body = "Your device is up for renewal. Start the process in Velory. " * 8
            message.set_content(body)
            message.add_alternative(f"<p>{body}</p>", subtype="html")
            smtp.send_message(message)
    """
)


# ---- cases -----------------------------------------------------------------------------------


def make_workbook(rows: int) -> Path:
    """The fleet as an .xlsx workbook: dates as date cells, as Excel keeps them."""
    import xlsxwriter

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"fleet-{rows}-unsorted.xlsx"
    if path.exists():
        return path
    rng = random.Random(20261201)
    temp = DATA / f"fleet-{rows}-unsorted.tmp.xlsx"
    book = xlsxwriter.Workbook(str(temp), {"constant_memory": True})
    sheet = book.add_worksheet("Devices")
    day = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, HEADER)
    for number in range(rows):
        row = fleet_row(rng, number)
        for column, value in enumerate(row):
            if column in (6, 7):
                sheet.write_datetime(number + 1, column, date.fromisoformat(value), day)
            elif value:
                sheet.write_string(number + 1, column, value)
    book.close()
    temp.replace(path)
    return path


FLOOR_WORKBOOK = textwrap.dedent(
    """
    import sqlite3, sys
    from python_calamine import CalamineWorkbook
    conn = sqlite3.connect(sys.argv[2], isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE devices (id INTEGER PRIMARY KEY, serial TEXT NOT NULL, model TEXT,"
        " category TEXT, user_name TEXT, user_email TEXT, distributor TEXT,"
        " purchase_date TEXT, renewal_date TEXT, notes TEXT)"
    )
    rows = CalamineWorkbook.from_path(sys.argv[1]).get_sheet_by_index(0).iter_rows()
    next(rows)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO devices (serial, model, category, user_name, user_email, distributor,"
        " purchase_date, renewal_date, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ([r[0], r[1], r[2], r[3], r[4], r[5], r[6].isoformat(), r[7].isoformat(), r[8]]
         for r in rows),
    )
    conn.execute("CREATE UNIQUE INDEX devices_serial ON devices (serial)")
    conn.execute("CREATE INDEX devices_renewal ON devices (renewal_date)")
    conn.execute("COMMIT")
    """
)


def workbook_case(rows: int, repeat: int, work: Path, *, target: float | None) -> Outcome:
    """Importing a workbook against python-calamine reading the same sheet plus the bare
    insert: what velory's checks and import job add to reading the file at all."""
    book = make_workbook(rows)
    counter = iter(range(10_000))

    def velory() -> float:
        db = work / f"book-{next(counter)}.db"
        elapsed, _ = run_measured([*VELORY, "import", str(book), "--json"], env=velory_env(db))
        db.unlink()
        return elapsed

    def floor() -> float:
        db = work / f"book-floor-{next(counter)}.db"
        elapsed, _ = run_measured([PYTHON, "-c", FLOOR_WORKBOOK, str(book), str(db)])
        db.unlink()
        return elapsed

    mine, base = interleave(repeat, velory, floor)
    return outcome("import (.xlsx workbook)", rows, mine, base, "s", target)


def import_case(
    rows: int, repeat: int, work: Path, *, excel: bool = False, target: float | None = None
) -> Outcome:
    fleet = make_fleet(rows, excel=excel)
    counter = iter(range(10_000))

    def velory() -> float:
        db = work / f"import-{next(counter)}.db"
        elapsed, _ = run_measured([*VELORY, "import", str(fleet), "--json"], env=velory_env(db))
        db.unlink()
        return elapsed

    def floor() -> float:
        db = work / f"floor-{next(counter)}.db"
        delimiter = ";" if excel else ","
        elapsed, _ = run_measured([PYTHON, "-c", FLOOR_IMPORT, str(fleet), str(db), delimiter])
        db.unlink()
        return elapsed

    mine, base = interleave(repeat, velory, floor)
    name = "import (Excel-style)" if excel else "import"
    return outcome(name, rows, mine, base, "s", target)


def sqlite_utils_case(rows: int, repeat: int, work: Path) -> Outcome:
    fleet = make_fleet(rows)
    counter = iter(range(10_000))
    sqlite_utils = str(Path(sys.executable).parent / "sqlite-utils")

    def velory() -> float:
        db = work / f"import-{next(counter)}.db"
        elapsed, _ = run_measured([*VELORY, "import", str(fleet), "--json"], env=velory_env(db))
        db.unlink()
        return elapsed

    def other() -> float:
        db = work / f"su-{next(counter)}.db"
        elapsed, _ = run_measured(
            [
                sqlite_utils,
                "insert",
                str(db),
                "devices",
                str(fleet),
                "--csv",
                "--pk",
                "Serial Number",
            ]
        )
        db.unlink()
        return elapsed

    mine, base = interleave(max(1, repeat // 3) if rows > 100_000 else repeat, velory, other)
    ratio = mine / base
    return Outcome(
        "import vs sqlite-utils insert --csv",
        rows,
        round(mine, 4),
        round(base, 4),
        round(ratio, 3),
        "s",
        "<= 0.1 (10x faster)",
        ratio <= 0.1,
    )


def reimport_case(
    rows: int, repeat: int, work: Path, *, edited: float, target: float | None = None
) -> Outcome:
    fleet = make_fleet(rows)
    second = make_fleet(rows, edited_percent=edited) if edited else fleet
    template = work / f"reimport-template-{rows}.db"
    if not template.exists():
        run_measured([*VELORY, "import", str(fleet), "--json"], env=velory_env(template))
    counter = iter(range(10_000))

    def velory() -> float:
        db = work / f"re-{next(counter)}.db"
        shutil.copy(template, db)
        elapsed, _ = run_measured([*VELORY, "import", str(second), "--json"], env=velory_env(db))
        db.unlink()
        return elapsed

    def floor() -> float:
        db = work / f"floor-{next(counter)}.db"
        elapsed, _ = run_measured([PYTHON, "-c", FLOOR_IMPORT, str(fleet), str(db), ","])
        db.unlink()
        return elapsed

    mine, base = interleave(repeat, velory, floor)
    name = f"re-import, {edited:g}% edited" if edited else "re-import, unchanged"
    return outcome(name, rows, mine, base, "s", target)


def renewals_case(rows: int, repeat: int, work: Path) -> Outcome:
    fleet = make_fleet(rows)
    db = work / f"reimport-template-{rows}.db"
    if not db.exists():
        run_measured([*VELORY, "import", str(fleet), "--json"], env=velory_env(db))
    until = (AS_OF + timedelta(days=30)).isoformat()

    def velory() -> float:
        return run_measured(
            [*VELORY, "renewals", "--json", "--as-of", AS_OF.isoformat()], env=velory_env(db)
        )[0]

    def bare() -> float:
        return run_measured([PYTHON, "-c", BARE_RENEWALS, str(db), until])[0]

    mine, base = interleave(repeat, velory, bare)
    return outcome("renewals --json", rows, mine, base, "s", 1.5)


def table_case(rows: int, repeat: int, work: Path) -> list[Outcome]:
    """`velory devices` (a table) to a pipe against `velory devices --csv` to a pipe: the
    table streams, so it costs little more than CSV, in time and in memory."""
    fleet = make_fleet(rows)
    db = work / f"reimport-template-{rows}.db"
    if not db.exists():
        run_measured([*VELORY, "import", str(fleet), "--json"], env=velory_env(db))
    peaks: dict[str, int] = {}

    def listing(*options: str) -> Callable[[], float]:
        def measure() -> float:
            elapsed, peak = run_measured(
                [*VELORY, "devices", *options], env=velory_env(db), to_pipe=True
            )
            peaks[" ".join(options)] = max(peaks.get(" ".join(options), 0), peak)
            return elapsed

        return measure

    mine, base = interleave(repeat, listing(), listing("--csv"))
    table_mib, csv_mib = peaks[""] / 1024, peaks["--csv"] / 1024
    return [
        outcome("table of devices to a pipe vs its --csv", rows, mine, base, "s", 2.0),
        Outcome(
            "peak memory, table to a pipe (MiB)",
            rows,
            round(table_mib, 1),
            round(csv_mib, 1),
            round(table_mib / csv_mib, 2),
            "MiB",
            "<= 100 MiB",
            table_mib <= 100,
            "baseline: the same listing as --csv",
        ),
    ]


def startup_cases(repeat: int, work: Path) -> list[Outcome]:
    db = work / "empty.db"
    run_measured([*VELORY, "db", "init"], env=velory_env(db))

    def typer_import() -> float:
        return run_measured([PYTHON, "-c", "import typer"])[0]

    results = []
    for name, args, target in [
        ("velory --version", ["--version"], 1.2),
        ("velory --help", ["--help"], 1.5),
        ("velory devices --json (empty)", ["devices", "--json"], None),
    ]:
        mine, base = interleave(
            repeat * 3,
            lambda args=args: run_measured([*VELORY, *args], env=velory_env(db))[0],  # type: ignore[misc]
            typer_import,
        )
        results.append(outcome(name, 0, mine, base, "s", target))
    return results


def notices_case(count: int, repeat: int, work: Path) -> Outcome:
    import socket

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        rng = random.Random(5)
        fleet = DATA / f"due-{count}.csv"
        if not fleet.exists():
            import csv

            DATA.mkdir(parents=True, exist_ok=True)
            with fleet.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(HEADER)
                for number in range(count):
                    row = fleet_row(rng, number)
                    row[4] = f"user{number}@example.com"
                    row[5] = "Atea"
                    renewal = AS_OF + timedelta(days=rng.randint(0, 29))
                    row[6] = (renewal - timedelta(days=36 * 30)).isoformat()
                    row[7] = renewal.isoformat()
                    writer.writerow(row)
        template = work / f"notices-template-{count}.db"
        if not template.exists():
            run_measured([*VELORY, "import", str(fleet), "--json"], env=velory_env(template))
        counter = iter(range(10_000))

        def velory() -> float:
            db = work / f"notices-{next(counter)}.db"
            shutil.copy(template, db)
            env = {
                **velory_env(db),
                "VELORY_SMTP_HOST": "127.0.0.1",
                "VELORY_SMTP_PORT": str(port),
                "VELORY_SMTP_TLS": "none",
                "VELORY_MAIL_FROM": "IT <it@example.com>",
            }
            elapsed, _ = run_measured(
                [*VELORY, "notices", "send", "--as-of", AS_OF.isoformat(), "--json"], env=env
            )
            sent = (
                sqlite3.connect(db)
                .execute("SELECT count(*) FROM notices WHERE status = 'sent'")
                .fetchone()[0]
            )
            if sent != count:
                raise SystemExit(f"notices: {sent} of {count} recorded as sent")
            db.unlink()
            return elapsed

        def bare() -> float:
            return run_measured([PYTHON, "-c", BARE_SMTP, str(port), str(count)])[0]

        mine, base = interleave(repeat, velory, bare)
    finally:
        controller.stop()
    # Rates: the higher the better, so the ratio is velory's rate over the loop's.
    ratio = base / mine
    return Outcome(
        "notices send (rate vs bare smtplib loop)",
        count,
        round(mine, 4),
        round(base, 4),
        round(ratio, 3),
        "s",
        ">= 0.7",
        ratio >= 0.7,
    )


def release_case(count: int, repeat: int, work: Path) -> Outcome:
    fleet = make_fleet(count)
    template = work / f"release-template-{count}.db"
    serials = work / f"release-{count}.txt"
    if not template.exists():
        run_measured([*VELORY, "import", str(fleet), "--json"], env=velory_env(template))
        conn = sqlite3.connect(template)
        conn.execute("UPDATE devices SET status = 'return_confirmed', outcome = 'returned'")
        conn.commit()
        serials.write_text(
            "\n".join(row[0] for row in conn.execute("SELECT serial FROM devices")) + "\n"
        )
        conn.close()
    counter = iter(range(10_000))

    def velory() -> float:
        db = work / f"release-{next(counter)}.db"
        shutil.copy(template, db)
        elapsed, _ = run_measured(
            [*VELORY, "release", "--file", str(serials), "--yes", "--json"], env=velory_env(db)
        )
        db.unlink()
        return elapsed

    def bare() -> float:
        db = work / f"bare-release-{next(counter)}.db"
        shutil.copy(template, db)
        elapsed, _ = run_measured([PYTHON, "-c", BARE_RELEASE, str(db), str(serials)])
        db.unlink()
        return elapsed

    mine, base = interleave(repeat, velory, bare)
    return outcome("release --file", count, mine, base, "s", 3.0)


# The header line of a real Intune admin centre export (Devices -> Export, with inventory).
INTUNE_HEADER = [
    "Device ID",
    "Device name",
    "Enrollment date",
    "Last check-in",
    "Azure AD Device ID",
    "OS version",
    "Azure AD registered",
    "EAS activation ID",
    "Serial number",
    "Manufacturer",
    "Model",
    "EAS activated",
    "IMEI",
    "Last EAS sync time",
    "EAS reason",
    "EAS status",
    "Compliance grace period expiration",
    "Security patch level",
    "Wi-Fi MAC",
    "MEID",
    "Subscriber carrier",
    "Total storage",
    "Free storage",
    "Management name",
    "Category",
    "UserId",
    "Primary user UPN",
    "Primary user email address",
    "Primary user display name",
    "WiFiIPv4Address",
    "WiFiSubnetID",
    "Compliance",
    "Managed by",
    "Ownership",
    "Device state",
    "Intune registered",
    "Supervised",
    "Encrypted",
    "OS",
    "SkuFamily",
    "JoinType",
    "Phone number",
    "Jailbroken",
    "ICCID",
    "EthernetMAC",
    "CellularTechnology",
    "ProcessorArchitecture",
    "EID",
    "SystemManagementBIOSVersion",
    "TPMManufacturerId",
    "TPMManufacturerVersion",
]


def make_intune_export(rows: int) -> Path:
    """An Intune export of ``rows`` devices as the admin centre writes it: BOM, every field
    quoted, seven fraction digits, 0001-01-01 for no date; the fleet's serials."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"intune-{rows}.csv"
    if path.exists():
        return path
    rng = random.Random(rows)
    never = "0001-01-01 00:00:00.0000000"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        handle.write(",".join(f'"{name}"' for name in INTUNE_HEADER) + "\n")
        for number in range(rows):
            values = dict.fromkeys(INTUNE_HEADER, "")
            check_in = AS_OF - timedelta(days=rng.randint(0, 60))
            values.update(
                {
                    "Device ID": f"00000000-0000-0000-0000-{number:012d}",
                    "Device name": f"PC-{number:06d}",
                    "Enrollment date": "2024-01-10 09:00:00.8074356",
                    "Last check-in": f"{check_in.isoformat()} 08:59:04.8074356",
                    "Serial number": f"SN{number:09d}",
                    "Primary user UPN": f"user{number % 250_000}@example.com",
                    "Primary user email address": f"user{number % 250_000}@example.com",
                    "Managed by": "Intune",
                    "Ownership": "Corporate",
                    "Device state": "Managed",
                    "Model": rng.choice(MODELS),
                    "Last EAS sync time": never,
                    "Compliance grace period expiration": "9999-12-31 23:59:59.9999999",
                }
            )
            handle.write(",".join(f'"{values[name]}"' for name in INTUNE_HEADER) + "\n")
    return path


def mdm_import_case(count: int, repeat: int, work: Path) -> Outcome:
    """velory mdm import of an Intune export over the previous snapshot, in a store with the
    fleet, against the floor of keeping three of its columns in a table."""
    export = make_intune_export(count)
    template = work / f"mdm-template-{count}.db"
    if not template.exists():
        run_measured(
            [*VELORY, "import", str(make_fleet(count)), "--json"], env=velory_env(template)
        )
        run_measured([*VELORY, "mdm", "import", str(export), "--json"], env=velory_env(template))
    counter = iter(range(10_000))

    def velory() -> float:
        db = work / f"mdm-{next(counter)}.db"
        shutil.copy(template, db)
        elapsed, _ = run_measured(
            [*VELORY, "mdm", "import", str(export), "--json"], env=velory_env(db)
        )
        db.unlink()
        return elapsed

    def floor() -> float:
        db = work / f"floor-mdm-{next(counter)}.db"
        shutil.copy(template, db)
        elapsed, _ = run_measured([PYTHON, "-c", FLOOR_MDM, str(export), str(db)])
        db.unlink()
        return elapsed

    mine, base = interleave(repeat, velory, floor)
    return outcome("mdm import (Intune CSV)", count, mine, base, "s", None)


def memory_cases(sizes: list[int], work: Path) -> list[Outcome]:
    results = []
    for rows in sizes:
        fleet = make_fleet(rows)
        db = work / f"memory-{rows}.db"
        _, peak_kib = run_measured([*VELORY, "import", str(fleet), "--json"], env=velory_env(db))
        db.unlink()
        _, floor_kib = run_measured([PYTHON, "-c", "import typer"])
        mib = peak_kib / 1024
        results.append(
            Outcome(
                "peak memory of import (MiB)",
                rows,
                round(mib, 1),
                round(floor_kib / 1024, 1),
                round(mib / (floor_kib / 1024), 2),
                "MiB",
                "<= 100 MiB",
                mib <= 100,
                "baseline: a Python process importing typer",
            )
        )
    return results


def compile_velory() -> None:
    """Write velory's bytecode before measuring, as installing it does: a run must not pay
    for compiling its sources (PYTHONDONTWRITEBYTECODE, set in some shells, would make every
    run compile every module it imports)."""
    import compileall

    package = BENCH.parent / "velory_cli"
    if not compileall.compile_dir(str(package), quiet=1):
        raise SystemExit(f"cannot compile {package}")


def outcome(
    case: str, n: int, mine: float, base: float, unit: str, target: float | None
) -> Outcome:
    ratio = mine / base if base else float("inf")
    return Outcome(
        case,
        n,
        round(mine, 4),
        round(base, 4),
        round(ratio, 3),
        unit,
        f"<= {target}" if target is not None else "-",
        ratio <= target if target is not None else None,
    )


# ---- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (median)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these cases")
    args = parser.parse_args()

    big = 10_000 if args.quick else 1_000_000
    mid = 10_000 if args.quick else 100_000
    cases: dict[str, Callable[[Path], list[Outcome]]] = {
        "startup": lambda w: startup_cases(args.repeat, w),
        # Targets apply at the sizes that matter: 1M rows imported, 1M re-imported unchanged.
        # Smaller imports show how much of the time is the fixed start (Python, Typer, a new
        # store and its schema); the edited re-import, what writing the changes costs.
        "import": lambda w: (
            [
                import_case(n, args.repeat, w, target=2.0 if n == big else None)
                for n in sorted({10_000, mid, big})
            ]
            + [import_case(mid, args.repeat, w, excel=True)]
        ),
        "workbook": lambda w: [workbook_case(mid, args.repeat, w, target=1.5)],
        "sqlite-utils": lambda w: [sqlite_utils_case(mid, args.repeat, w)],
        "reimport": lambda w: [
            reimport_case(big, args.repeat, w, edited=0, target=2.0),
            reimport_case(big, args.repeat, w, edited=1),
        ],
        "renewals": lambda w: [renewals_case(big, args.repeat, w)],
        "table": lambda w: table_case(big, args.repeat, w),
        "notices": lambda w: [notices_case(200 if args.quick else 2_000, args.repeat, w)],
        "release": lambda w: [release_case(1_000 if args.quick else 10_000, args.repeat, w)],
        "memory": lambda w: memory_cases(sorted({mid, big}), w),
        "mdm": lambda w: [mdm_import_case(mid, args.repeat, w)],
    }
    chosen = args.only or list(cases)
    compile_velory()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="velory-bench-") as temp:
        work = Path(temp)
        for name in chosen:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            found = cases[name](work)
            for item in found:
                print(f"  {item.case} N={item.n}: ratio {item.ratio}", file=sys.stderr, flush=True)
            outcomes.extend(found)
    print_table(outcomes)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "repeat": args.repeat,
        "quick": args.quick,
        "results": [asdict(item) for item in outcomes],
    }
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")


def print_table(outcomes: list[Outcome]) -> None:
    header = (
        f"| {'case':44} | {'N':>9} | {'velory':>9} | {'baseline':>9} | {'ratio':>6} "
        "| target        | holds |"
    )
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    for item in outcomes:
        holds = "-" if item.holds is None else ("yes" if item.holds else "NO")
        print(
            f"| {item.case:44} | {item.n:>9} | {item.velory:>9} | {item.baseline:>9} "
            f"| {item.ratio:>6} | {item.target:13} | {holds:5} |"
        )


if __name__ == "__main__":
    main()
