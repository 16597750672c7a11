"""Several writers on one store at once: an import, a bulk release and a notices run started
together, round after round. Each either does its work or, when the store stays busy past
``VELORY_BUSY_TIMEOUT``, exits 75 having changed nothing, and a later run does it. Never a
traceback or SQLite's own "database is locked"; the store passes ``velory db check``; every
due notice is mailed exactly once.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.factory import device_values
from tests.faultkit import (
    Finished,
    assert_no_traceback,
    assert_store_sound,
    fingerprint,
    finish,
    run,
    seed,
    start,
    velory_env,
)
from tests.smtp_server import SmtpServer
from velory_cli import migrations

pytestmark = [pytest.mark.faults, pytest.mark.subprocess]

ROUNDS = 3
IMPORT_ROWS = 10_000
RELEASES = 1_000
AS_OF = "2026-11-01"
# Every this many imported rows is due for a renewal notice on AS_OF.
DUE_EVERY = 1_000


def write_round_csv(path: Path, round_number: int) -> list[str]:
    """The import of one round: new devices, some due for a notice; their due addresses."""
    first = round_number * IMPORT_ROWS
    lines = ["Serial,Model,Email,Full Name,Distributor,Purchase Date,Renewal Date"]
    due: list[str] = []
    for n in range(first, first + IMPORT_ROWS):
        renewal = "2026-11-20" if n % DUE_EVERY == 0 else "2028-03-01"
        if n % DUE_EVERY == 0:
            due.append(f"user{n}@example.com")
        lines.append(
            f"NEW{n:06d},Latitude 5440,user{n}@example.com,User {n},Atea,2025-03-01,{renewal}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return due


@pytest.mark.parametrize("busy_timeout", [None, "0.05"], ids=["default-timeout", "short-timeout"])
def test_an_import_a_release_and_a_notices_run_at_once(
    tmp_path: Path,
    env: dict[str, str],
    smtp_factory: Callable[..., SmtpServer],
    busy_timeout: str | None,
) -> None:
    db = tmp_path / "velory.db"
    releasable = [f"RC{n:05d}" for n in range(ROUNDS * RELEASES)]
    seed(
        db,
        [
            *(device_values(serial, status="return_confirmed") for serial in releasable),
            *(device_values(f"DUE{n}", renewal_date="2026-11-15") for n in range(4)),
        ],
    )
    expected_mails = [f"due{n}@example.com" for n in range(4)]
    server = smtp_factory(delay=0.02)
    settings = velory_env(
        env, {**server.env, **({"VELORY_BUSY_TIMEOUT": busy_timeout} if busy_timeout else {})}
    )

    busy_seen = 0
    for round_number in range(ROUNDS):
        source = tmp_path / f"round-{round_number}.csv"
        expected_mails += write_round_csv(source, round_number)
        listing = tmp_path / f"release-{round_number}.txt"
        chunk = releasable[round_number * RELEASES : (round_number + 1) * RELEASES]
        listing.write_text("\n".join(chunk) + "\n", encoding="utf-8")
        commands = [
            ["--db", str(db), "import", str(source), "--json"],
            ["--db", str(db), "release", "--file", str(listing), "--yes", "--json"],
            ["--db", str(db), "notices", "send", "--as-of", AS_OF, "--json"],
        ]
        procs = [start(args, settings, tmp_path) for args in commands]
        results: list[Finished] = [finish(proc) for proc in procs]
        for args, result in zip(commands, results, strict=True):
            assert_no_traceback(result)
            assert result.returncode in (0, 75), str(result)
            if result.returncode == 75:
                busy_seen += 1
                assert "busy" in result.stderr, str(result)
                # Nothing half done: run again alone, it does all of it.
                again = run(args, settings, tmp_path)
                assert again.returncode == 0, str(again)
            else:
                json.loads(result.stdout)  # a whole JSON document, never half of one
        assert_store_sound(db, settings, tmp_path)

    if busy_timeout is None:
        assert busy_seen == 0, "a writer gave up although the default timeout is ample"
    final = run(["--db", str(db), "notices", "send", "--as-of", AS_OF], settings, tmp_path)
    assert final.returncode == 0, str(final)
    assert_no_traceback(final)

    state = fingerprint(db)
    assert state["devices"] == len(releasable) + 4 + ROUNDS * IMPORT_ROWS
    assert state["history"]["release"] == len(releasable)
    assert state["notices"] == {"sent": len(expected_mails)}
    counts = Counter(server.recipients())
    assert sorted(counts) == sorted(expected_mails)  # none lost
    assert set(counts.values()) == {1}, counts.most_common(3)  # none twice
    assert_store_sound(db, settings, tmp_path)


def test_a_mail_accepted_while_another_writer_holds_the_store_is_still_recorded(
    tmp_path: Path, env: dict[str, str], smtp_factory: Callable[..., SmtpServer]
) -> None:
    """The run waits for the store to record a mail the server accepted, well past a short
    busy timeout: giving up would make the next run send that mail again."""
    import time

    db = tmp_path / "velory.db"
    seed(db, [device_values(f"DUE{n}", renewal_date="2026-11-15") for n in range(3)])
    server = smtp_factory(delay=0.5)
    settings = velory_env(env, {**server.env, "VELORY_BUSY_TIMEOUT": "0.05"})
    sending = ["--db", str(db), "notices", "send", "--as-of", AS_OF, "--json"]

    proc = start(sending, settings, tmp_path)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the first mail is claimed and in flight
            claimed = other.execute("SELECT count(*) FROM notices WHERE status = 'sending'")
            if claimed.fetchone()[0]:
                break
            time.sleep(0.005)
        else:
            pytest.fail("no notice was ever claimed")
        other.execute("BEGIN IMMEDIATE")  # another writer, while the server takes its time
        time.sleep(1.5)
        assert server.messages(), "the server should have accepted the mail by now"
        other.execute("ROLLBACK")
    finally:
        other.close()
    result = finish(proc)

    assert result.returncode == 0, str(result)
    assert json.loads(result.stdout)["sent"] == 3
    again = run(sending, settings, tmp_path)
    assert again.returncode == 0, str(again)
    assert json.loads(again.stdout)["sent"] == 0
    assert sorted(server.recipients()) == [f"due{n}@example.com" for n in range(3)]


def test_velorys_creating_the_same_new_store_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    """The first use of a store, by several commands at once (an admin's db init and import,
    cron's readers): the creators take turns, one builds and migrates the store and the others
    use it; a reader finds a store, or none (74, named), never half of one."""
    source = tmp_path / "few.csv"
    source.write_text(
        "Serial,Renewal Date\n" + "".join(f"F{n},2027-01-01\n" for n in range(5)), encoding="utf-8"
    )
    settings = velory_env(env)
    for attempt in range(3):
        db = tmp_path / f"new-{attempt}" / "velory.db"
        creators = [
            ["--db", str(db), "db", "init"],
            ["--db", str(db), "import", str(source), "--json"],
            ["--db", str(db), "db", "init", "--json"],
        ]
        readers = [
            ["--db", str(db), "devices", "--json"],
            ["--db", str(db), "stats", "--json"],
            ["--db", str(db), "notices", "list", "--json"],
            ["--db", str(db), "todo", "--json"],
            ["--db", str(db), "renewals", "--json"],
        ]
        started = [start(args, settings, tmp_path) for args in [*creators, *readers]]
        results = [finish(proc) for proc in started]
        for result in results[: len(creators)]:
            assert result.returncode == 0, str(result)
            assert_no_traceback(result)
        for result in results[len(creators) :]:
            assert result.returncode in (0, 74), str(result)
            if result.returncode == 74:
                assert result.stderr.startswith(f"error: no store at {db} "), str(result)
            assert_no_traceback(result)
        assert_store_sound(db, settings, tmp_path)
        assert fingerprint(db)["devices"] == 5
        assert (
            sorted(p.name for p in db.parent.iterdir() if not p.name.startswith("velory.db")) == []
        )
        conn = sqlite3.connect(db)
        try:
            names = [row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations")]
        finally:
            conn.close()
        assert names == migrations.step_names()
