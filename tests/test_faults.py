"""SIGKILL at several moments of a large import, a bulk release of thousands and a notices run
against a slow mail server. After every kill the store is sound (``velory db check``, SQLite's
own integrity check), each command's changes are all there or none are, and no notice is lost
or sent twice, except the documented re-send of the one mail a run was sending when it died.

The moments are fractions of how long the same command takes uninterrupted (measured first,
on a copy), with a seeded jitter, plus one taken the moment the commit is being written (the
write-ahead log grows).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.factory import device_values
from tests.faultkit import (
    Finished,
    assert_no_traceback,
    assert_store_sound,
    copy_store,
    fingerprint,
    kill_after,
    kill_when,
    run,
    seed,
    start,
    velory_env,
    wal_size,
    write_import_csv,
)
from tests.smtp_server import SmtpServer

pytestmark = [pytest.mark.faults, pytest.mark.subprocess]

IMPORT_ROWS = 50_000
RELEASE_COUNT = 4_000
FRACTIONS = (0.25, 0.6, 0.9)


def moments(duration: float, seed_value: int) -> list[float]:
    """When to kill: spread over the uninterrupted run's duration, with a seeded jitter so a
    failure can be reproduced."""
    rng = random.Random(seed_value)
    return [duration * fraction * rng.uniform(0.85, 1.15) for fraction in FRACTIONS]


def timed(call: Callable[[], Finished]) -> tuple[Finished, float]:
    began = time.monotonic()
    result = call()
    return result, time.monotonic() - began


@pytest.fixture
def venv(env: dict[str, str]) -> dict[str, str]:
    return velory_env(env)


# ---- a large import --------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["empty", "with-a-fleet"])
def test_an_import_killed_at_any_moment_leaves_all_or_nothing(
    tmp_path: Path, venv: dict[str, str], store: str
) -> None:
    template = tmp_path / "template.db"
    # Into an empty store (its indexes are built at the end), or over a fleet where every
    # other device of the file is in the store already (the import inserts and updates).
    existing = range(0, 4_000, 2) if store == "with-a-fleet" else range(0)
    seed(template, (device_values(f"SN{n:06d}") for n in existing))
    source = write_import_csv(tmp_path / "fleet.csv", IMPORT_ROWS)
    before = fingerprint(template)

    def importing(db: Path) -> list[str]:
        return ["--db", str(db), "import", str(source), "--json"]

    reference = copy_store(template, tmp_path / "reference" / "velory.db")
    done, duration = timed(lambda: run(importing(reference), venv, tmp_path))
    assert done.returncode == 0, str(done)
    after = fingerprint(reference)
    assert after["devices"] == IMPORT_ROWS
    assert after != before

    outcomes: list[tuple[str, Finished]] = []
    for number, moment in enumerate(moments(duration, len(store))):
        db = copy_store(template, tmp_path / f"kill-{number}" / "velory.db")
        result = kill_after(start(importing(db), venv, tmp_path), moment)
        outcomes.append((f"after {moment:.2f}s", result))
        assert fingerprint(db) in (before, after), f"half an import after {moment:.2f}s"
        assert_store_sound(db, venv, tmp_path)

    # The moment the commit is being written: the write-ahead log has grown past 4 MB.
    db = copy_store(template, tmp_path / "kill-commit" / "velory.db")
    result = kill_when(start(importing(db), venv, tmp_path), lambda: wal_size(db) > 4 << 20)
    outcomes.append(("mid-commit", result))
    assert fingerprint(db) in (before, after), "half an import, killed mid-commit"
    assert_store_sound(db, venv, tmp_path)

    killed = [when for when, result in outcomes if result.killed]
    assert len(killed) >= 2, f"too few runs were still going when killed: {outcomes}"
    # Run again after the kill: the import completes as if nothing had happened.
    again = run(importing(db), venv, tmp_path)
    assert again.returncode == 0, str(again)
    assert fingerprint(db) == after


def test_a_first_import_killed_at_any_moment_leaves_no_store_or_a_whole_one(
    tmp_path: Path, venv: dict[str, str]
) -> None:
    """The import that creates the store, killed: no store at its path (every other command
    says so, 74) or the whole import, never an empty or half store; the next import completes
    it and clears what the killed one left beside it."""
    source = write_import_csv(tmp_path / "fleet.csv", IMPORT_ROWS)

    def importing(db: Path) -> list[str]:
        return ["--db", str(db), "import", str(source), "--json"]

    reference = tmp_path / "reference" / "store" / "velory.db"
    done, duration = timed(lambda: run(importing(reference), venv, tmp_path))
    assert done.returncode == 0, str(done)
    after = fingerprint(reference)

    killed = 0
    for number, moment in enumerate(moments(duration, 7)):
        db = tmp_path / f"kill-{number}" / "store" / "velory.db"
        result = kill_after(start(importing(db), venv, tmp_path), moment)
        killed += result.killed
        if db.exists():
            assert fingerprint(db) == after, f"half a first import after {moment:.2f}s"
            assert_store_sound(db, venv, tmp_path)
            continue
        looked = run(["--db", str(db), "devices"], venv, tmp_path)
        assert looked.returncode == 74, str(looked)
        again = run(importing(db), venv, tmp_path)
        assert again.returncode == 0, str(again)
        assert fingerprint(db) == after
        assert sorted(p.name for p in db.parent.iterdir()) == ["velory.db"]
    assert killed >= 2, "too few runs were still going when killed"


# ---- a bulk release of thousands -------------------------------------------------------------


def test_a_bulk_release_killed_at_any_moment_leaves_all_or_nothing(
    tmp_path: Path, venv: dict[str, str]
) -> None:
    template = tmp_path / "template.db"
    serials = [f"RC{n:05d}" for n in range(RELEASE_COUNT)]
    seed(
        template,
        [
            *(device_values(serial, status="return_confirmed") for serial in serials),
            *(device_values(f"KEEP{n:03d}") for n in range(100)),
        ],
    )
    listing = tmp_path / "released.txt"
    listing.write_text("# released this week\n" + "\n".join(serials) + "\n", encoding="utf-8")
    before = fingerprint(template)

    def releasing(db: Path) -> list[str]:
        return ["--db", str(db), "release", "--file", str(listing), "--yes", "--json"]

    reference = copy_store(template, tmp_path / "reference" / "velory.db")
    done, duration = timed(lambda: run(releasing(reference), venv, tmp_path))
    assert done.returncode == 0, str(done)
    after = fingerprint(reference)
    assert after["history"]["release"] == RELEASE_COUNT

    outcomes: list[tuple[str, Finished]] = []
    for number, moment in enumerate(moments(duration, 2)):
        db = copy_store(template, tmp_path / f"kill-{number}" / "velory.db")
        result = kill_after(start(releasing(db), venv, tmp_path), moment)
        outcomes.append((f"after {moment:.2f}s", result))
        assert fingerprint(db) in (before, after), f"half a release after {moment:.2f}s"
        assert_store_sound(db, venv, tmp_path)

    db = copy_store(template, tmp_path / "kill-commit" / "velory.db")
    result = kill_when(start(releasing(db), venv, tmp_path), lambda: wal_size(db) > 64 << 10)
    outcomes.append(("mid-commit", result))
    assert fingerprint(db) in (before, after), "half a release, killed mid-commit"
    assert_store_sound(db, venv, tmp_path)

    killed = [when for when, result in outcomes if result.killed]
    assert len(killed) >= 2, f"too few runs were still going when killed: {outcomes}"
    again = run(releasing(db), venv, tmp_path)
    assert again.returncode == 0, str(again)
    assert fingerprint(db) == after


# ---- a notices run against a slow mail server ------------------------------------------------

DUE = 8
AS_OF = "2026-11-01"


def ledger(db: Path, venv: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    import json

    listed = run(["--db", str(db), "notices", "list", "--json"], venv, cwd)
    assert listed.returncode == 0, str(listed)
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    return rows


@pytest.mark.parametrize(
    "moment",
    ["first-mail", "third-mail", "sixth-mail", "random-early", "random-late"],
)
def test_a_notices_run_killed_at_any_moment_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path,
    venv: dict[str, str],
    smtp_factory: Callable[..., SmtpServer],
    moment: str,
) -> None:
    db = tmp_path / "velory.db"
    addresses = sorted(f"due{n}@example.com" for n in range(DUE))
    seed(
        db,
        [
            *(device_values(f"DUE{n}", renewal_date="2026-11-20") for n in range(DUE)),
            device_values("LATER", renewal_date="2027-06-01"),
        ],
    )
    server = smtp_factory(delay=0.15)
    settings = velory_env(venv, server.env)
    sending = ["--db", str(db), "notices", "send", "--as-of", AS_OF]

    proc = start(sending, settings, tmp_path)
    if moment.endswith("-mail"):
        wanted = {"first": 1, "third": 3, "sixth": 6}[moment.split("-")[0]]
        result = kill_when(proc, lambda: len(server.messages()) >= wanted)
    else:
        rng = random.Random(moment)
        delay = rng.uniform(0.2, 0.6) if moment == "random-early" else rng.uniform(0.7, 1.2)
        result = kill_after(proc, delay)
    assert result.killed or result.returncode == 0, str(result)
    time.sleep(0.3)  # the server finishes the mail it was answering when the run died
    delivered_before = len(server.messages())
    assert_store_sound(db, settings, tmp_path)
    interrupted = [row for row in ledger(db, settings, tmp_path) if row["status"] == "sending"]
    assert len(interrupted) <= 1, interrupted  # one mail at a time is ever claimed

    server.delay = 0.0
    follow_up = run(sending, settings, tmp_path)

    assert follow_up.returncode == 0, str(follow_up)
    assert_no_traceback(follow_up)
    counts = Counter(server.recipients())
    assert sorted(counts) == addresses  # nothing lost
    twice = sorted(address for address, count in counts.items() if count > 1)
    assert max(counts.values()) <= 2
    if interrupted:
        # The one exception: the mail the killed run was sending goes again, recognisably.
        assert twice in ([], [interrupted[0]["recipient"]])
        assert "may get it twice" in follow_up.stderr
        assert interrupted[0]["message_id"] in follow_up.stderr
        resent = server.messages()[delivered_before:]
        for mail in resent:
            if mail.rcpt_tos[0] == interrupted[0]["recipient"]:
                assert mail.message_id == interrupted[0]["message_id"]
    else:
        assert twice == []
        assert "twice" not in follow_up.stderr
    for address in twice:
        assert len({mail.message_id for mail in server.to(address)}) == 1
    rows = ledger(db, settings, tmp_path)
    assert [row["status"] for row in rows] == ["sent"] * DUE
    assert_store_sound(db, settings, tmp_path)
