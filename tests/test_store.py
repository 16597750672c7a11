"""The store: created private, upgraded in order, never overwriting what is not ours."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from velory_cli import migrations
from velory_cli.errors import StoreUnusable, TemporaryFailure
from velory_cli.store import APPLICATION_ID, Store


def test_new_store_is_private_and_fully_migrated(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "velory.db"
    with Store.open(path) as store:
        version = store.conn.execute("PRAGMA user_version").fetchone()[0]
        journal = store.conn.execute("PRAGMA journal_mode").fetchone()[0]
        app_id = store.conn.execute("PRAGMA application_id").fetchone()[0]
    assert version == migrations.SCHEMA_VERSION
    assert journal == "wal"
    assert app_id == APPLICATION_ID
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "velory.db"
    Store.open(path).close()
    with Store.open(path) as store:
        names = [
            row[0]
            for row in store.conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")
        ]
    assert names == migrations.step_names()


def test_a_file_that_is_not_sqlite_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"shopping list\n")
    with pytest.raises(StoreUnusable, match="not a velory store"):
        Store.open(path)
    assert path.read_bytes() == b"shopping list\n"


def test_another_programs_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreUnusable, match="not a velory store"):
        Store.open(path)
    assert path.read_bytes() == before


def test_a_store_from_a_newer_velory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "velory.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreUnusable, match="newer velory"):
        Store.open(path)


def test_a_truncated_store_is_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "velory.db"
    Store.open(path).close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\x00" * 50)
    with pytest.raises(StoreUnusable):
        Store.open(path)


def test_a_busy_store_is_a_temporary_failure(tmp_path: Path) -> None:
    path = tmp_path / "velory.db"
    Store.open(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with (
            Store.open(path, busy_timeout=0.1) as store,
            pytest.raises(TemporaryFailure),
            store.transaction(),
        ):
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.insert_device(
                {"serial": "A1", "created_at": "2026-01-01", "updated_at": "2026-01-01"}
            )
            raise RuntimeError("killed half way")
        assert store.device("a1") is None


def test_a_store_from_schema_1_is_upgraded_and_keeps_its_devices(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    from sqlite_utils import Database

    db = Database(conn)
    migrations.migrations().apply(db, stop_before=migrations.step_names()[1])
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO devices (serial, created_at, updated_at, renewal_date)"
        " VALUES ('OLD1', 'x', 'x', '2027-01-01')"
    )
    conn.close()
    with Store.open(path) as store:
        device = store.device("old1")
        assert device is not None
        assert device.renewal_date == "2027-01-01"
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == (
            migrations.SCHEMA_VERSION
        )
        assert store.notices_for_device(device.id) == []


def test_a_store_folder_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreUnusable, match="cannot create the store"):
        Store.open(blocker / "sub" / "velory.db")


def test_a_missing_store_is_not_created_when_asked_not_to(tmp_path: Path) -> None:
    path = tmp_path / "mistyped" / "velory.db"
    with pytest.raises(StoreUnusable, match=f"no store at {path}"):
        Store.open(path, create=False)
    assert not path.parent.exists()
    Store.open(path).close()
    Store.open(path, create=False).close()


def test_every_folder_a_new_store_creates_is_private(tmp_path: Path) -> None:
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    path = existing / "a" / "b" / "velory.db"
    old_umask = os.umask(0o022)
    try:
        Store.open(path).close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((existing / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((existing / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755  # not ours: left as it was
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---- matching any case, beyond ASCII -------------------------------------------------------


def test_filters_match_any_case_beyond_ascii(tmp_path: Path) -> None:
    from tests.factory import add_device
    from velory_cli.store import DeviceFilter

    with Store.open(tmp_path / "velory.db") as store:
        add_device(store, "E1", distributor="Elkjøp Nordic", user_email="Åsa.Ek@x.se")
        add_device(store, "E2", distributor="ELKJØP", user_email="asa.ek@x.se")
        add_device(store, "A1", distributor="Atea", user_email="bo@x.se")

        def serials(**where: Any) -> list[str]:
            return sorted(d.serial for d in store.devices(DeviceFilter(**where)))

        def due(**where: Any) -> list[str]:
            return sorted(
                d.serial for d, _ in store.renewals_due("2030-01-01", DeviceFilter(**where))
            )

        assert serials(distributor="ELKJØP") == ["E1", "E2"]
        assert serials(distributor="elkjøp") == ["E1", "E2"]
        assert serials(distributor="ELKJ") == ["E1", "E2"]  # ASCII: LIKE, as before
        assert serials(distributor="øp n") == ["E1"]
        assert serials(distributor="100%") == []
        assert serials(user_email=" åsa.ek@x.se ") == ["E1"]
        assert serials(user_email="ÅSA.EK@X.SE") == ["E1"]
        assert serials(user_email="BO@x.se") == ["A1"]
        assert due(distributor="ELKJØP") == ["E1", "E2"]
        assert due(user_email="åsa.ek@X.se") == ["E1"]


def test_serials_beyond_ascii_match_any_case(tmp_path: Path) -> None:
    from tests.factory import add_device

    with Store.open(tmp_path / "velory.db") as store:
        add_device(store, "ÅB-1")
        add_device(store, "ab-2")
        found = store.device(" åb-1 ")
        assert found is not None and found.serial == "ÅB-1"
        assert store.device("AB-2") is not None
        assert store.device("øb-1") is None
        by_serial = store.devices_by_serials(["åb-1", "AB-2", "ØØ"])
        assert sorted(by_serial) == ["ab-2", "åb-1"]  # keyed by fold()


def test_the_default_app_directory_is_the_one_typer_names(tmp_path: Path) -> None:
    import typer

    from velory_cli.config import app_dir

    assert str(app_dir(dict(os.environ, VELORY_HOME=""))) == typer.get_app_dir("velory")
    assert app_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "velory"
    assert app_dir({"VELORY_HOME": str(tmp_path / "h")}) == tmp_path / "h"


# ---- a new store comes into being whole, or not at all ---------------------------------------


def test_a_new_store_is_put_in_place_only_when_published(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "velory.db"
    with Store.open_or_create(path) as store:
        assert store.is_new and store.path == path
        assert not path.exists()
        with store.transaction():
            store.conn.execute(
                "INSERT INTO devices (serial, source, status, created_at, updated_at) "
                "VALUES ('A1', 'imported', 'active', 'now', 'now')"
            )
        store.publish()
        assert not store.is_new
    assert sorted(p.name for p in path.parent.iterdir()) == ["velory.db"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with Store.open(path, create=False) as reopened:
        assert reopened.device("a1") is not None


def test_a_new_store_is_built_without_a_log_and_is_in_wal_once_in_place(tmp_path: Path) -> None:
    # No one else opens the file a store is built in: each page is written once, into it.
    path = tmp_path / "velory.db"
    with Store.open_or_create(path) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        with store.transaction():
            store.conn.execute(
                "INSERT INTO devices (serial, source, status, created_at, updated_at) "
                "VALUES ('A1', 'imported', 'active', 'now', 'now')"
            )
            assert not [p.name for p in tmp_path.iterdir() if p.name.endswith("-wal")]
        store.publish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["velory.db"]
    with Store.open(path, create=False) as reopened:
        assert reopened.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert reopened.device("a1") is not None


def test_a_new_store_never_published_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "velory.db"
    with Store.open_or_create(path) as store:
        assert store.is_new
        assert path.parent.exists()  # built beside its path, meanwhile
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), Store.open_or_create(path):
        raise RuntimeError("the import failed")
    assert list(tmp_path.iterdir()) == []


def test_folders_that_were_there_stay(tmp_path: Path) -> None:
    path = tmp_path / "velory.db"
    with Store.open_or_create(path):
        pass
    assert tmp_path.exists() and list(tmp_path.iterdir()) == []


def test_an_existing_store_is_opened_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "velory.db"
    Store.open(path).close()
    with Store.open_or_create(path) as store:
        assert not store.is_new
        store.publish()  # nothing to do
    assert sorted(p.name for p in tmp_path.iterdir()) == ["velory.db"]


def test_a_scratch_store_is_never_at_its_path(tmp_path: Path) -> None:
    path = tmp_path / "a" / "velory.db"
    with Store.open_or_create(path, scratch=True) as store:
        assert store.path == path
        assert store.devices() == []
    assert list(tmp_path.iterdir()) == []


def test_what_a_killed_build_left_is_cleared_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "velory.db"
    for leftover in (".velory.db.abc123.new", ".velory.db.abc123.new-wal"):
        (tmp_path / leftover).write_bytes(b"half a store")
    (tmp_path / "keep.txt").write_text("not velory's")
    with Store.open_or_create(path) as store:
        store.publish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "velory.db"]


def test_a_store_that_appeared_meanwhile_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "velory.db"
    with Store.open_or_create(path) as store:
        assert store.is_new
        # Another velory of a version without the creation lock made one meanwhile.
        Store.open(path).close()
        data = path.read_bytes()
        with pytest.raises(TemporaryFailure, match="at the same moment"):
            store.publish()
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["velory.db"]


def test_a_velory_creating_the_store_makes_the_next_wait_its_turn(tmp_path: Path) -> None:
    path = tmp_path / "velory.db"
    with Store.open_or_create(path, busy_timeout=0.1) as first:
        assert first.is_new
        waiting = Store.open_or_create(path, busy_timeout=0.1)
        with pytest.raises(TemporaryFailure, match="another velory is creating the store"):
            waiting.__enter__()
        first.publish()
    with Store.open_or_create(path, busy_timeout=0.1) as second:
        assert not second.is_new


def test_a_velory_whose_turn_comes_after_the_folder_went_makes_it_again(tmp_path: Path) -> None:
    # The velory before it created nothing and removed the folder it had made for the store.
    from velory_cli import store as store_module

    path = tmp_path / "gone" / "velory.db"
    folders: list[Path] = []
    with store_module._creation_lock(path, 1.0, folders):
        assert (tmp_path / "gone" / ".velory.db.lock").exists()
    assert folders == [tmp_path / "gone"]
    assert list((tmp_path / "gone").iterdir()) == []


def test_the_serial_keys_step_keeps_two_devices_that_fold_alike(tmp_path: Path) -> None:
    """A store from before serial keys may hold ÅB1 and åb1 (NOCASE told them apart): the
    upgrade keeps both, the older found by every spelling, the newer by its own, and says so
    in the newer one's history."""
    import sqlite3

    from sqlite_utils import Database

    from velory_cli import migrations

    path = tmp_path / "velory.db"
    conn = sqlite3.connect(path)
    names = migrations.step_names()
    migrations.migrations().apply(Database(conn), stop_before=["0004_serial_keys"])
    for serial in ("ÅB1", "åb1", "C1"):
        conn.execute(
            "INSERT INTO devices (serial, created_at, updated_at) VALUES (?, 'x', 'x')", (serial,)
        )
    conn.execute(f"PRAGMA application_id = {0x56454C59}")
    conn.execute(f"PRAGMA user_version = {names.index('0004_serial_keys')}")
    conn.commit()
    conn.close()
    with Store.open(path) as store:
        older = store.device("åB1 ")
        assert older is not None and older.serial == "ÅB1"
        newer = store.device("åb1")
        assert newer is not None and newer.serial == "åb1"
        assert store.device("c1") is not None
        assert [e.action for e in store.history(newer.id)] == ["upgrade"]
        assert store.history(newer.id)[0].details == {"same_serial_as": "ÅB1"}
        assert store.history(older.id) == []


def test_emails_beyond_ascii_match_in_any_spelling(tmp_path: Path) -> None:
    from tests.factory import add_device
    from velory_cli.store import DeviceFilter

    with Store.open(tmp_path / "velory.db") as store:
        add_device(store, "E1", user_email="Åsa.Ek@x.se")
        for spelling in ("åsa.ek@x.se", "A\u030asa.ek@X.se"):
            found = store.devices(DeviceFilter(user_email=spelling))
            assert [d.serial for d in found] == ["E1"], spelling


NOTICE_LEDGER = (
    "id, device_id, kind, renewal_date, recipient, status, attempts, error, message_id,"
    " claimed_by, claimed_at, sent_at, created_at, updated_at"
)


def _ledger(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'notices'").fetchone():
            return []
        return conn.execute(f"SELECT {NOTICE_LEDGER} FROM notices ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_a_store_of_an_earlier_schema_keeps_every_notice_and_takes_one_per_recipient(
    tmp_path: Path, version: int
) -> None:
    from tests.fixtures import make_stores

    path = tmp_path / "velory.db"
    make_stores.write_store(path, version)
    conn = sqlite3.connect(path)
    with conn:  # a notice of every state, as an earlier velory left them
        for status, attempts, recipient in [
            ("sending", 1, "Åsa.Lindstrom@nordlys.se"),
            ("failed", 2, "typo@nordlys.se"),
            ("cancelled", 0, None),
        ]:
            if version < 2:
                break
            conn.execute(
                "INSERT INTO notices (device_id, kind, renewal_date, recipient, status, attempts,"
                " error, message_id, claimed_by, claimed_at, created_at, updated_at)"
                " VALUES (1, ?, '2026-12-01', ?, ?, ?, 'was', '<velory.x@y>', 'h:1', 't', 'c',"
                " 'u')",
                (f"reminder_{attempts + 7}", recipient, status, attempts),
            )
    conn.close()
    before = _ledger(path)

    with Store.open(path) as store:
        assert store.schema_version() == migrations.SCHEMA_VERSION
        keys = store.conn.execute("SELECT recipient, recipient_key FROM notices").fetchall()
        # The device changes hands: its new user's notice is a row of its own.
        with store.transaction():
            added = store.insert_notices([(1, "renewal", "2026-12-01", "new@nordlys.se", "now")])
            again = store.insert_notices([(1, "renewal", "2026-12-01", "NEW@nordlys.se", "now")])

    assert _ledger(path)[: len(before)] == before  # ids, states, attempts, Message-IDs
    assert len(before) == (0 if version < 2 else 5)
    assert all(key == (recipient or "").lower() for recipient, key in keys)
    assert (added, again) == (1, 0)


def test_count_devices_counts_what_iter_devices_yields(tmp_path: Path) -> None:
    from tests.factory import add_device
    from velory_cli.store import DeviceFilter

    with Store.open(tmp_path / "velory.db") as store:
        add_device(store, "A1", user_email="a@x.se", distributor="Atea")
        add_device(store, "A2", user_email="A@x.se", distributor="Dustin AB")
        add_device(store, "A3", user_email="b@x.se", status="removed")
        for where in (
            DeviceFilter(),
            DeviceFilter(include_removed=True),
            DeviceFilter(status="removed"),
            DeviceFilter(user_email="a@X.se"),
            DeviceFilter(distributor="dustin"),
        ):
            assert store.count_devices(where) == len(list(store.iter_devices(where))), where
