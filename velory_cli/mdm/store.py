"""The SQL of the MDM snapshots: replacing a source's snapshot, and comparing the snapshots
with the register. The only MDM module that speaks SQL; it works on ``Store``'s connection and
inside its transactions.

Serials and emails are compared through ``fold`` (as everywhere in velory): each snapshot
device is stored with its folded serial as its key, and a check folds the register's serials
once, into a temporary table, so that every comparison is an index lookup.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from velory_cli.folding import fold
from velory_cli.models import REMOVED
from velory_cli.store import Store

_SNAPSHOT_COLUMNS = (
    "id",
    "source",
    "name",
    "kind",
    "file",
    "imported_at",
    "actor",
    "taken_at",
    "devices",
    "skipped",
)


@dataclass(frozen=True)
class Snapshot:
    """The latest export of one MDM source, as imported."""

    id: int
    source: str
    name: str
    kind: str
    file: str | None
    imported_at: str
    actor: str
    taken_at: str | None
    devices: int
    skipped: int

    @property
    def as_of(self) -> str:
        """The day the snapshot shows: its latest check-in, else the day it was imported."""
        return (self.taken_at or self.imported_at)[:10]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "kind": self.kind,
            "file": self.file,
            "imported_at": self.imported_at,
            "imported_by": self.actor,
            "taken_at": self.taken_at,
            "as_of": self.as_of,
            "devices": self.devices,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class Enrolment:
    """One device as one snapshot lists it."""

    snapshot: Snapshot
    serial: str
    user: str | None
    last_check_in: str | None
    enrolled_at: str | None
    state: str | None
    name: str | None
    model: str | None


# The values of one snapshot device, in the order ``add_devices`` takes them.
DEVICE_VALUES = (
    "serial_key",
    "serial",
    "user_email",
    "user_key",
    "user_alias_key",
    "last_check_in",
    "enrolled_at",
    "state",
    "device_name",
    "model",
    "row",
)


class MdmStore:
    """The MDM tables of a store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn
        self.conn.create_function("velory_fold", 1, _fold, deterministic=True)

    # ---- snapshots -----------------------------------------------------------------------

    def snapshots(self) -> list[Snapshot]:
        rows = self.conn.execute(
            f"SELECT {', '.join(_SNAPSHOT_COLUMNS)} FROM mdm_snapshots ORDER BY source"
        )
        return [Snapshot(*row) for row in rows]

    def has_snapshots(self) -> bool:
        return bool(self.conn.execute("SELECT EXISTS (SELECT 1 FROM mdm_snapshots)").fetchone()[0])

    def snapshot(self, source: str) -> Snapshot | None:
        row = self.conn.execute(
            f"SELECT {', '.join(_SNAPSHOT_COLUMNS)} FROM mdm_snapshots WHERE source = ?",
            (source,),
        ).fetchone()
        return Snapshot(*row) if row else None

    def start_snapshot(
        self, *, source: str, name: str, kind: str, file: str | None, at: str, actor: str
    ) -> int:
        """Drop the source's previous snapshot and start its new one (inside the caller's
        transaction: until it commits, the previous one is what every reader sees)."""
        old = self.conn.execute("SELECT id FROM mdm_snapshots WHERE source = ?", (source,))
        for (snapshot_id,) in old.fetchall():
            self.conn.execute("DELETE FROM mdm_devices WHERE snapshot_id = ?", (snapshot_id,))
            self.conn.execute("DELETE FROM mdm_snapshots WHERE id = ?", (snapshot_id,))
        cursor = self.conn.execute(
            "INSERT INTO mdm_snapshots (source, name, kind, file, imported_at, actor, devices,"
            " skipped) VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
            (source, name, kind, file, at, actor),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def add_devices(self, snapshot_id: int, rows: Sequence[Sequence[Any]]) -> None:
        """Devices of a snapshot, as DEVICE_VALUES. A serial the export lists twice (a device
        enrolled again) is one device: the entry with the latest check-in stands."""
        columns = ", ".join(DEVICE_VALUES)
        marks = ", ".join("?" * len(DEVICE_VALUES))
        updates = ", ".join(
            f"{name} = excluded.{name}" for name in DEVICE_VALUES if name != "serial_key"
        )
        self.conn.executemany(
            f"INSERT INTO mdm_devices (snapshot_id, {columns}) VALUES ({snapshot_id}, {marks})"
            f" ON CONFLICT (serial_key, snapshot_id) DO UPDATE SET {updates}"
            " WHERE coalesce(excluded.last_check_in, '') > coalesce(mdm_devices.last_check_in, '')",
            rows,
        )

    def finish_snapshot(
        self, snapshot_id: int, *, skipped: int, latest: str
    ) -> tuple[int, str | None]:
        """Record the snapshot's counts and when it was taken: its latest check-in up to
        ``latest`` (a device whose clock runs ahead cannot date the whole export); returns
        (devices, taken_at)."""
        devices, taken_at = self.conn.execute(
            "SELECT count(*), max(CASE WHEN last_check_in <= ?2 THEN last_check_in END)"
            " FROM mdm_devices WHERE snapshot_id = ?1",
            (snapshot_id, latest),
        ).fetchone()
        self.conn.execute(
            "UPDATE mdm_snapshots SET devices = ?, skipped = ?, taken_at = ? WHERE id = ?",
            (devices, skipped, taken_at, snapshot_id),
        )
        return int(devices), taken_at

    # ---- one device ----------------------------------------------------------------------

    def enrolments(self, serial: str) -> list[Enrolment]:
        """Every snapshot that lists this serial."""
        rows = self.conn.execute(
            "SELECT " + ", ".join("s." + c for c in _SNAPSHOT_COLUMNS) + ", m.serial,"
            " m.user_email, m.last_check_in, m.enrolled_at, m.state, m.device_name, m.model"
            " FROM mdm_devices AS m JOIN mdm_snapshots AS s ON s.id = m.snapshot_id"
            " WHERE m.serial_key = ? ORDER BY s.source",
            (fold(serial),),
        )
        width = len(_SNAPSHOT_COLUMNS)
        return [Enrolment(Snapshot(*row[:width]), *row[width:]) for row in rows]

    def enrolments_of(self, serials: Sequence[str]) -> dict[str, list[Enrolment]]:
        """The snapshots listing each of these serials, keyed by folded serial, in one query:
        every serial given has its key (an empty list where no snapshot lists it)."""
        import json

        keys = sorted({fold(serial) for serial in serials})
        found: dict[str, list[Enrolment]] = {key: [] for key in keys}
        rows = self.conn.execute(
            "SELECT m.serial_key, " + ", ".join("s." + c for c in _SNAPSHOT_COLUMNS) + ","
            " m.serial, m.user_email, m.last_check_in, m.enrolled_at, m.state, m.device_name,"
            " m.model FROM json_each(?) AS j JOIN mdm_devices AS m ON m.serial_key = j.value"
            " JOIN mdm_snapshots AS s ON s.id = m.snapshot_id ORDER BY s.source",
            (json.dumps(keys, ensure_ascii=False),),
        )
        width = len(_SNAPSHOT_COLUMNS)
        for row in rows:
            found[row[0]].append(Enrolment(Snapshot(*row[1 : width + 1]), *row[width + 1 :]))
        return found

    # ---- the check -----------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One read snapshot for the queries of a check, so they all see the same store even
        while an import commits beside them."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def _register(self) -> None:
        """The register's serials, folded once, for this check's comparisons."""
        self.conn.execute("DROP TABLE IF EXISTS temp.mdm_register")
        self.conn.execute(
            "CREATE TEMP TABLE mdm_register (key TEXT PRIMARY KEY, device_id INTEGER NOT NULL)"
            " WITHOUT ROWID"
        )
        self.conn.execute(
            "INSERT OR IGNORE INTO temp.mdm_register (key, device_id)"
            " SELECT velory_fold(serial), id FROM devices"
        )

    def discrepancies(self, *, stale_before: str) -> Iterator[dict[str, Any]]:
        """What disagrees between the register and the snapshots, kind by kind (the order of
        KINDS in velory_cli.mdm.check), each kind in serial order. ``stale_before``: a
        check-in before this day (YYYY-MM-DD) is stale."""
        self._register()
        try:
            for kind, sql, params in self._queries(stale_before):
                cursor = self.conn.execute(sql, params)
                names = [column[0] for column in cursor.description]
                for row in cursor:
                    yield {"kind": kind, **dict(zip(names, row, strict=True))}
        finally:
            self.conn.execute("DROP TABLE IF EXISTS temp.mdm_register")

    def discrepancy_counts(self, *, stale_before: str) -> dict[str, int]:
        self._register()
        try:
            counts: dict[str, int] = {}
            for kind, sql, params in self._queries(stale_before):
                counts[kind] = int(
                    self.conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]
                )
            return counts
        finally:
            self.conn.execute("DROP TABLE IF EXISTS temp.mdm_register")

    def _queries(self, stale_before: str) -> list[tuple[str, str, tuple[Any, ...]]]:
        removed = "'" + REMOVED + "'"
        both = (
            "SELECT d.serial AS serial, s.source AS source, s.name AS source_name,"
            " d.status AS velory_status, d.user_email AS velory_user, m.serial AS mdm_serial,"
            " m.user_email AS mdm_user, m.state AS mdm_state,"
            " m.last_check_in AS mdm_last_check_in,"
            " coalesce(s.taken_at, s.imported_at) AS mdm_as_of"
            " FROM devices AS d JOIN temp.mdm_register AS r ON r.device_id = d.id"
            " JOIN mdm_devices AS m ON m.serial_key = r.key"
            " JOIN mdm_snapshots AS s ON s.id = m.snapshot_id"
        )
        order = " ORDER BY d.serial, s.source"
        return [
            ("released_but_enrolled", both + f" WHERE d.status = {removed}" + order, ()),
            (
                "missing_from_mdm",
                "SELECT d.serial AS serial, NULL AS source, NULL AS source_name,"
                " d.status AS velory_status, d.user_email AS velory_user, NULL AS mdm_serial,"
                " NULL AS mdm_user, NULL AS mdm_state, NULL AS mdm_last_check_in,"
                " NULL AS mdm_as_of FROM devices AS d"
                " JOIN temp.mdm_register AS r ON r.device_id = d.id"
                f" WHERE d.status != {removed}"
                " AND NOT EXISTS (SELECT 1 FROM mdm_devices AS m WHERE m.serial_key = r.key)"
                " ORDER BY d.serial",
                (),
            ),
            (
                "unknown_to_velory",
                "SELECT m.serial AS serial, s.source AS source, s.name AS source_name,"
                " NULL AS velory_status, NULL AS velory_user, m.serial AS mdm_serial,"
                " m.user_email AS mdm_user, m.state AS mdm_state,"
                " m.last_check_in AS mdm_last_check_in,"
                " coalesce(s.taken_at, s.imported_at) AS mdm_as_of"
                " FROM mdm_devices AS m JOIN mdm_snapshots AS s ON s.id = m.snapshot_id"
                " WHERE NOT EXISTS"
                " (SELECT 1 FROM temp.mdm_register AS r WHERE r.key = m.serial_key)"
                " ORDER BY m.serial_key, s.source",
                (),
            ),
            (
                "user_mismatch",
                both + f" WHERE d.status != {removed} AND m.user_key IS NOT NULL"
                " AND (d.user_email IS NULL OR trim(d.user_email) = ''"
                " OR velory_fold(d.user_email) IS NOT m.user_key"
                " AND velory_fold(d.user_email) IS NOT m.user_alias_key)" + order,
                (),
            ),
            (
                "stale",
                both + f" WHERE d.status != {removed} AND m.last_check_in IS NOT NULL"
                " AND m.last_check_in < ?" + order,
                (stale_before,),
            ),
        ]


def _fold(value: Any) -> Any:
    return fold(value) if isinstance(value, str) else value
