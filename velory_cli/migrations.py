"""The store's schema as ordered, named, transactional steps.

Each step runs once, inside a transaction with the record of it having run (sqlite-utils'
``Migrations``). Steps are only ever appended: a released step is never edited, so a store from
any earlier velory upgrades by running the steps it lacks, and a store that has run a step this
velory does not know is from a newer velory and is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlite_utils import Database

MIGRATION_SET = "velory"


def _steps() -> list[tuple[str, Any]]:
    return [
        ("0001_devices_history_notes", _devices_history_notes),
        ("0002_notices", _notices),
    ]


def _devices_history_notes(db: Database) -> None:
    # Constraints name their values with OR, not IN (...): SQLite builds a lookup table for an
    # IN list each time a statement runs, which costs an import ~2 µs a row; OR costs nothing.
    #
    # One row per import run that created devices: a device it created points to it (and to
    # the row of the file it came from), and that is the device's creation entry in its
    # history ("import", from nothing to active, at the run's time, by its actor). An import
    # of a million devices then writes a million devices, not two million rows.
    db.execute(
        """
        CREATE TABLE imports (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            file TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE devices (
            id INTEGER PRIMARY KEY,
            serial TEXT NOT NULL COLLATE NOCASE,
            model TEXT,
            category TEXT,
            user_email TEXT COLLATE NOCASE,
            user_name TEXT,
            distributor TEXT,
            source TEXT NOT NULL DEFAULT 'imported'
                CHECK (source = 'imported' OR source = 'store'),
            purchase_date TEXT,
            renewal_date TEXT,
            status TEXT NOT NULL DEFAULT 'active'
                CHECK (status = 'active' OR status = 'renewal_started'
                    OR status = 'return_confirmed' OR status = 'removed'),
            outcome TEXT CHECK (outcome IS NULL OR outcome = 'returned' OR outcome = 'bought_out'),
            replacement_serial TEXT COLLATE NOCASE,
            replaces_serial TEXT COLLATE NOCASE,
            ordered_model TEXT,
            ordered_at TEXT,
            delivered_at TEXT,
            status_changed_at TEXT,
            import_notes TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            import_id INTEGER REFERENCES imports (id),
            import_row INTEGER
        )
        """
    )
    # A named index, not a UNIQUE column constraint: a first import into an empty store can
    # drop it and build it once, sorted, at the end (see importer.writes).
    db.execute("CREATE UNIQUE INDEX devices_serial ON devices (serial)")
    # One index answers every question asked by status and renewal date: what is due (the
    # statuses not removed, named), the notices due (active), what waits for an admin (started,
    # confirmed), renewals per month. A second index on the renewal date alone would cost every
    # import and every status change its upkeep and answer nothing this one does not.
    db.execute("CREATE INDEX devices_status_renewal ON devices (status, renewal_date)")
    db.execute("CREATE INDEX devices_user_email ON devices (user_email)")
    db.execute(
        """
        CREATE TABLE history (
            id INTEGER PRIMARY KEY,
            device_id INTEGER NOT NULL REFERENCES devices (id),
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT,
            details TEXT
        )
        """
    )
    db.execute("CREATE INDEX history_device ON history (device_id, id)")
    db.execute(
        """
        CREATE TABLE notes (
            id INTEGER PRIMARY KEY,
            device_id INTEGER NOT NULL REFERENCES devices (id),
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            text TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX notes_device ON notes (device_id, id)")


def _notices(db: Database) -> None:
    # One row per device, kind and renewal date: the unique key is what makes a second notice
    # for the same renewal impossible. A personal-data reminder carries the renewal date of the
    # device it is about.
    db.execute(
        """
        CREATE TABLE notices (
            id INTEGER PRIMARY KEY,
            device_id INTEGER NOT NULL REFERENCES devices (id),
            kind TEXT NOT NULL,
            renewal_date TEXT NOT NULL,
            recipient TEXT,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status = 'pending' OR status = 'sending' OR status = 'sent'
                    OR status = 'failed' OR status = 'cancelled'),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            message_id TEXT,
            claimed_by TEXT,
            claimed_at TEXT,
            sent_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (device_id, kind, renewal_date)
        )
        """
    )
    db.execute("CREATE INDEX notices_status ON notices (status)")


def migrations() -> Any:
    """The sqlite-utils ``Migrations`` set holding every step."""
    from sqlite_utils.migrations import Migrations

    steps = Migrations(MIGRATION_SET)
    for name, function in _steps():
        steps(name=name)(function)
    return steps


def step_names() -> list[str]:
    return [name for name, _ in _steps()]


SCHEMA_VERSION = len(_steps())
