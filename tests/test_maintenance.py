"""velory db backup and db check: a consistent copy, and a health report that can fail."""

from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from velory_cli.errors import OutputUnwritable
from velory_cli.maintenance import backup_store, check_store
from velory_cli.store import Store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_backup_is_a_complete_private_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        for number in range(50):
            add_device(store, f"SN{number:03}")
        target = backup_store(store, tmp_path / "backup.db")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with Store.open(target) as copy:
        assert len(copy.devices()) == 50
        assert check_store(copy, now=NOW).ok


@pytest.mark.parametrize("kind", ["fifo", "folder", "link to /dev/null"])
def test_backup_never_replaces_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    import os

    target = tmp_path / "backup.db"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        target.symlink_to(os.devnull)
    before = os.lstat(target)
    with Store.open(tmp_path / "velory.db") as store, pytest.raises(OutputUnwritable) as caught:
        backup_store(store, target, force=True)
    assert caught.value.exit_code == 73
    assert os.lstat(target).st_ino == before.st_ino
    # No temporary copy left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db", "velory.db"]


def test_backup_is_private_whatever_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        with Store.open(tmp_path / "velory.db") as store:
            target = backup_store(store, tmp_path / "backup.db")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_backup_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "backup.db"
    target.write_text("yesterday's backup")
    with Store.open(tmp_path / "velory.db") as store:
        with pytest.raises(OutputUnwritable, match="--force"):
            backup_store(store, target)
        assert target.read_text() == "yesterday's backup"
        backup_store(store, target, force=True)
    assert target.read_bytes().startswith(b"SQLite format 3")


def test_backup_into_a_missing_folder_leaves_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store, pytest.raises(OutputUnwritable):
        backup_store(store, tmp_path / "nowhere" / "backup.db")
    assert not (tmp_path / "nowhere").exists()


def test_check_passes_on_a_healthy_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        add_device(store, "A1")
        report = check_store(store, now=NOW)
    assert report.ok
    assert {check.name for check in report.checks} >= {"integrity", "foreign keys"}


def test_check_finds_orphans_broken_links_and_stuck_notices(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        device_id = add_device(store, "A1", replacement_serial="GONE1")
        store.conn.execute("PRAGMA foreign_keys = OFF")
        store.conn.execute(
            "INSERT INTO notes (device_id, at, actor, text) VALUES (999, 'x', 'y', 'orphan')"
        )
        store.conn.execute(
            "INSERT INTO notices (device_id, kind, renewal_date, status, claimed_by, claimed_at,"
            " created_at, updated_at) VALUES (?, 'renewal', '2026-12-01', 'sending', 'host:1',"
            " '2026-11-29T10:00:00Z', 'x', 'x')",
            (device_id,),
        )
        report = check_store(store, now=NOW)
    failed = {check.name: check.problems for check in report.checks if not check.ok}
    assert set(failed) == {"foreign keys", "replacement links", "notices stuck in sending"}
    assert "GONE1" in failed["replacement links"][0]
    assert "A1" in failed["notices stuck in sending"][0]


def test_a_fresh_claim_is_not_stuck(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        device_id = add_device(store, "A1")
        store.conn.execute(
            "INSERT INTO notices (device_id, kind, renewal_date, status, claimed_by, claimed_at,"
            " created_at, updated_at) VALUES (?, 'renewal', '2026-12-01', 'sending', 'host:1',"
            " '2026-11-29T11:59:00Z', 'x', 'x')",
            (device_id,),
        )
        assert check_store(store, now=NOW).ok


def test_db_check_command_exits_1_when_something_is_wrong(invoke: Invoke, home: Path) -> None:
    path = home / "velory.db"
    with Store.open(path) as store:
        add_device(store, "A1")
    healthy = invoke(["db", "check", "--json"])
    assert healthy.exit_code == 0, healthy.output
    assert json_out(healthy)["ok"] is True
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM history")
    conn.commit()
    conn.close()
    broken = invoke(["db", "check", "--json"])
    assert broken.exit_code == 1
    assert json_out(broken)["ok"] is False
    table = invoke(["db", "check"])
    assert table.exit_code == 1
    assert "A1: no history entry" in table.stdout


def test_db_backup_command(invoke: Invoke, home: Path, tmp_path: Path) -> None:
    with Store.open(home / "velory.db") as store:
        add_device(store, "A1")
    target = tmp_path / "b.db"
    result = invoke(["db", "backup", str(target), "--json"])
    assert result.exit_code == 0, result.output
    assert json_out(result)["backup"] == str(target)
    again = invoke(["db", "backup", str(target)])
    assert again.exit_code == 73
    assert again.stdout == ""


@pytest.mark.parametrize(
    "command", [["db", "check"], ["db", "check", "--json"], ["db", "backup", "b.db"]]
)
def test_db_commands_never_create_a_store(
    invoke: Invoke, home: Path, tmp_path: Path, command: list[str]
) -> None:
    """A mistyped --db must not become a new, empty store reported healthy (or backed up)."""
    mistyped = tmp_path / "typo" / "velroy.db"
    args = [arg if arg != "b.db" else str(tmp_path / "b.db") for arg in command]
    result = invoke(["--db", str(mistyped), *args])
    assert result.exit_code == 74
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: no store at {mistyped} (given with --db); ")
    assert result.stderr.count("\n") == 1
    assert not mistyped.parent.exists()
    assert not (tmp_path / "b.db").exists()
    default = invoke(args)  # the default store, not made yet either
    assert default.exit_code == 74
    assert not (home / "velory.db").exists()
