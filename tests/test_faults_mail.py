"""Mail servers and disks on a bad day, against the installed velory in a subprocess: a
greeting trickled a byte a second, an answer that never ends, a connection dropped after the
message, a disk that fills up between two mails. Whatever happens, nothing is lost, nothing
is sent twice except a mail the run says it sent without recording, and the run says what it
did.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import velory_command
from tests.factory import device_values
from tests.faultkit import (
    Finished,
    assert_no_traceback,
    assert_store_sound,
    file_size_limit,
    integrity,
    run,
    seed,
    velory_env,
)
from tests.smtp_server import (
    RawConnection,
    RawSmtpServer,
    SmtpServer,
    endless_lines,
    trickle,
)

pytestmark = [pytest.mark.faults, pytest.mark.subprocess]

SEND = ["notices", "send", "--as-of", "2026-11-01"]


def ledger(db: Path) -> list[tuple[str, str, str, int, str | None]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT d.serial, n.recipient, n.status, n.attempts, n.message_id FROM notices n"
            " JOIN devices d ON d.id = n.device_id ORDER BY d.serial"
        ).fetchall()
    finally:
        conn.close()


def timed_run(
    args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 60
) -> tuple[Finished, float, int]:
    """Run velory; its result, how long it took (seconds) and its peak memory (KiB)."""
    out, err = cwd / "run.out", cwd / "run.err"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [*velory_command(), *args],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    finished = Finished(tuple(args), proc.returncode, out.read_text(), err.read_text())
    return finished, elapsed, int(usage.ru_maxrss)


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    db = tmp_path / "velory.db"
    seed(db, [device_values(serial, renewal_date="2026-11-20") for serial in ("A", "B", "C")])
    return db


# ---- answers that never end ------------------------------------------------------------------


def test_a_greeting_trickled_a_byte_a_second_ends_at_the_timeout(
    fleet: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    with RawSmtpServer(lambda conn, _: trickle(conn, b"220 " + b"x" * 500, every=1.0)) as server:
        venv = velory_env(env, {**server.env, "VELORY_SMTP_TIMEOUT": "3"})
        result, elapsed, _ = timed_run(["--db", str(fleet), *SEND], venv, tmp_path)

    assert result.returncode == 75, str(result)
    assert_no_traceback(result)
    assert elapsed < 10, elapsed
    assert "within 3 s" in result.stderr
    assert [row[2] for row in ledger(fleet)] == ["pending"] * 3


def test_an_endless_ehlo_answer_ends_the_connection_with_memory_flat(
    fleet: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    def script(conn: RawConnection, number: int) -> None:
        conn.send(b"220 raw.example ESMTP\r\n")
        if conn.line() is not None:
            endless_lines(conn, b"250-XXXX\r\n", seconds=15)

    with RawSmtpServer(script) as server:
        venv = velory_env(env, {**server.env, "VELORY_SMTP_TIMEOUT": "30"})
        result, elapsed, peak_kib = timed_run(["--db", str(fleet), *SEND], venv, tmp_path)
        baseline, _, baseline_kib = timed_run(["--db", str(fleet), "devices"], venv, tmp_path)

    assert result.returncode == 75, str(result)
    assert baseline.returncode == 0, str(baseline)
    assert_no_traceback(result)
    assert elapsed < 10, elapsed
    assert "64 KiB" in result.stderr
    # As much memory as a command that reads the store and prints a table, give or take.
    assert peak_kib < baseline_kib + 20 * 1024, (peak_kib, baseline_kib)
    assert [row[2] for row in ledger(fleet)] == ["pending"] * 3


# ---- a connection dropped after the message --------------------------------------------------


def test_a_mail_sent_again_after_a_dropped_connection_is_the_same_mail(
    tmp_path: Path, env: dict[str, str]
) -> None:
    db = tmp_path / "velory.db"
    seed(
        db,
        [
            device_values(s, renewal_date="2026-11-20", user_email="eva@example.com")
            for s in ("GA", "GB")
        ],
    )

    def script(conn: RawConnection, number: int) -> None:
        conn.send(b"220 raw.example ESMTP\r\n")
        conn.serve(drop_after_data=number == 1)

    with RawSmtpServer(script) as server:
        venv = velory_env(env, server.env)
        first = run(["--db", str(db), *SEND], venv, tmp_path)
        assert first.returncode == 75, str(first)
        assert_no_traceback(first)
        seed(db, [device_values("GC", renewal_date="2026-11-21", user_email="eva@example.com")])
        second = run(["--db", str(db), *SEND], venv, tmp_path)
        assert second.returncode == 0, str(second)
        received = server.messages()

    def serials(text: str) -> list[str]:
        return [s for s in ("GA", "GB", "GC") if f"serial number {s}" in text]

    assert len(received) == 3
    dropped, again, new = received
    assert dropped.message_id == again.message_id
    assert serials(dropped.text()) == serials(again.text()) == ["GA", "GB"]
    assert serials(new.text()) == ["GC"] and new.message_id != again.message_id
    assert [row[2] for row in ledger(db)] == ["sent"] * 3


# ---- a disk that fills up between two mails --------------------------------------------------


def test_a_run_stopped_by_a_full_disk_says_what_it_sent_and_recorded(
    tmp_path: Path, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    template = tmp_path / "template.db"
    seed(template, [device_values(f"D{n:02d}", renewal_date="2026-11-20") for n in range(12)])
    venv = velory_env(env, smtp_server.env)
    unrecorded_seen = 0
    # Each limit lets the write-ahead log take a few more commits: the run stops at a claim
    # (before a mail) or at a record (after the server accepted one), whichever comes first.
    for limit in range(48 << 10, 176 << 10, 16 << 10):
        db = tmp_path / f"limit-{limit}" / "velory.db"
        db.parent.mkdir()
        shutil.copyfile(template, db)
        before = len(smtp_server.messages())

        stopped = run(["--db", str(db), *SEND], venv, tmp_path, preexec_fn=file_size_limit(limit))

        mails = smtp_server.messages()[before:]
        assert stopped.returncode == 74, str(stopped)
        assert_no_traceback(stopped)
        errors = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, str(stopped)
        assert "nothing was changed" not in errors[0]
        rows = {serial: (status, message_id) for serial, _, status, _, message_id in ledger(db)}
        recorded = [serial for serial, (status, _) in rows.items() if status == "sent"]
        assert f": {len(recorded)} notice" in errors[0] and "sent and recorded" in errors[0]
        # Every mail that went out is recorded sent, or named as sent but not recorded.
        sent_ids = {message_id: serial for serial, (_, message_id) in rows.items()}
        unrecorded = [
            sent_ids[m.message_id] for m in mails if rows[sent_ids[m.message_id]][0] != "sent"
        ]
        assert len(mails) == len(recorded) + len(unrecorded)
        for serial in unrecorded:
            assert f"{serial} (renewal to" in errors[0], errors[0]
        unrecorded_seen += len(unrecorded)

        # The next run, on a disk with room, sends the rest, and the unrecorded mail again,
        # with its Message-ID.
        again = run(["--db", str(db), *SEND], venv, tmp_path)
        assert again.returncode == 0, str(again)
        assert integrity(db) == ["ok"]
        later = smtp_server.messages()[before:]
        by_serial: dict[str, list[str]] = {}
        for mail in later:
            by_serial.setdefault(_serial_of(mail.rcpt_tos), []).append(mail.message_id)
        assert sorted(by_serial) == [f"D{n:02d}" for n in range(12)]
        for serial, ids in by_serial.items():
            assert len(ids) == (2 if serial in unrecorded else 1), (serial, ids)
            assert len(set(ids)) == 1
        assert all(status == "sent" for _, _, status, _, _ in ledger(db))
    assert unrecorded_seen > 0, "no limit stopped a run between a mail and its record"
    assert_store_sound(db, venv, tmp_path)


def _serial_of(recipients: Any) -> str:
    (address,) = recipients
    found = re.fullmatch(r"(d\d\d)@example\.com", address)
    assert found, address
    return found.group(1).upper()
