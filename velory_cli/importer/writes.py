"""The import's own write path: the chunked lookups and writes of ``velory import``.

Besides the store, this is the one module that speaks SQL. Its statements belong to the import
alone and are shaped by how it reads a file: a chunk of a few thousand rows at a time, each
statement answering for the whole chunk (one ``executemany``, or one query over a JSON array of
the chunk's serials), never a statement per row. They run on the store's connection, inside
the one transaction ``ImportWrites.transaction`` takes through the store.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from velory_cli.importer.columns import STORED_FIELDS
from velory_cli.store import SERIAL_KEY_TRIGGER, SERIALS_INDEX, Store

# The page cache of an import, in KiB as PRAGMA cache_size takes a negative number: 16 MiB,
# or for a larger store room for its serials' unique index, which a re-import reads at random
# (as many pages as the file's serials are out of order), and for the pages of the chunk read
# beside it: 32 bytes a device (the index takes about 19 with ten-character serials); at most
# 64 MiB. A cache smaller than that index reads it from the file again for every chunk.
IMPORT_CACHE_SIZE = -16 * 1024
IMPORT_CACHE_BYTES_PER_DEVICE = 32
IMPORT_CACHE_MAX_SIZE = -64 * 1024
IMPORT_TEMP_CACHE_SIZE = -8 * 1024
IMPORT_SORT_CACHE_SIZE = -2 * 1024

# A stored device as ``ImportWrites.lookup`` returns it is a plain tuple, not an object, for a
# re-import reads a million of them; its parts are at these positions. Its stored values come
# last, in STORED_FIELDS order and "" where NULL, so a row of the file compares with them as
# they are.
POSITION, DEVICE_ID, STATUS, IMPORT_ID, IMPORT_ROW = range(5)
STORED_VALUES = slice(5, None)
StoredDevice = tuple[Any, ...]

# A new device as ``ImportWrites.insert`` takes it: these columns, in this order.
NEW_DEVICE_COLUMNS = ("import_row", "serial", "serial_key", *STORED_FIELDS)

_LOOKUP = (
    "SELECT j.key, d.id, d.status, d.import_id, d.import_row, "
    + ", ".join(f"coalesce(d.{column}, '')" for column in STORED_FIELDS)
    + " FROM json_each(?) AS j JOIN devices AS d ON d.serial_key = j.value"
)
_UPDATE = (
    "UPDATE devices SET "
    + ", ".join(f"{column} = nullif(?, '')" for column in STORED_FIELDS)
    + ", updated_at = ? WHERE id = ?"
)


def import_cache_size(devices: int) -> int:
    """The page cache of an import into a store of about ``devices`` devices, as PRAGMA
    cache_size takes it (negative: KiB)."""
    wanted = devices * IMPORT_CACHE_BYTES_PER_DEVICE // 1024
    return -min(max(wanted, -IMPORT_CACHE_SIZE), -IMPORT_CACHE_MAX_SIZE)


class DeferredIndex(NamedTuple):
    """An index (or the trigger) a bulk load dropped, to make again once at its end."""

    name: str
    sql: str  # its CREATE statement


class ImportWrites:
    """The lookups and writes of one import, on ``store``'s connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[None]:
        """The one transaction of an import: a write transaction, or for a dry run a read
        snapshot that is always rolled back (and takes no write lock). Bigger page caches
        while it runs (sized by the store, whatever the file's size) keep the indexes a large
        import reads and grows in memory instead of re-reading them."""
        cache_size = self.conn.execute("PRAGMA main.cache_size").fetchone()[0]
        temp_cache_size = self.conn.execute("PRAGMA temp.cache_size").fetchone()[0]
        devices = self.conn.execute("SELECT coalesce(max(id), 0) FROM devices").fetchone()[0]
        self.conn.execute(f"PRAGMA main.cache_size = {import_cache_size(devices)}")
        self.conn.execute(f"PRAGMA temp.cache_size = {IMPORT_TEMP_CACHE_SIZE}")
        try:
            if write:
                with self.store.transaction():
                    yield
                return
            self.conn.execute("BEGIN")
            try:
                yield
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
        finally:
            self.conn.execute(f"PRAGMA main.cache_size = {int(cache_size)}")
            self.conn.execute(f"PRAGMA temp.cache_size = {int(temp_cache_size)}")

    def has_devices(self) -> bool:
        return bool(self.conn.execute("SELECT EXISTS (SELECT 1 FROM devices)").fetchone()[0])

    def begin(self) -> None:
        """Two temporary tables, so a serial the file repeats is found without holding the
        file in memory: the stored devices the file has named so far (by id, with the first
        row naming each), and, when new devices are not being written (a dry run, or a file
        already known to be invalid), the new serials it has named (folded, with their
        first row). New devices written by this import are found in the store itself."""
        self.end()
        self.conn.execute(
            "CREATE TEMP TABLE import_seen (id INTEGER PRIMARY KEY, row INTEGER NOT NULL)"
        )
        self.conn.execute(
            "CREATE TEMP TABLE import_keys (key TEXT PRIMARY KEY, row INTEGER NOT NULL)"
            " WITHOUT ROWID"
        )

    def end(self) -> None:
        self.conn.execute("DROP TABLE IF EXISTS temp.import_seen")
        self.conn.execute("DROP TABLE IF EXISTS temp.import_keys")

    def record(self, *, at: str, actor: str, file: str | None) -> int:
        """The record of this import run, which the devices it creates point to: their
        creation entry in the history."""
        cursor = self.conn.execute(
            "INSERT INTO imports (at, actor, file) VALUES (?, ?, ?)", (at, actor, file)
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def lookup(self, keys: Sequence[str]) -> list[StoredDevice]:
        """The stored devices among these folded serials, one query for the chunk; each
        one's POSITION is where its serial is in ``keys``."""
        if not keys:
            return []
        # Plain tuples, not sqlite3.Row: a re-import reads a million of these.
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(_LOOKUP, (json.dumps(list(keys), ensure_ascii=False),)).fetchall()

    def claim_devices(self, claims: Sequence[tuple[int, int]], first: int) -> dict[int, int]:
        """Claim stored devices, as (id, row), for the rows of this chunk (which start at row
        ``first``); the ids an earlier chunk claimed already, with that chunk's row."""
        return self._claim("import_seen", "id", claims, first)

    def claim_keys(self, claims: Sequence[tuple[str, int]], first: int) -> dict[str, int]:
        """Claim new serials, as (folded serial, row), as ``claim_devices`` does."""
        return self._claim("import_keys", "key", claims, first)

    def _claim(
        self, table: str, column: str, claims: Sequence[tuple[Any, int]], first: int
    ) -> dict[Any, int]:
        if not claims:
            return {}
        before = self.conn.total_changes
        self.conn.executemany(
            f"INSERT OR IGNORE INTO temp.{table} ({column}, row) VALUES (?, ?)", claims
        )
        if self.conn.total_changes - before == len(claims):
            return {}  # every one new: the usual case, answered without a query
        rows = self.conn.execute(
            f"SELECT {column}, row FROM temp.{table}"
            f" WHERE {column} IN (SELECT value FROM json_each(?)) AND row < ?",
            (json.dumps([value for value, _ in claims], ensure_ascii=False), first),
        )
        return {row[0]: row[1] for row in rows}

    def insert(
        self,
        rows: Iterable[Sequence[Any]],
        *,
        import_id: int,
        source: str,
        status: str,
        at: str,
        empty: Sequence[bool] = (True,) * len(STORED_FIELDS),
    ) -> int:
        """New devices from a chunk of an import, each with the NEW_DEVICE_COLUMNS, "" for a
        value the file does not give (stored as NULL; ``empty`` says, for the columns after
        the serial, which may be ""), created by import ``import_id`` at ``at``. A serial the
        store already holds is left out; returns how many were inserted.

        Straight into the table with one ``executemany``: the values every row shares are
        written into the statement (as SQLite quotes them), and the table's constraints are
        plain comparisons (see migrations), so SQLite does little more a row than it must."""
        shared = ", ".join(
            self.conn.execute(
                "SELECT quote(?1), quote(?2), quote(?3), quote(?3), quote(?4)",
                (source, status, at, import_id),
            ).fetchone()
        )
        fields = ", ".join("nullif(?, '')" if may_be else "?" for may_be in empty)
        before = self.conn.total_changes
        self.conn.executemany(
            "INSERT OR IGNORE INTO devices (" + ", ".join(NEW_DEVICE_COLUMNS) + ", source,"
            f" status, created_at, updated_at, import_id) VALUES (?, ?, ?, {fields}, {shared})",
            rows,
        )
        return int(self.conn.total_changes - before)

    def rows_of(self, keys: Sequence[str], import_id: int, first: int) -> dict[int, int]:
        """Of these folded serials, the ones an earlier chunk of import ``import_id``
        (before row ``first``) created a device for: position in ``keys`` -> that row."""
        rows = self.conn.execute(
            "SELECT j.key, d.import_row FROM json_each(?) AS j JOIN devices AS d"
            " ON d.serial_key = j.value WHERE d.import_id = ? AND d.import_row < ?",
            (json.dumps(list(keys), ensure_ascii=False), import_id, first),
        )
        return {row[0]: row[1] for row in rows}

    def added_notes(self, device_ids: Sequence[int]) -> dict[int, list[str]]:
        """The texts of the notes added to these devices (beside their imported notes),
        oldest first, for the devices that have any: one query for the chunk."""
        found: dict[int, list[str]] = {}
        if not device_ids:
            return found
        rows = self.conn.execute(
            "SELECT n.device_id, n.text FROM json_each(?) AS j"
            " JOIN notes AS n ON n.device_id = j.value ORDER BY n.device_id, n.id",
            (json.dumps(list(device_ids)),),
        )
        for device_id, text in rows:
            found.setdefault(device_id, []).append(text)
        return found

    def update(
        self, updates: Sequence[tuple[Any, ...]], history: Sequence[tuple[Any, ...]]
    ) -> None:
        """Stored devices an import changes, each as its values of STORED_FIELDS ("" for
        NULL), then updated_at and id; ``history`` their entries, as the store's
        ``record_history_many`` takes them."""
        self.conn.executemany(_UPDATE, updates)
        self.store.record_history_many(history)

    def defer_indexes(self, *, serials: bool = False) -> list[DeferredIndex]:
        """For a bulk load into an empty store: drop the secondary indexes of devices and
        history (and with ``serials`` the serials' unique index too) and return them, so
        ``restore_indexes`` builds each once, sorted, instead of row by row. Inside the
        import's transaction, a rollback brings them back as they were."""
        rows = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name IN ('devices', 'history') AND sql IS NOT NULL"
            " ORDER BY name != ?, name",
            (SERIALS_INDEX,),
        ).fetchall()
        dropped = [
            DeferredIndex(name, sql) for name, sql in rows if serials or name != SERIALS_INDEX
        ]
        for index in dropped:
            self.conn.execute('DROP INDEX "' + index.name.replace('"', '""') + '"')
        return dropped

    def suspend_key_trigger(self) -> DeferredIndex | None:
        """Drop the trigger that fills in the serial_key of a device inserted without one,
        and return it for ``restore_key_trigger``: every insert of an import gives the key,
        and the trigger's check of it costs a bulk insert a third of its time (it runs a
        program of its own for every row). Inside the import's transaction: no one else
        writes meanwhile, and a rollback brings it back as it was."""
        row = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
            (SERIAL_KEY_TRIGGER,),
        ).fetchone()
        if row is None:
            return None
        self.conn.execute('DROP TRIGGER "' + row[0].replace('"', '""') + '"')
        return DeferredIndex(row[0], row[1])

    def restore_key_trigger(self, trigger: DeferredIndex | None) -> None:
        if trigger is not None:
            self.conn.execute(trigger.sql)

    def restore_indexes(self, indexes: Sequence[DeferredIndex]) -> bool:
        """Build the indexes ``defer_indexes`` dropped (the serials' first). False when the
        serials' unique index cannot be built, for two devices share a serial: then nothing
        is built."""
        # SQLite sorts an index build in memory up to the page cache's size: a small cache
        # here keeps that memory the same however many rows were imported. It sorts with
        # helper threads when allowed to: one per core, up to four.
        conn = self.conn
        cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
        threads = conn.execute("PRAGMA threads").fetchone()[0]
        conn.execute(f"PRAGMA cache_size = {IMPORT_SORT_CACHE_SIZE}")
        conn.execute(f"PRAGMA threads = {min(os.cpu_count() or 1, 4)}")
        try:
            for index in sorted(indexes, key=lambda index: index.name != SERIALS_INDEX):
                try:
                    conn.execute(index.sql)
                except sqlite3.IntegrityError:
                    if index.name == SERIALS_INDEX:
                        return False
                    raise
        finally:
            conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
            conn.execute(f"PRAGMA threads = {int(threads)}")
        return True
