"""The store: one SQLite file, and the only module that speaks SQL.

Opening a store checks that it is a velory store from this velory or an earlier one, then
applies the migrations it lacks. A new store (mode 0600, its folders 0700) comes into being
whole or not at all: ``open_or_create`` builds it in a private temporary file beside its path,
and ``publish()`` puts it in place once there is something to keep, so an import that writes
nothing leaves no store behind. Every write happens inside ``Store.transaction()``, one
``BEGIN IMMEDIATE`` ... ``COMMIT``: a command killed half way leaves the store as it was.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from velory_cli.errors import StoreUnusable, TemporaryFailure, VeloryError
from velory_cli.folding import fold
from velory_cli.models import (
    ACTIVE,
    DEVICE_STATUSES,
    NOTICE_KEYS,
    REMOVED,
    SOURCE_IMPORTED,
    Device,
    HistoryEntry,
    Note,
    Notice,
)

# PRAGMA application_id of every velory store: "VELY". A SQLite file without it that already
# holds tables belongs to something else and is never touched.
APPLICATION_ID = 0x56454C59
SQLITE_HEADER = b"SQLite format 3\x00"
# The page size of a new store, in bytes.
PAGE_SIZE = 8192
# The unique index of the devices' serial keys (see migrations): the serial as ``fold`` makes
# it, so one spelling of a serial is one device beyond ASCII too.
SERIALS_INDEX = "devices_serial_key"
# The trigger that gives a device inserted without a serial_key (by a tool that speaks SQL to
# the store) the key of its serial; velory's own inserts always give one.
SERIAL_KEY_TRIGGER = "devices_serial_key_default"
# A device whose serial folds to the key of an older device (two devices a store from before
# serial keys held) keeps its own key: the shared one, this separator, and its serial as
# written, joined by a control character no serial can hold. It is found by that exact
# spelling; the older device by every spelling.
DUPLICATE_KEY_SEPARATOR = "\x1f"

DEVICE_COLUMNS = tuple(f.name for f in fields(Device))
# A notice's serial is its device's: every other key is a column of notices.
NOTICE_COLUMNS = tuple(key for key in NOTICE_KEYS if key != "serial")
_DEVICE_SELECT = "SELECT " + ", ".join(DEVICE_COLUMNS) + " FROM devices"
NOTICE_FIELDS = tuple(f.name for f in fields(Notice))
_NOTICE_SELECT = (
    "SELECT "
    + ", ".join("d.serial" if name == "serial" else "n." + name for name in NOTICE_FIELDS)
    + " FROM notices AS n JOIN devices AS d ON d.id = n.device_id"
)
_NOTICE_SELECT_WITH_DEVICE = _NOTICE_SELECT.replace(
    " FROM notices", ", " + ", ".join("d." + column for column in DEVICE_COLUMNS) + " FROM notices"
)


def _sql_text(value: str) -> str:
    """``value`` as an SQL string literal. For the statuses and sources written into queries:
    as literals, not parameters, the query planner sees which range of an index they name."""
    return "'" + value.replace("'", "''") + "'"


# The statuses of a device not removed, for queries that read devices_status_renewal by status.
_NOT_REMOVED = "(" + ", ".join(_sql_text(s) for s in DEVICE_STATUSES if s != REMOVED) + ")"
_IS_NOT_REMOVED = f"status != {_sql_text(REMOVED)}"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# SQLite's names for a write the system refused (a file size limit, a failing disk, or a full
# disk that SQLite did not recognise as one: it reports only ENOSPC as SQLITE_FULL).
_WRITE_REFUSED = frozenset(
    {
        "SQLITE_IOERR_WRITE",
        "SQLITE_IOERR_FSYNC",
        "SQLITE_IOERR_DIR_FSYNC",
        "SQLITE_IOERR_TRUNCATE",
        "SQLITE_IOERR_SHMSIZE",
    }
)


def describe_sqlite_error(exc: sqlite3.Error, path: Path) -> VeloryError:
    """The velory error a SQLite failure stands for, with a message an admin can act on."""
    text = str(exc).lower()
    code = getattr(exc, "sqlite_errorname", "") or ""
    if code == "SQLITE_READONLY_DIRECTORY":
        return StoreUnusable(
            f"cannot use the store {path}: its folder is read-only, and SQLite needs to keep "
            "its journal files beside the store"
        )
    if code in _WRITE_REFUSED:
        return StoreUnusable(
            f"cannot write the store {path}: the system refused the write (disk full, a file "
            "size limit or a failing disk); nothing was changed"
        )
    if "locked" in text or "busy" in text:
        return TemporaryFailure(
            f"the store {path} is busy (another velory is writing); nothing was changed, "
            "run again later"
        )
    if "full" in text:
        return StoreUnusable(
            f"cannot write the store {path}: the disk is full; nothing was changed"
        )
    if "readonly" in text or "read-only" in text:
        return StoreUnusable(f"cannot write the store {path}: it is read-only")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StoreUnusable(f"the store {path} is corrupt or not a database")
    return StoreUnusable(f"the store {path} cannot be used: {exc}")


@dataclass(frozen=True)
class LedgerRow:
    """One notice as the planner weighs it: its id, state, when it was sent, and whom to
    (the recipient folded, as ``recipient_key`` holds it)."""

    id: int
    status: str
    sent_at: str | None
    recipient: str | None
    recipient_key: str


@dataclass(frozen=True)
class DigestRow:
    """One admin digest of the ledger: a recipient's digest of one day, and how it fared."""

    id: int
    recipient: str
    recipient_key: str
    day: str
    status: str
    attempts: int
    error: str | None
    message_id: str
    content_key: str
    claimed_by: str | None
    claimed_at: str | None
    sent_at: str | None


DIGEST_FIELDS = tuple(f.name for f in fields(DigestRow))


@dataclass(frozen=True)
class DeviceFilter:
    """Which devices a listing shows. Removed devices only when asked for."""

    status: str | None = None
    user_email: str | None = None
    distributor: str | None = None
    include_removed: bool = False
    # Leave out the distributors whose name contains any of these, matched as ``distributor``.
    exclude_distributors: tuple[str, ...] = ()
    # Part of the serial, email, user's name or model, compared as ``fold`` makes them.
    search: str | None = None


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._db: Any = None
        # A new store not in place yet: the temporary file it is built in, until publish().
        self._building: Path | None = None
        # SQLite's NOCASE and LIKE fold ASCII only: Unicode matching goes through this.
        conn.create_function("casefold", 1, _casefold, deterministic=True)
        conn.create_function("velory_fold", 1, _fold, deterministic=True)

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float = 10.0, create: bool = True) -> Store:
        """Open the store at ``path``, creating it on first use (unless ``create`` is False:
        then a missing store is StoreUnusable), upgrading an older one."""
        path = Path(path)
        created = False
        if path.exists():
            _check_is_velory_file(path)
        elif not create:
            raise StoreUnusable(f"no store at {path}")
        else:
            _create_private_file(path)
            created = True
        return cls._connect(str(path), path, busy_timeout=busy_timeout, created=created)

    @classmethod
    def _connect(
        cls, file: str, path: Path, *, busy_timeout: float, created: bool, wal: bool = True
    ) -> Store:
        """A connection to ``file`` (``path`` itself, a file a new store is built in, or "" for
        a scratch store), prepared and migrated; ``path`` is the store's name in messages.
        ``wal``: in write-ahead-log mode, as every store in place is."""
        try:
            conn = sqlite3.connect(
                file, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, path) from None
        conn.row_factory = sqlite3.Row
        store = cls(conn, path)
        try:
            store._prepare(created, wal=wal)
        except sqlite3.Error as exc:
            conn.close()
            raise describe_sqlite_error(exc, path) from None
        except VeloryError:
            conn.close()
            raise
        return store

    @classmethod
    @contextmanager
    def open_or_create(
        cls, path: Path, *, busy_timeout: float = 10.0, scratch: bool = False
    ) -> Iterator[Store]:
        """The store at ``path``; where there is none, a new, empty one that is put in place
        only if ``publish()`` is called before the block ends. Otherwise nothing is left behind:
        no store, and none of the folders made for it. ``scratch``: where there is none, an
        empty store in SQLite's own temporary file, never at ``path`` (a dry run).

        Velorys creating the same store at once take turns (a lock file beside it, waited for
        as long as the busy timeout): the second finds the first one's store and uses it."""
        path = Path(path)
        if path.exists() or scratch:
            store = (
                cls.open(path, busy_timeout=busy_timeout, create=False)
                if path.exists()
                else cls._connect("", path, busy_timeout=busy_timeout, created=True)
            )
            with store:
                yield store
            return
        folders = _create_private_folders_for(path)
        try:
            with _creation_lock(path, busy_timeout, folders) as locked:
                if path.exists():
                    # Another velory made it while this one waited for its turn.
                    locked.release()
                    store = cls.open(path, busy_timeout=busy_timeout, create=False)
                else:
                    store = cls._build(path, busy_timeout=busy_timeout)
                with store:
                    yield store
        finally:
            if not path.exists():
                _remove_folders(folders)

    @classmethod
    def _build(cls, path: Path, *, busy_timeout: float) -> Store:
        """A new store in a private temporary file beside ``path``."""
        _discard_unfinished(path)
        try:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
            os.close(fd)
        except OSError as exc:
            raise StoreUnusable(f"cannot create the store {path}: {exc.strerror}") from None
        try:
            # No one else opens the file a store is built in: a rollback journal (which keeps
            # nothing of the pages a first import adds) writes each page once, where the log
            # would write it twice, the second time when the store is put in place (publish).
            store = cls._connect(name, path, busy_timeout=busy_timeout, created=True, wal=False)
        except BaseException:
            _discard_database(Path(name))
            raise
        store._building = Path(name)
        return store

    @property
    def is_new(self) -> bool:
        """True for a new store that is not in place yet (see ``publish``)."""
        return self._building is not None

    def publish(self) -> None:
        """Put a new store in place at its path, whole (no write-ahead log to go with it).
        A store that was in place already is left as it is."""
        building = self._building
        if building is None:
            return
        # One self-contained file: the log folded in, so the file alone is the whole store.
        self.conn.execute("PRAGMA journal_mode = DELETE")
        self.conn.close()
        self._building = None
        try:
            # A hard link never replaces a store that appeared meanwhile (rename would).
            os.link(building, self.path)
        except FileExistsError:
            _discard_database(building)
            raise TemporaryFailure(
                f"another velory created the store {self.path} at the same moment; nothing "
                "was written, run again"
            ) from None
        except OSError:
            # A file system without hard links: the creation lock keeps others out meanwhile.
            if self.path.exists():
                _discard_database(building)
                raise TemporaryFailure(
                    f"another velory created the store {self.path} at the same moment; "
                    "nothing was written, run again"
                ) from None
            try:
                os.replace(building, self.path)
            except OSError as exc:
                _discard_database(building)
                raise StoreUnusable(
                    f"cannot create the store {self.path}: {exc.strerror}"
                ) from None
        _discard_database(building)

    def _prepare(self, created: bool, *, wal: bool = True) -> None:
        from velory_cli import migrations

        conn = self.conn
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
            if tables:
                raise StoreUnusable(
                    f"{self.path} is not a velory store (it holds other tables); "
                    "it was left untouched"
                )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > migrations.SCHEMA_VERSION:
            raise StoreUnusable(
                f"the store {self.path} is from a newer velory (schema {version}, this velory "
                f"knows {migrations.SCHEMA_VERSION}); upgrade velory, the store was left untouched"
            )
        conn.execute("PRAGMA foreign_keys = ON")
        if app_id != APPLICATION_ID:
            # A new store (no tables yet: the only time SQLite takes a page size): 8 KiB pages
            # halve the pages a large import writes and its indexes sort.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        if wal:
            self._use_wal()
        conn.execute("PRAGMA synchronous = NORMAL")
        if version < migrations.SCHEMA_VERSION or app_id != APPLICATION_ID:
            self._migrate()

    def _use_wal(self) -> None:
        """Switch the store to WAL. Several velorys using a new store at once all try to; SQLite
        answers all but one "busy" at once, without waiting, so wait here (as long as the busy
        timeout) until the switch is made, by this velory or another."""
        import time

        timeout_ms = self.conn.execute("PRAGMA busy_timeout").fetchone()[0]
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            try:
                if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorname", "") != "SQLITE_BUSY":
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _migrate(self) -> None:
        from velory_cli import migrations

        # Foreign keys are off while the steps run (SQLite cannot switch them inside a
        # transaction): a step that rebuilds a table others point at (0006 rebuilds devices)
        # drops the old one and renames the new one into its place, which with foreign keys on
        # would delete every row pointing at it, or rewrite their references to the old name.
        # Every step keeps the ids, so the references hold again once it is done.
        self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            # Take the write lock first, so two velorys opening a new store never both migrate
            # it.
            with self.transaction():
                known = set(migrations.step_names())
                steps = migrations.migrations()
                applied = {m.name for m in steps.applied(self.db)}
                unknown = applied - known
                if unknown:
                    raise StoreUnusable(
                        f"the store {self.path} is from a newer velory (it has run "
                        f"{', '.join(sorted(unknown))}); upgrade velory, the store was left "
                        "untouched"
                    )
                steps.apply(self.db)
                self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION}")
        finally:
            self.conn.execute("PRAGMA foreign_keys = ON")

    @property
    def db(self) -> Any:
        """The sqlite-utils view of the same connection, for schema work."""
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self.conn)
        return self._db

    def close(self) -> None:
        """Close the store; a new one never published is thrown away."""
        self.conn.close()
        if self._building is not None:
            _discard_database(self._building)
            self._building = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, wait: float | None = None) -> Iterator[None]:
        """One write transaction, taken at once so two writers never deadlock half way.

        ``wait``: seconds to wait for another writer when that is longer than the busy
        timeout; for recording what already happened outside the store (a mail the server
        accepted), which a busy store must not make a run forget."""
        try:
            if wait is None:
                self.conn.execute("BEGIN IMMEDIATE")
            else:
                self._begin_waiting(wait)
        except sqlite3.OperationalError as exc:
            raise describe_sqlite_error(exc, self.path) from None
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise describe_sqlite_error(exc, self.path) from None

    def _begin_waiting(self, wait: float) -> None:
        timeout_ms = int(self.conn.execute("PRAGMA busy_timeout").fetchone()[0])
        self.conn.execute(f"PRAGMA busy_timeout = {max(timeout_ms, int(wait * 1000))}")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")

    # ---- maintenance: backup and check ---------------------------------------------------

    def backup_to(self, target: Path) -> None:
        """A consistent copy of the store in ``target`` (SQLite's online backup)."""
        destination = sqlite3.connect(str(target))
        try:
            self.conn.backup(destination)
        finally:
            destination.close()

    def integrity_problems(self) -> list[str]:
        rows = self.conn.execute("PRAGMA integrity_check").fetchall()
        found = [row[0] for row in rows]
        return [] if found == ["ok"] else found

    def foreign_key_problems(self) -> list[str]:
        rows = self.conn.execute("PRAGMA foreign_key_check").fetchall()
        return [f"{row[0]} row {row[1]} points to a missing {row[2]} row" for row in rows]

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def broken_links(self) -> list[str]:
        """Replacement links that point to no device."""
        rows = self.conn.execute(
            """
            SELECT d.serial, 'replacement_serial', d.replacement_serial FROM devices d
            WHERE d.replacement_serial IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM devices r WHERE r.serial = d.replacement_serial)
            UNION ALL
            SELECT d.serial, 'replaces_serial', d.replaces_serial FROM devices d
            WHERE d.replaces_serial IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM devices r WHERE r.serial = d.replaces_serial)
            """
        ).fetchall()
        return [f"{row[0]}: {row[1]} {row[2]} is not in the store" for row in rows]

    def devices_without_history(self) -> list[str]:
        """Devices with no entry in their history: neither created by an import (whose record
        is their creation entry, and which the foreign key check holds to exist) nor with a
        row in the history table."""
        rows = self.conn.execute(
            "SELECT serial FROM devices d WHERE d.import_id IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM history h WHERE h.device_id = d.id)"
            " ORDER BY serial LIMIT 100"
        ).fetchall()
        return [row[0] for row in rows]

    def notices_in_sending(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT d.serial, n.kind, n.renewal_date, n.claimed_by, n.claimed_at"
            " FROM notices n JOIN devices d ON d.id = n.device_id"
            " WHERE n.status = 'sending' ORDER BY n.id"
        ).fetchall()
        return [dict(row) for row in rows]

    # ---- devices -------------------------------------------------------------------------

    def device(self, serial: str) -> Device | None:
        """The device with this serial, in any spelling ``fold`` makes one (case beyond
        ASCII, NFC or NFD, full-width digits; surrounding spaces ignored)."""
        return self.devices_by_serials([serial]).get(fold(serial))

    def device_by_id(self, device_id: int) -> Device:
        row = self.conn.execute(_DEVICE_SELECT + " WHERE id = ?", (device_id,)).fetchone()
        return _device(row)

    def devices_by_serials(self, serials: Sequence[str]) -> dict[str, Device]:
        """The stored devices among ``serials``, keyed by ``fold(serial)``: one query through
        the unique index of serial keys. A device that shares its key with an older one (see
        ``DUPLICATE_KEY_SEPARATOR``) is the answer for its own exact spelling."""
        keys: dict[str, str] = {}
        for serial in serials:
            written = serial.strip()
            key = fold(written)
            keys[key] = key
            keys[key + DUPLICATE_KEY_SEPARATOR + written] = key
        found: dict[str, Device] = {}
        exact: dict[str, Device] = {}
        rows = self.conn.execute(
            _DEVICE_SELECT.replace(" FROM devices", ", serial_key FROM devices")
            + " WHERE serial_key IN (SELECT value FROM json_each(?))",
            (json.dumps(list(keys), ensure_ascii=False),),
        )
        for row in rows:
            stored_key = row["serial_key"]
            target = exact if DUPLICATE_KEY_SEPARATOR in stored_key else found
            target[keys[stored_key]] = Device(*tuple(row)[:-1])
        found.update(exact)
        return found

    def serial_candidates(
        self, keys: Sequence[str], prefixes: Sequence[str], *, per_prefix: int
    ) -> list[tuple[str, str]]:
        """(serial, key) of the devices whose serial key is one of ``keys``, or starts with
        one of ``prefixes`` (the first ``per_prefix`` of each, in key order): all read from
        the unique index of serial keys, never the whole table. The key of a device that
        shares it with an older one (see DUPLICATE_KEY_SEPARATOR) is given without its
        spelling."""
        found: list[tuple[str, str]] = []
        cursor = self.conn.cursor()
        cursor.row_factory = None
        if keys:
            found += cursor.execute(
                "SELECT serial, serial_key FROM devices"
                " WHERE serial_key IN (SELECT value FROM json_each(?))",
                (json.dumps(list(keys), ensure_ascii=False),),
            ).fetchall()
        for prefix in prefixes:
            if not prefix or ord(prefix[-1]) >= 0xD7FF:
                continue  # no next character to end the range with (surrogates follow)
            after = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            found += cursor.execute(
                "SELECT serial, serial_key FROM devices WHERE serial_key >= ?"
                " AND serial_key < ? ORDER BY serial_key LIMIT ?",
                (prefix, after, per_prefix),
            ).fetchall()
        return [(serial, key.split(DUPLICATE_KEY_SEPARATOR, 1)[0]) for serial, key in found]

    def devices(self, where: DeviceFilter = DeviceFilter()) -> list[Device]:
        return list(self.iter_devices(where))

    def iter_devices(self, where: DeviceFilter = DeviceFilter()) -> Iterator[Device]:
        """The devices ``where`` picks, by user then serial, as the rows come: a listing of a
        whole fleet to a pipe never holds it all."""
        condition, params = _devices_where(where)
        sql = _DEVICE_SELECT + condition
        sql += " ORDER BY user_email IS NULL, user_email COLLATE NOCASE, serial"
        for row in self.conn.execute(sql, params):
            yield _device(row)

    def count_devices(self, where: DeviceFilter = DeviceFilter()) -> int:
        """How many devices ``iter_devices`` would yield, without reading them."""
        condition, params = _devices_where(where)
        return int(
            self.conn.execute("SELECT count(*) FROM devices" + condition, params).fetchone()[0]
        )

    def iter_all_devices(self) -> Iterator[Device]:
        """Every device, removed ones too, in serial order, without holding them all."""
        for row in self.conn.execute(_DEVICE_SELECT + " ORDER BY serial"):
            yield _device(row)

    def iter_export_rows(self) -> Iterator[tuple[Device, list[Note]]]:
        """Every device, removed ones too, in serial order, each with the notes added to it
        (oldest first), without holding them all: one query, each device's notes read through
        notes_device."""
        sql = (
            _DEVICE_SELECT.replace(
                " FROM devices",
                ", (SELECT json_group_array(json_array(n.at, n.actor, n.text)) FROM"
                " (SELECT at, actor, text FROM notes WHERE device_id = devices.id ORDER BY id)"
                " AS n) FROM devices",
            )
            + " ORDER BY serial"
        )
        cursor = self.conn.cursor()
        cursor.row_factory = None
        width = len(DEVICE_COLUMNS)
        for row in cursor.execute(sql):
            notes = row[width]
            yield (
                Device(*row[:width]),
                [Note(*entry) for entry in json.loads(notes)] if notes != "[]" else [],
            )

    def insert_device(self, values: dict[str, Any]) -> int:
        values = {**values, "serial_key": fold(values["serial"])}
        columns = list(values)
        sql = f"INSERT INTO devices ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        cursor = self.conn.execute(sql, [values[c] for c in columns])
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def update_device(self, device_id: int, values: dict[str, Any]) -> None:
        if not values:
            return
        assignments = ", ".join(f"{column} = ?" for column in values)
        self.conn.execute(
            f"UPDATE devices SET {assignments} WHERE id = ?", [*values.values(), device_id]
        )

    # ---- history and notes ---------------------------------------------------------------

    def record_history(
        self,
        device_id: int,
        *,
        at: str,
        actor: str,
        action: str,
        from_status: str | None,
        to_status: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO history (device_id, at, actor, action, from_status, to_status, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                device_id,
                at,
                actor,
                action,
                from_status,
                to_status,
                json.dumps(details, ensure_ascii=False) if details else None,
            ),
        )

    def record_history_many(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """History entries as (device_id, at, actor, action, from_status, to_status, details)."""
        self.conn.executemany(
            "INSERT INTO history (device_id, at, actor, action, from_status, to_status, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def history(self, device_id: int) -> list[HistoryEntry]:
        # A device an import created has its creation entry in that import's record (see
        # migrations): "import", from nothing to active, at the run's time, by its actor. It
        # comes first: it is what made the device.
        rows = self.conn.execute(
            "SELECT 0 AS seq, i.at, i.actor, 'import' AS action, NULL AS from_status,"
            f" {_sql_text(ACTIVE)} AS to_status, NULL AS details FROM devices AS d"
            " JOIN imports AS i ON i.id = d.import_id WHERE d.id = ?1"
            " UNION ALL SELECT id, at, actor, action, from_status, to_status, details"
            " FROM history WHERE device_id = ?1 ORDER BY seq",
            (device_id,),
        )
        return [
            HistoryEntry(
                at=row["at"],
                actor=row["actor"],
                action=row["action"],
                from_status=row["from_status"],
                to_status=row["to_status"],
                details=json.loads(row["details"]) if row["details"] else None,
            )
            for row in rows
        ]

    def add_note(self, device_id: int, *, at: str, actor: str, text: str) -> None:
        self.conn.execute(
            "INSERT INTO notes (device_id, at, actor, text) VALUES (?, ?, ?, ?)",
            (device_id, at, actor, text),
        )

    def notes(self, device_id: int) -> list[Note]:
        rows = self.conn.execute(
            "SELECT at, actor, text FROM notes WHERE device_id = ? ORDER BY id", (device_id,)
        )
        return [Note(at=row["at"], actor=row["actor"], text=row["text"]) for row in rows]

    def latest_notes(self, device_ids: Sequence[int]) -> dict[int, str]:
        """The text of the latest note of each of these devices that has a note."""
        found: dict[int, str] = {}
        for start in range(0, len(device_ids), 500):
            chunk = list(device_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT device_id, text FROM notes WHERE id IN"
                f" (SELECT max(id) FROM notes WHERE device_id IN ({marks}) GROUP BY device_id)",
                chunk,
            )
            found.update((row[0], row[1]) for row in rows)
        return found

    def notes_held(self, notes: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
        """Which of these (device_id, text) notes the devices already have, at any time: a
        script run again must not add the same note twice, whatever was noted in between."""
        found: set[tuple[int, str]] = set()
        wanted = set(notes)
        device_ids = sorted({device_id for device_id, _ in wanted})
        for start in range(0, len(device_ids), 500):
            chunk = device_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT device_id, text FROM notes WHERE device_id IN ({marks})", chunk
            )
            found.update(pair for pair in ((row[0], row[1]) for row in rows) if pair in wanted)
        return found

    def add_note_many(
        self, devices: Sequence[tuple[int, str]], *, at: str, actor: str, text: str
    ) -> None:
        """The same note on many devices, given as (device_id, status), each with its history
        entry (action ``note``, the status kept)."""
        self.conn.executemany(
            "INSERT INTO notes (device_id, at, actor, text) VALUES (?, ?, ?, ?)",
            [(device_id, at, actor, text) for device_id, _ in devices],
        )
        details = json.dumps({"note": text}, ensure_ascii=False)
        self.record_history_many(
            (device_id, at, actor, "note", status, status, details) for device_id, status in devices
        )

    def add_notes(self, notes: Sequence[tuple[int, str, str]], *, at: str, actor: str) -> None:
        """Notes given as (device_id, status, text), each with its history entry (action
        ``note``, the status kept)."""
        self.conn.executemany(
            "INSERT INTO notes (device_id, at, actor, text) VALUES (?, ?, ?, ?)",
            [(device_id, at, actor, text) for device_id, _, text in notes],
        )
        self.record_history_many(
            (
                device_id,
                at,
                actor,
                "note",
                status,
                status,
                json.dumps({"note": text}, ensure_ascii=False),
            )
            for device_id, status, text in notes
        )

    # ---- notices -------------------------------------------------------------------------

    def notices_for_device(self, device_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            f"SELECT {', '.join(NOTICE_COLUMNS)} FROM notices WHERE device_id = ? ORDER BY id",
            (device_id,),
        )
        return [dict(row) for row in rows]

    # ---- notices: the ledger `velory notices send` works through -------------------------
    #
    # A notice goes pending -> sending (claimed by one run) -> sent | failed | back to pending;
    # a pending one may be cancelled. Every claim is an UPDATE ... WHERE status = 'pending'
    # inside BEGIN IMMEDIATE, so of two runs claiming the same notice only one gets it.

    def renewal_candidates(self, until: str) -> list[Device]:
        """Imported, active devices renewing on or before ``until``, soonest first."""
        rows = self.conn.execute(
            _DEVICE_SELECT + f" WHERE status = {_sql_text(ACTIVE)}"
            f" AND source = {_sql_text(SOURCE_IMPORTED)}"
            " AND renewal_date IS NOT NULL AND renewal_date <= ?"
            " ORDER BY renewal_date, serial",
            (until,),
        )
        return [_device(row) for row in rows]

    def notice_states(
        self, device_ids: Sequence[int]
    ) -> dict[tuple[int, str, str], list[LedgerRow]]:
        """Every notice these devices have, by (device_id, kind, renewal_date): one row per
        recipient, oldest first."""
        found: dict[tuple[int, str, str], list[LedgerRow]] = {}
        for start in range(0, len(device_ids), 500):
            chunk = list(device_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT device_id, kind, renewal_date, id, status, sent_at, recipient,"
                f" recipient_key FROM notices WHERE device_id IN ({marks}) ORDER BY id",
                chunk,
            )
            for row in rows:
                found.setdefault((row[0], row[1], row[2]), []).append(LedgerRow(*row[3:]))
        return found

    def notices_with_devices(self, statuses: Sequence[str]) -> list[tuple[Notice, Device]]:
        """Notices in these statuses, oldest first, each with its device as it is now."""
        marks = ",".join("?" * len(statuses))
        rows = self.conn.execute(
            _NOTICE_SELECT_WITH_DEVICE + f" WHERE n.status IN ({marks}) ORDER BY n.id",
            list(statuses),
        )
        width = len(NOTICE_FIELDS)
        return [(Notice(*row[:width]), Device(*row[width:])) for row in rows]

    def failed_notices_readdressed(self) -> list[tuple[Notice, Device]]:
        """Failed renewal notices whose device has since been given another email."""
        rows = self.conn.execute(
            _NOTICE_SELECT_WITH_DEVICE.replace(" FROM notices", ", n.recipient_key FROM notices")
            + " WHERE n.status = 'failed' AND n.kind != 'personal_data'"
            " AND d.user_email IS NOT NULL AND trim(d.user_email) != ''"
            " AND n.renewal_date = d.renewal_date ORDER BY n.id"
        )
        width = len(NOTICE_FIELDS)
        found = []
        for row in rows:
            notice, device = Notice(*row[:width]), Device(*row[width:-1])
            if row[-1] != fold(device.user_email or ""):
                found.append((notice, device))
        return found

    def insert_notices(self, rows: Iterable[tuple[int, str, str, str | None, str]]) -> int:
        """Pending notices from (device_id, kind, renewal_date, recipient, at); one that exists
        already for that recipient is left as it is. Returns how many were new."""
        cursor = self.conn.executemany(
            "INSERT INTO notices (device_id, kind, renewal_date, recipient, recipient_key,"
            " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?6)"
            " ON CONFLICT (device_id, kind, renewal_date, recipient_key) DO NOTHING",
            (
                (device_id, kind, renewal_date, recipient, fold(recipient or ""), at)
                for device_id, kind, renewal_date, recipient, at in rows
            ),
        )
        return max(cursor.rowcount, 0)

    def cancel_notices(self, cancels: Iterable[tuple[int, str]], *, at: str) -> None:
        """Cancel the pending (or abandoned sending) notices given as (id, reason)."""
        self.conn.executemany(
            "UPDATE notices SET status = 'cancelled', error = ?2, updated_at = ?3"
            " WHERE id = ?1 AND status IN ('pending', 'sending')",
            [(notice_id, reason, at) for notice_id, reason in cancels],
        )

    def readdress_notices(self, changes: Iterable[tuple[int, str]], *, at: str) -> None:
        """Make notices, as (id, recipient), pending for this recipient: a pending one whose
        device has another email now, a failed one refused for an address that is no longer
        the user's, a cancelled one whose device is due again for the same renewal date."""
        # A mail to another recipient is another mail: the Message-ID of the earlier one goes.
        self.conn.executemany(
            "UPDATE notices SET recipient = ?2, recipient_key = ?4, status = 'pending',"
            " error = NULL, message_id = NULL, updated_at = ?3"
            " WHERE id = ?1 AND status IN ('pending', 'failed', 'cancelled')",
            [(notice_id, recipient, at, fold(recipient)) for notice_id, recipient in changes],
        )

    def claim_notices(
        self, notice_ids: Sequence[int], *, owner: str, at: str, message_id: str | None = None
    ) -> list[int]:
        """Claim the pending notices among ``notice_ids`` for this run; the ids it got. Their
        Message-ID is kept unless one is given."""
        marks = ",".join("?" * len(notice_ids))
        rows = self.conn.execute(
            "UPDATE notices SET status = 'sending', claimed_by = ?, claimed_at = ?,"
            " attempts = attempts + 1, message_id = coalesce(?, message_id), updated_at = ?"
            f" WHERE id IN ({marks}) AND status = 'pending' RETURNING id",
            [owner, at, message_id, at, *notice_ids],
        ).fetchall()
        return sorted(row[0] for row in rows)

    def set_message_id(self, notice_ids: Sequence[int], message_id: str) -> None:
        """The Message-ID of the mail these notices go in: the ledger's record of which
        notices that mail carries."""
        marks = ",".join("?" * len(notice_ids))
        self.conn.execute(
            f"UPDATE notices SET message_id = ? WHERE id IN ({marks})", [message_id, *notice_ids]
        )

    def notices_of_message(self, message_id: str) -> set[int]:
        """The notices a Message-ID was given to."""
        rows = self.conn.execute("SELECT id FROM notices WHERE message_id = ?", (message_id,))
        return {row[0] for row in rows}

    def reclaim_notices(
        self, claims: Sequence[tuple[int, str | None, str | None]], *, owner: str, at: str
    ) -> list[int]:
        """Take over abandoned claims, given as (id, claimed_by, claimed_at) as they were read:
        only a claim nobody has taken over since is taken. The ids it got."""
        taken: list[int] = []
        for notice_id, claimed_by, claimed_at in claims:  # a handful: one per killed run
            row = self.conn.execute(
                "UPDATE notices SET claimed_by = ?, claimed_at = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE id = ? AND status = 'sending'"
                " AND claimed_by IS ? AND claimed_at IS ? RETURNING id",
                (owner, at, at, notice_id, claimed_by, claimed_at),
            ).fetchone()
            if row:
                taken.append(row[0])
        return taken

    def finish_notices(
        self,
        notice_ids: Sequence[int],
        *,
        owner: str,
        status: str,
        at: str,
        error: str | None = None,
    ) -> None:
        """Record how this run's claimed notices fared: sent, failed, or back to pending."""
        marks = ",".join("?" * len(notice_ids))
        self.conn.execute(
            "UPDATE notices SET status = ?, error = ?, updated_at = ?,"
            " sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END"
            f" WHERE id IN ({marks}) AND status = 'sending' AND claimed_by = ?",
            [status, error, at, status, at, *notice_ids, owner],
        )

    def failed_notices(self, device_ids: Sequence[int] | None = None) -> list[Notice]:
        """Failed notices, oldest first: of these devices, or of every device (None)."""
        sql = _NOTICE_SELECT + " WHERE n.status = 'failed'"
        params: list[Any] = []
        if device_ids is not None:
            if not device_ids:
                return []
            sql += f" AND n.device_id IN ({','.join('?' * len(device_ids))})"
            params = list(device_ids)
        return [Notice(*row) for row in self.conn.execute(sql + " ORDER BY n.id", params)]

    def retry_notices(self, notice_ids: Sequence[int], *, at: str) -> None:
        """Failed notices back to pending for the next run, their attempts and last error kept."""
        self.conn.executemany(
            "UPDATE notices SET status = 'pending', updated_at = ? WHERE id = ?"
            " AND status = 'failed'",
            [(at, notice_id) for notice_id in notice_ids],
        )

    def list_notices(self, *, status: str | None = None, kind: str | None = None) -> list[Notice]:
        """The ledger, oldest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if status:
            clauses.append("n.status = ?")
            params.append(status)
        if kind:
            clauses.append("n.kind = ?")
            params.append(kind)
        sql = _NOTICE_SELECT
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return [Notice(*row) for row in self.conn.execute(sql + " ORDER BY n.id", params)]

    # ---- digests: the ledger `velory digest` works through ------------------------------

    def digest_row(self, recipient_key: str, day: str) -> DigestRow | None:
        """The digest of one recipient (folded) and day, if any run got as far as claiming it."""
        row = self.conn.execute(
            f"SELECT {', '.join(DIGEST_FIELDS)} FROM digests WHERE recipient_key = ? AND day = ?",
            (recipient_key, day),
        ).fetchone()
        return DigestRow(*row) if row else None

    def claim_new_digest(
        self,
        recipient: str,
        day: str,
        *,
        owner: str,
        at: str,
        message_id: str,
        content_key: str,
    ) -> None:
        """Claim the first digest of this recipient and day for this run."""
        self.conn.execute(
            "INSERT INTO digests (recipient, recipient_key, day, status, attempts, message_id,"
            " content_key, claimed_by, claimed_at, created_at, updated_at)"
            " VALUES (?, ?, ?, 'sending', 1, ?, ?, ?, ?, ?, ?)",
            (recipient, fold(recipient), day, message_id, content_key, owner, at, at, at),
        )

    def claim_digest(
        self, row: DigestRow, *, owner: str, at: str, message_id: str, content_key: str
    ) -> bool:
        """Claim a digest not sent yet (given back, refused, or left by a run that stopped),
        as ``row`` was read: only when no other run has taken it since."""
        claimed = self.conn.execute(
            "UPDATE digests SET status = 'sending', claimed_by = ?, claimed_at = ?,"
            " attempts = attempts + 1, message_id = ?, content_key = ?, recipient = ?,"
            " updated_at = ? WHERE id = ? AND status = ? AND claimed_by IS ? AND claimed_at IS ?"
            " RETURNING id",
            (
                owner,
                at,
                message_id,
                content_key,
                row.recipient,
                at,
                row.id,
                row.status,
                row.claimed_by,
                row.claimed_at,
            ),
        ).fetchone()
        return claimed is not None

    def finish_digest(
        self, digest_id: int, *, owner: str, status: str, at: str, error: str | None = None
    ) -> None:
        """Record how this run's claimed digest fared: sent, failed, or back to pending."""
        self.conn.execute(
            "UPDATE digests SET status = ?, error = ?, updated_at = ?,"
            " sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END"
            " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
            (status, error, at, status, at, digest_id, owner),
        )

    # ---- flow: status changes, replacements, renewals, todo, stats ----------------------

    def apply_status_changes(
        self, changes: Sequence[StatusChange], *, at: str, actor: str, action: str
    ) -> None:
        """Many devices' status changes at once: the devices, their history and their notes."""
        self.conn.executemany(
            "UPDATE devices SET status = ?, outcome = ?, retired_from = ?,"
            " retired_from_outcome = ?, status_changed_at = ?, updated_at = ? WHERE id = ?",
            [
                (
                    c.to_status,
                    c.outcome,
                    c.retired_from,
                    c.retired_from_outcome,
                    at,
                    at,
                    c.device_id,
                )
                for c in changes
            ],
        )
        self.record_history_many(
            (
                c.device_id,
                at,
                actor,
                action,
                c.from_status,
                c.to_status,
                json.dumps(c.details, ensure_ascii=False) if c.details else None,
            )
            for c in changes
        )
        self.conn.executemany(
            "INSERT INTO notes (device_id, at, actor, text) VALUES (?, ?, ?, ?)",
            [(c.device_id, at, actor, c.note) for c in changes if c.note],
        )

    def queue_notice(
        self, device_id: int, *, kind: str, renewal_date: str, recipient: str, at: str
    ) -> bool:
        """A pending notice for the mailer; False when that notice is already queued."""
        cursor = self.conn.execute(
            "INSERT INTO notices (device_id, kind, renewal_date, recipient, recipient_key,"
            " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)"
            " ON CONFLICT (device_id, kind, renewal_date, recipient_key) DO NOTHING",
            (device_id, kind, renewal_date, recipient, fold(recipient), at, at),
        )
        return cursor.rowcount > 0

    def renewals_due(self, until: str, where: DeviceFilter) -> list[tuple[Device, str | None]]:
        """Devices not removed renewing on or before ``until``, soonest first, each with the
        state of its renewal notice for its current renewal date (None when there is none)."""
        width = len(DEVICE_COLUMNS)
        return [(Device(*row[:width]), row[width]) for row in self.renewals_rows(until, where)]

    def renewals_rows(self, until: str, where: DeviceFilter) -> list[tuple[Any, ...]]:
        """``renewals_due`` as plain rows: the values of ``DEVICE_COLUMNS``, then the notice's
        state. Rows, not ``Device`` objects: a fleet's renewals run to tens of thousands, and
        ``velory renewals --json`` turns them into JSON at once."""
        return list(self.iter_renewals_rows(until, where))

    def iter_renewals_rows(self, until: str, where: DeviceFilter) -> Iterator[tuple[Any, ...]]:
        """``renewals_rows`` as SQLite yields them, never all held at once."""
        sql, params = _renewals_sql(until, where)
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return iter(cursor.execute(sql, params))

    def renewals_query_plan(self, until: str, where: DeviceFilter) -> list[str]:
        """How SQLite runs the renewals query: one line a step of EXPLAIN QUERY PLAN."""
        sql, params = _renewals_sql(until, where)
        return [row["detail"] for row in self.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]

    def devices_in_statuses(
        self, statuses: Sequence[str], where: DeviceFilter = DeviceFilter()
    ) -> list[Device]:
        """The devices in these statuses, by serial; ``where``'s distributor filters too."""
        marks = ",".join("?" * len(statuses))
        clauses = [f"status IN ({marks})"]
        params: list[Any] = list(statuses)
        _add_distributors(clauses, params, "distributor", where)
        rows = self.conn.execute(
            _DEVICE_SELECT + " WHERE " + " AND ".join(clauses) + " ORDER BY serial", params
        )
        return [_device(row) for row in rows]

    def overdue_unstarted_rows(
        self, before: str, where: DeviceFilter = DeviceFilter()
    ) -> list[tuple[Any, ...]]:
        """Imported, active devices whose renewal date is before ``before``, oldest renewal
        first, as rows: the values of ``DEVICE_COLUMNS``, then the state of the renewal notice
        for that renewal date (None when there is none). Read through devices_status_renewal:
        only the overdue ones, never the fleet."""
        clauses = [
            f"d.status = {_sql_text(ACTIVE)}",
            "d.renewal_date < ?",
            f"d.source = {_sql_text(SOURCE_IMPORTED)}",
        ]
        params: list[Any] = [before]
        _add_distributors(clauses, params, "d.distributor", where)
        sql = (
            "SELECT "
            + ", ".join("d." + column for column in DEVICE_COLUMNS)
            + f", {_RENEWAL_NOTICE_STATUS} FROM devices AS d"
            " WHERE " + " AND ".join(clauses) + " ORDER BY d.renewal_date, d.serial"
        )
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params).fetchall()

    def count_by_status(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM devices GROUP BY status")
        return {row[0]: row[1] for row in rows}

    def count_by_distributor(self) -> list[tuple[str | None, int]]:
        """Devices not removed per distributor name as spelt (spaces around ignored)."""
        rows = self.conn.execute(
            "SELECT nullif(trim(distributor), '') AS name, count(*) FROM devices"
            f" WHERE {_IS_NOT_REMOVED} GROUP BY name"
        )
        return [(row[0], row[1]) for row in rows]

    def renewals_per_month(self, first_day: str, after_last_day: str) -> dict[str, int]:
        """Devices not removed renewing in [first_day, after_last_day), keyed by "YYYY-MM"."""
        rows = self.conn.execute(
            "SELECT substr(renewal_date, 1, 7) AS month, count(*) FROM devices"
            f" WHERE status IN {_NOT_REMOVED} AND renewal_date >= ? AND renewal_date < ?"
            " GROUP BY month",
            (first_day, after_last_day),
        )
        return {row[0]: row[1] for row in rows}


@dataclass(frozen=True)
class StatusChange:
    """One device moving from one status to another, as ``apply_status_changes`` writes it."""

    device_id: int
    from_status: str
    to_status: str
    outcome: str | None
    details: dict[str, Any] | None = None
    note: str | None = None
    # A retired device's status and outcome before (see lifecycle's retire); None otherwise.
    retired_from: str | None = None
    retired_from_outcome: str | None = None


def _devices_where(where: DeviceFilter) -> tuple[str, list[Any]]:
    """The WHERE clause (with its leading space, or empty) and parameters of a device filter."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.status:
        clauses.append("status = ?")
        params.append(where.status)
    elif not where.include_removed:
        clauses.append(_IS_NOT_REMOVED)
    if where.user_email:
        _add_equals(clauses, params, "user_email", where.user_email)
    _add_distributors(clauses, params, "distributor", where)
    if where.search:
        # Every device the other filters leave is read (a part of a text is in no index),
        # its four texts folded in one call: fold's NFKC and full case folding, which
        # SQLite's lower() and LIKE (ASCII only) do not make.
        clauses.append(
            "instr(velory_fold(serial || char(31) || coalesce(user_email, '') || char(31)"
            " || coalesce(user_name, '') || char(31) || coalesce(model, '')), ?) > 0"
        )
        params.append(fold(where.search))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


# The state of device d's renewal notice for its current renewal date. A device that changed
# hands has a renewal notice per recipient: the one that counts is the newest that is not
# cancelled (the new user's), else the newest.
_RENEWAL_NOTICE_STATUS = (
    "(SELECT n.status FROM notices AS n WHERE n.device_id = d.id"
    " AND n.kind = 'renewal' AND n.renewal_date = d.renewal_date"
    " ORDER BY n.status = 'cancelled', n.id DESC LIMIT 1) AS notice_status"
)


def _add_distributors(
    clauses: list[str], params: list[Any], column: str, where: DeviceFilter
) -> None:
    """``where``'s distributor, and the distributors it leaves out: a device without a
    distributor is never left out."""
    if where.distributor:
        _add_contains(clauses, params, column, where.distributor)
    for excluded in where.exclude_distributors:
        if not excluded.strip():
            continue
        contains: list[str] = []
        _add_contains(contains, params, column, excluded)
        clauses.append(f"({column} IS NULL OR NOT {contains[0]})")


def _renewals_sql(until: str, where: DeviceFilter) -> tuple[str, list[Any]]:
    # The statuses named, not "!= 'removed'": each is a range of devices_status_renewal
    # (status, renewal_date <= ?), so SQLite reads only the devices due, never the fleet.
    clauses = ["d.renewal_date <= ?"]
    params: list[Any] = [until]
    if where.status:
        clauses.append("d.status = ?")
        params.append(where.status)
    else:
        clauses.append(f"d.status IN {_NOT_REMOVED}")
    if where.user_email:
        _add_equals(clauses, params, "d.user_email", where.user_email)
    _add_distributors(clauses, params, "d.distributor", where)
    sql = (
        "SELECT "
        + ", ".join("d." + column for column in DEVICE_COLUMNS)
        + f", {_RENEWAL_NOTICE_STATUS} FROM devices AS d"
        " WHERE " + " AND ".join(clauses) + " ORDER BY d.renewal_date, d.serial"
    )
    return sql, params


def _fold(value: Any) -> Any:
    return fold(value) if isinstance(value, str) else value


def _casefold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _add_equals(clauses: list[str], params: list[Any], column: str, value: str) -> None:
    """``column`` equals ``value`` as ``fold`` compares them: the column's NOCASE (and its
    index) for ASCII, ``fold`` for other text ("Åsa" is "åsa", composed or not), which NOCASE
    does not fold."""
    value = value.strip()
    if value.isascii():
        clauses.append(f"{column} = ?")
        params.append(value)
    else:
        clauses.append(f"velory_fold({column}) = ?")
        params.append(fold(value))


def _add_contains(clauses: list[str], params: list[Any], column: str, value: str) -> None:
    """``column`` contains ``value``, any case: LIKE for ASCII, Unicode case folding for other
    text ("ELKJØP" in "Elkjøp"), which LIKE does not fold."""
    value = value.strip()
    if value.isascii():
        clauses.append(f"{column} LIKE ? ESCAPE '\\'")
        params.append("%" + _like_escape(value) + "%")
    else:
        clauses.append(f"instr(casefold({column}), ?) > 0")
        params.append(value.casefold())


def _device(row: sqlite3.Row) -> Device:
    return Device(*row)


def _check_is_velory_file(path: Path) -> None:
    """Refuse, before SQLite touches it, a file that is not a SQLite database at all."""
    if path.is_dir():
        raise StoreUnusable(f"the store {path} is a folder, not a file")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreUnusable(f"cannot read the store {path}: {exc.strerror}") from None
    if header and header != SQLITE_HEADER:
        raise StoreUnusable(
            f"{path} is not a velory store (not a SQLite file); it was left untouched"
        )


def _create_private_folders_for(path: Path) -> list[Path]:
    """The folders above a new store, made private (0700); the ones this made, deepest last."""
    try:
        return _create_private_folders(path.parent)
    except OSError as exc:
        raise StoreUnusable(f"cannot create the store {path}: {exc.strerror}") from None


def _remove_folders(folders: list[Path]) -> None:
    """Remove the folders made for a store that did not come into being, deepest first; one
    that holds something by now (another velory's work) stays."""
    for folder in reversed(folders):
        try:
            os.rmdir(folder)
        except OSError:
            return


class _Lock:
    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        # Unlinked while still held: a velory waiting on this file then finds it is no longer
        # the lock file, and takes the next one (see _creation_lock).
        with suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


@contextmanager
def _creation_lock(path: Path, timeout: float, folders: list[Path]) -> Iterator[_Lock]:
    """Take turns creating the store at ``path``: an exclusive lock on a file beside it, waited
    for up to ``timeout`` seconds. Where the system has no such locks, no lock (publish still
    never replaces a store that appeared). ``folders``: the folders made for the store, to
    which any this has to make again are added (a velory whose creation came to nothing
    removes the folders it made, while another may be waiting for its turn)."""
    import time

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield _Lock(path, None)
        return
    lock_path = path.with_name(f".{path.name}.lock")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        except FileNotFoundError:
            folders += _create_private_folders_for(path)
            continue
        except OSError as exc:
            raise StoreUnusable(f"cannot create the store {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise TemporaryFailure(
                    f"another velory is creating the store {path}; nothing was changed, run "
                    "again later"
                ) from None
            time.sleep(0.02)
            continue
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(fd).st_ino:
            os.close(fd)  # the lock file of a creation that has finished: take the next one
            continue
        break
    lock = _Lock(lock_path, fd)
    try:
        yield lock
    finally:
        lock.release()


def _discard_unfinished(path: Path) -> None:
    """Remove what a velory killed while building the store at ``path`` left beside it: with
    the creation lock held, no other is building one."""
    for leftover in path.parent.glob(f".{path.name}.*.new"):
        _discard_database(leftover)


def _discard_database(file: Path) -> None:
    """Remove a database file and its journals, as far as they are there."""
    for name in (file, *(file.with_name(file.name + end) for end in ("-wal", "-shm", "-journal"))):
        with suppress(OSError):
            os.unlink(name)


def _create_private_file(path: Path) -> None:
    """Create the store file readable by its owner only, and its folders if need be (0700)."""
    try:
        _create_private_folders(path.parent)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        return  # another velory created it a moment ago; it checks the same way we would
    except OSError as exc:
        raise StoreUnusable(f"cannot create the store {path}: {exc.strerror}") from None


def _create_private_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and each missing folder above it as 0700 (whatever the umask), leaving
    the folders that exist as they are; returns the ones it made, outermost first.
    ``mkdir(parents=True)`` would give the ones above the last the umask's mode (0755, readable
    by everyone)."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    made: list[Path] = []
    for created in reversed(missing):
        try:
            os.mkdir(created, 0o700)
        except FileExistsError:
            continue  # created a moment ago by another velory: not ours to change
        os.chmod(created, 0o700)
        made.append(created)
    return made
