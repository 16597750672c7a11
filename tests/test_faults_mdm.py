"""SIGKILL at several moments of ``velory mdm import`` of a large snapshot: the previous
snapshot stays whole (or the new one is there whole), the register is untouched, the store is
sound, and the import run again completes."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
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
)
from tests.mdm_exports import intune_csv

pytestmark = [pytest.mark.faults, pytest.mark.subprocess]

SNAPSHOT_DEVICES = 50_000
FRACTIONS = (0.2, 0.5, 0.8)


def mdm_fingerprint(db: Path) -> dict[str, Any]:
    """The snapshots a store holds, without the time of the import."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        snapshots = conn.execute(
            "SELECT source, kind, file, taken_at, devices, skipped FROM mdm_snapshots"
            " ORDER BY source"
        ).fetchall()
        digest = hashlib.sha256()
        count = 0
        for row in conn.execute(
            "SELECT s.source, m.* FROM mdm_devices AS m JOIN mdm_snapshots AS s"
            " ON s.id = m.snapshot_id ORDER BY s.source, m.serial_key"
        ):
            count += 1
            digest.update(repr(row[:2] + row[3:]).encode())  # not the snapshot's id
        return {"snapshots": snapshots, "devices": count, "digest": digest.hexdigest()}
    finally:
        conn.close()


def test_an_mdm_import_killed_at_any_moment_keeps_the_previous_snapshot(
    tmp_path: Path, env: dict[str, str]
) -> None:
    venv = velory_env(env)
    template = tmp_path / "template.db"
    seed(template, (device_values(f"SN{n:09d}") for n in range(0, 4_000)))
    previous = intune_csv(
        tmp_path / "previous.csv",
        ({"serial": f"SN{n:09d}", "check_in": "2026-11-01T08:00:00Z"} for n in range(2_000)),
    )
    first = run(["--db", str(template), "mdm", "import", str(previous)], venv, tmp_path)
    assert first.returncode == 0, str(first)
    big = intune_csv(
        tmp_path / "DevicesWithInventory.csv",
        (
            {
                "serial": f"SN{n:09d}",
                "user": f"sn{n:09d}@example.com",
                "check_in": f"2026-11-{1 + n % 28:02d}T08:00:00Z",
            }
            for n in range(SNAPSHOT_DEVICES)
        ),
    )
    before, register = mdm_fingerprint(template), fingerprint(template)
    assert before["devices"] == 2_000

    def importing(db: Path) -> list[str]:
        return ["--db", str(db), "mdm", "import", str(big), "--json"]

    reference = copy_store(template, tmp_path / "reference" / "velory.db")
    began = time.monotonic()
    done = run(importing(reference), venv, tmp_path)
    duration = time.monotonic() - began
    assert done.returncode == 0, str(done)
    after = mdm_fingerprint(reference)
    assert after["devices"] == SNAPSHOT_DEVICES and after != before

    rng = random.Random(14)
    outcomes: list[tuple[str, Finished]] = []
    for number, fraction in enumerate(FRACTIONS):
        moment = duration * fraction * rng.uniform(0.85, 1.15)
        db = copy_store(template, tmp_path / f"kill-{number}" / "velory.db")
        result = kill_after(start(importing(db), venv, tmp_path), moment)
        outcomes.append((f"after {moment:.2f}s", result))
        assert mdm_fingerprint(db) in (before, after), f"half a snapshot after {moment:.2f}s"
        assert fingerprint(db) == register
        assert_store_sound(db, venv, tmp_path)

    db = copy_store(template, tmp_path / "kill-commit" / "velory.db")
    result = kill_when(start(importing(db), venv, tmp_path), lambda: wal_size(db) > 4 << 20)
    outcomes.append(("mid-commit", result))
    assert mdm_fingerprint(db) in (before, after), "half a snapshot, killed mid-commit"
    assert fingerprint(db) == register
    assert_store_sound(db, venv, tmp_path)

    killed = [when for when, result in outcomes if result.killed]
    assert len(killed) >= 2, f"too few runs were still going when killed: {outcomes}"
    # The check still reads the store after a kill, and the import run again completes.
    check = run(["--db", str(db), "mdm", "check", "--json"], venv, tmp_path)
    assert check.returncode in (0, 1), str(check)
    assert_no_traceback(check)
    again = run(importing(db), venv, tmp_path)
    assert again.returncode == 0, str(again)
    assert mdm_fingerprint(db) == after
