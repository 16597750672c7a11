"""The store: one SQLite file, and the only module that speaks SQL.

Opening a store creates it (mode 0600, its folder 0700) or checks that it is a velory store from
this velory or an earlier one, then applies the migrations it lacks. Every write happens inside
``Store.transaction()``, one ``BEGIN IMMEDIATE`` ... ``COMMIT``: a command killed half way leaves
the store as it was.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from velory_cli.errors import StoreUnusable, TemporaryFailure, VeloryError
from velory_cli.models import Device, HistoryEntry, Note

# PRAGMA application_id of every velory store: "VELY". A SQLite file without it that already
# holds tables belongs to something else and is never touched.
APPLICATION_ID = 0x56454C59
SQLITE_HEADER = b"SQLite format 3\x00"

DEVICE_COLUMNS = tuple(f.name for f in fields(Device))
NOTICE_COLUMNS = (
    "kind",
    "recipient",
    "renewal_date",
    "status",
    "attempts",
    "sent_at",
    "error",
    "message_id",
)
_DEVICE_SELECT = "SELECT " + ", ".join(DEVICE_COLUMNS) + " FROM devices"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def describe_sqlite_error(exc: sqlite3.Error, path: Path) -> VeloryError:
    """The velory error a SQLite failure stands for, with a message an admin can act on."""
    text = str(exc).lower()
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
class DeviceFilter:
    """Which devices a listing shows. Removed devices only when asked for."""

    status: str | None = None
    user_email: str | None = None
    distributor: str | None = None
    include_removed: bool = False


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._db: Any = None

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float = 10.0) -> Store:
        """Open the store at ``path``, creating it on first use, upgrading an older one."""
        path = Path(path)
        created = False
        if path.exists():
            _check_is_velory_file(path)
        else:
            _create_private_file(path)
            created = True
        try:
            conn = sqlite3.connect(
                str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise describe_sqlite_error(exc, path) from None
        conn.row_factory = sqlite3.Row
        store = cls(conn, path)
        try:
            store._prepare(created)
        except sqlite3.Error as exc:
            conn.close()
            raise describe_sqlite_error(exc, path) from None
        except VeloryError:
            conn.close()
            raise
        return store

    def _prepare(self, created: bool) -> None:
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
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if version < migrations.SCHEMA_VERSION or app_id != APPLICATION_ID:
            self._migrate()

    def _migrate(self) -> None:
        from velory_cli import migrations

        # Take the write lock first, so two velorys opening a new store never both migrate it.
        with self.transaction():
            known = set(migrations.step_names())
            steps = migrations.migrations()
            applied = {m.name for m in steps.applied(self.db)}
            unknown = applied - known
            if unknown:
                raise StoreUnusable(
                    f"the store {self.path} is from a newer velory (it has run "
                    f"{', '.join(sorted(unknown))}); upgrade velory, the store was left untouched"
                )
            steps.apply(self.db)
            self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION}")

    @property
    def db(self) -> Any:
        """The sqlite-utils view of the same connection, for schema work."""
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self.conn)
        return self._db

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taken at once so two writers never deadlock half way."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
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
        rows = self.conn.execute(
            "SELECT serial FROM devices d"
            " WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.device_id = d.id)"
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
        """The device with this serial: case-insensitive, surrounding spaces ignored."""
        row = self.conn.execute(_DEVICE_SELECT + " WHERE serial = ?", (serial.strip(),)).fetchone()
        return _device(row) if row else None

    def device_by_id(self, device_id: int) -> Device:
        row = self.conn.execute(_DEVICE_SELECT + " WHERE id = ?", (device_id,)).fetchone()
        return _device(row)

    def devices_by_serials(self, serials: Sequence[str]) -> dict[str, Device]:
        """The stored devices among ``serials``, keyed by upper-cased serial."""
        found: dict[str, Device] = {}
        for start in range(0, len(serials), 500):
            chunk = [s.strip() for s in serials[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(_DEVICE_SELECT + f" WHERE serial IN ({marks})", chunk):
                device = _device(row)
                found[device.serial.upper()] = device
        return found

    def devices(self, where: DeviceFilter = DeviceFilter()) -> list[Device]:
        clauses: list[str] = []
        params: list[Any] = []
        if where.status:
            clauses.append("status = ?")
            params.append(where.status)
        elif not where.include_removed:
            clauses.append("status != 'removed'")
        if where.user_email:
            clauses.append("user_email = ?")
            params.append(where.user_email.strip())
        if where.distributor:
            clauses.append("distributor LIKE ? ESCAPE '\\'")
            params.append("%" + _like_escape(where.distributor.strip()) + "%")
        sql = _DEVICE_SELECT
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY user_email IS NULL, user_email COLLATE NOCASE, serial"
        return [_device(row) for row in self.conn.execute(sql, params)]

    def iter_all_devices(self) -> Iterator[Device]:
        """Every device, removed ones too, in serial order, without holding them all."""
        for row in self.conn.execute(_DEVICE_SELECT + " ORDER BY serial"):
            yield _device(row)

    def insert_device(self, values: dict[str, Any]) -> int:
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
        rows = self.conn.execute(
            "SELECT at, actor, action, from_status, to_status, details FROM history"
            " WHERE device_id = ? ORDER BY id",
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

    # ---- notices -------------------------------------------------------------------------

    def notices_for_device(self, device_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            f"SELECT {', '.join(NOTICE_COLUMNS)} FROM notices WHERE device_id = ? ORDER BY id",
            (device_id,),
        )
        return [dict(row) for row in rows]


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


def _create_private_file(path: Path) -> None:
    """Create the store file readable by its owner only, and its folder if need be (0700)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        return  # another velory created it a moment ago; it checks the same way we would
    except OSError as exc:
        raise StoreUnusable(f"cannot create the store {path}: {exc.strerror}") from None
