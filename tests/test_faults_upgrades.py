"""Stores from every earlier schema version (tests/fixtures/stores/schema-N.db, written by
tests/fixtures/make_stores.py and committed) open with the installed velory, upgrade, and keep
every device, note, history entry and notice; the flow goes on from where they were.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.faultkit import Finished, assert_no_traceback, assert_store_sound, run, velory_env
from tests.fixtures import make_stores
from velory_cli import migrations
from velory_cli.store import Store

pytestmark = [pytest.mark.faults, pytest.mark.subprocess]

VERSIONS = list(range(1, migrations.SCHEMA_VERSION + 1))
TABLES = ("devices", "history", "notes", "notices", "digests")


def rows(db: Path, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        exists = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()[0]
        if not exists:
            return []
        return conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id").fetchall()
    finally:
        conn.close()


def columns_of(db: Path, table: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def pragma(db: Path, name: str) -> Any:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def test_there_is_a_fixture_store_for_every_schema_version() -> None:
    missing = [v for v in VERSIONS if not make_stores.fixture_path(v).exists()]
    assert not missing, (
        f"no fixture store for schema {missing}: run python -m tests.fixtures.make_stores "
        "and commit the new file"
    )


def test_the_newest_fixture_has_exactly_the_schema_velory_creates(tmp_path: Path) -> None:
    def schema(db: Path) -> list[tuple[str, str]]:
        conn = sqlite3.connect(db)
        try:
            return sorted(
                conn.execute(
                    "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"
                    " AND name != '_sqlite_migrations'"
                ).fetchall()
            )
        finally:
            conn.close()

    fresh = tmp_path / "fresh.db"
    Store.open(fresh).close()
    assert schema(make_stores.fixture_path(migrations.SCHEMA_VERSION)) == schema(fresh)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"schema-{v}")
def test_a_store_from_an_earlier_schema_opens_upgrades_and_keeps_everything(
    tmp_path: Path, env: dict[str, str], version: int
) -> None:
    fixture = make_stores.fixture_path(version)
    db = tmp_path / "velory.db"
    shutil.copyfile(fixture, db)
    assert pragma(db, "user_version") == version
    kept = {table: columns_of(fixture, table) for table in TABLES}
    before = {table: rows(fixture, table, kept[table]) for table in TABLES if kept[table]}
    venv = velory_env(env)

    def velory(*args: str) -> Finished:
        result = run(["--db", str(db), "--actor", "carol", *args], venv, tmp_path)
        assert_no_traceback(result)
        return result

    def ok(*args: str) -> Any:
        result = velory(*args, "--json")
        assert result.returncode == 0, str(result)
        return json.loads(result.stdout)

    listed = ok("devices", "--include-removed")
    assert sorted(d["serial"] for d in listed) == sorted(
        d["serial"] for d in make_stores.devices_at(version)
    )
    assert pragma(db, "user_version") == migrations.SCHEMA_VERSION
    assert_store_sound(db, venv, tmp_path)
    # Every row the old store had is there, with every value it had.
    for table, old_rows in before.items():
        assert rows(db, table, kept[table]) == old_rows, table

    bought = ok("show", "old-bought")
    assert (bought["status"], bought["outcome"], bought["replacement_serial"]) == (
        "return_confirmed",
        "bought_out",
        "NEW-1",
    )
    assert [note["text"] for note in bought["notes"]] == ["Bought out by Cecilia"]
    assert [entry["action"] for entry in bought["history"]] == [
        "import",
        "start",
        "order",
        "deliver",
        "confirm-return",
    ]
    gone = ok("show", "OLD-GONE")
    assert gone["notes"][0]["text"] == "Returned to Atea\nbox 14, shelf B"
    assert ok("hardware", "CECILIA@nordlys.se")[0]["serial"] in ("NEW-1", "OLD-BOUGHT")
    notices = ok("notices", "list")
    expected = [] if version < 2 else [("OLD-ACTIVE", "sent"), ("OLD-BOUGHT", "pending")]
    assert [(n["serial"], n["status"]) for n in notices] == expected

    # The flow goes on where the old store left it.
    assert ok("release", "OLD-BOUGHT")["succeeded"] == 1
    assert ok("confirm-return", "OLD-STARTED", "--note", "Returned after upgrade")["succeeded"] == 1
    assert ok("start", "OLD-ACTIVE")["succeeded"] == 1
    dustin = velory("start", "DUS-1")
    assert dustin.returncode == 1
    assert ok("show", "OLD-BOUGHT")["history"][-1]["actor"] == "carol"
    if version >= 6:
        lost = ok("show", "LOST-1")
        assert (lost["status"], lost["outcome"]) == ("removed", "lost")
        back = ok("reinstate", "LOST-1", "--reason", "found in the lost property office")
        assert back["results"][0]["status"] == "active"
    assert_store_sound(db, venv, tmp_path)


def test_the_fixtures_are_what_make_stores_writes(tmp_path: Path) -> None:
    """The committed files and the script agree (on content: SQLite's bytes may differ)."""
    for version in VERSIONS:
        written = tmp_path / f"schema-{version}.db"
        make_stores.write_store(written, version)
        committed = make_stores.fixture_path(version)
        for table in TABLES:
            columns = columns_of(committed, table)
            assert columns == columns_of(written, table)
            if columns:
                assert rows(committed, table, columns) == rows(written, table, columns)
