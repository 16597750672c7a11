"""The store's schema as ordered, named, transactional steps.

Each step runs once, inside a transaction with the record of it having run (sqlite-utils'
``Migrations``). Steps are only ever appended: a released step is never edited, so a store from
any earlier velory upgrades by running the steps it lacks, and a store that has run a step this
velory does not know is from a newer velory and is refused.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlite_utils import Database

MIGRATION_SET = "velory"


def _steps() -> list[tuple[str, Any]]:
    return [
        ("0001_devices_history_notes", _devices_history_notes),
        ("0002_notices", _notices),
        ("0003_notice_recipients", _notice_recipients),
        ("0004_serial_keys", _serial_keys),
        ("0005_mdm_snapshots", _mdm_snapshots),
        ("0006_fleet_changes", _fleet_changes),
        ("0007_digests", _digests),
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


def _serial_keys(db: Database) -> None:
    # One spelling of a serial is one device beyond ASCII too: the unique index moves from the
    # serial (NOCASE folds ASCII only) to its key, ``folding.fold`` of it (NFKC and full case
    # folding).
    from velory_cli.folding import fold

    db.conn.create_function("velory_fold", 1, fold, deterministic=True)
    db.execute("ALTER TABLE devices ADD COLUMN serial_key TEXT")
    db.execute("UPDATE devices SET serial_key = velory_fold(serial)")
    # Two devices of a store from before this step may fold to one key (ÅB1 and åb1, which
    # NOCASE told apart). Neither is lost or merged: the oldest keeps the key, and so every
    # spelling; each newer one gets the key, U+001F (a control character no serial can hold)
    # and its serial as written, and is found by that exact spelling only (see
    # store.DUPLICATE_KEY_SEPARATOR); a history entry on it names the older device, for
    # ``velory show``.
    shared = db.execute(
        "SELECT serial_key, min(id) FROM devices GROUP BY serial_key HAVING count(*) > 1"
    ).fetchall()
    for key, oldest in shared:
        older_serial = db.execute("SELECT serial FROM devices WHERE id = ?", [oldest]).fetchone()[0]
        newer = db.execute(
            "SELECT id, status FROM devices WHERE serial_key = ? AND id != ?", [key, oldest]
        ).fetchall()
        for device_id, status in newer:
            db.execute(
                "UPDATE devices SET serial_key = serial_key || char(31) || serial WHERE id = ?",
                [device_id],
            )
            details = json.dumps({"same_serial_as": older_serial}, ensure_ascii=False)
            db.execute(
                "INSERT INTO history (device_id, at, actor, action, from_status, to_status,"
                " details) VALUES (?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 'velory',"
                " 'upgrade', ?, ?, ?)",
                [device_id, status, status, details],
            )
    db.execute("DROP INDEX devices_serial")
    db.execute("CREATE UNIQUE INDEX devices_serial_key ON devices (serial_key)")
    # velory writes fold(serial) with every device it creates. A row written without a key (by
    # a tool that speaks SQL to the store) gets the key of an ASCII serial here, in plain SQL
    # that any connection can run, rather than none: a NULL key would make it a device no
    # lookup finds and the unique index never compares.
    db.execute(
        """
        CREATE TRIGGER devices_serial_key_default AFTER INSERT ON devices
        WHEN NEW.serial_key IS NULL
        BEGIN
            UPDATE devices SET serial_key = lower(trim(NEW.serial)) WHERE id = NEW.id;
        END
        """
    )


def _notice_recipients(db: Database) -> None:
    # A device that changes hands gets its renewal notice to the new user as well: one row per
    # device, kind, renewal date and recipient. ``recipient_key`` is the recipient as
    # folding.fold compares addresses (NFKC and full case folding, which SQLite's NOCASE does
    # not do beyond ASCII), written by the store beside every recipient it writes; '' for none.
    # SQLite cannot change a table's constraints in place: the table is rebuilt, every row kept
    # with its id, state, attempts and Message-ID.
    from velory_cli.folding import fold

    db.execute(
        """
        CREATE TABLE notices_new (
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
            recipient_key TEXT NOT NULL DEFAULT '',
            UNIQUE (device_id, kind, renewal_date, recipient_key)
        )
        """
    )
    columns = (
        "id, device_id, kind, renewal_date, recipient, status, attempts, error, message_id,"
        " claimed_by, claimed_at, sent_at, created_at, updated_at"
    )
    db.execute(f"INSERT INTO notices_new ({columns}) SELECT {columns} FROM notices")
    keys = [
        (fold(recipient), notice_id)
        for notice_id, recipient in db.execute("SELECT id, recipient FROM notices").fetchall()
        if recipient
    ]
    db.conn.executemany("UPDATE notices_new SET recipient_key = ? WHERE id = ?", keys)
    db.execute("DROP TABLE notices")
    db.execute("ALTER TABLE notices_new RENAME TO notices")
    db.execute("CREATE INDEX notices_status ON notices (status)")
    # Which notices one mail carried: a mail sent again carries exactly those.
    db.execute("CREATE INDEX notices_message ON notices (message_id) WHERE message_id IS NOT NULL")


def _mdm_snapshots(db: Database) -> None:
    # One snapshot per MDM source: an import replaces the source's row (and, by the cascade,
    # its devices) in one transaction. ``source`` is the folded name the admin gives or the
    # kind implies; ``taken_at`` is the latest check-in the file itself holds (None when it
    # holds none), ``imported_at`` when velory read it.
    db.execute(
        """
        CREATE TABLE mdm_snapshots (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            file TEXT,
            imported_at TEXT NOT NULL,
            actor TEXT NOT NULL,
            taken_at TEXT,
            devices INTEGER NOT NULL,
            skipped INTEGER NOT NULL
        )
        """
    )
    # A device of a snapshot, by its folded serial: the check joins on it, and release and
    # show look a device up by it across every source.
    db.execute(
        """
        CREATE TABLE mdm_devices (
            serial_key TEXT NOT NULL,
            snapshot_id INTEGER NOT NULL REFERENCES mdm_snapshots (id) ON DELETE CASCADE,
            serial TEXT NOT NULL,
            user_email TEXT,
            user_key TEXT,
            user_alias_key TEXT,
            last_check_in TEXT,
            enrolled_at TEXT,
            state TEXT,
            device_name TEXT,
            model TEXT,
            row INTEGER,
            PRIMARY KEY (serial_key, snapshot_id)
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX mdm_devices_snapshot ON mdm_devices (snapshot_id)")


# The outcome's CHECK as 0001 wrote it, and as 0006 widens it for retired devices.
_OUTCOME_CHECK = "CHECK (outcome IS NULL OR outcome = 'returned' OR outcome = 'bought_out')"
_RETIRE_OUTCOME_CHECK = (
    "CHECK (outcome IS NULL OR outcome = 'returned' OR outcome = 'bought_out'"
    " OR outcome = 'lost' OR outcome = 'stolen' OR outcome = 'broken' OR outcome = 'other')"
)


def _fleet_changes(db: Database) -> None:
    # A retired device (lost, stolen, broken, other) keeps why in its outcome, and the status
    # and outcome it had before, which reinstate gives back. Kept in columns, not read back
    # from the history: reinstate then reads the device row it has anyway (no history scan per
    # device of a bulk run), and the history stays a record for people rather than state the
    # lifecycle depends on.
    db.execute("ALTER TABLE devices ADD COLUMN retired_from TEXT")
    db.execute("ALTER TABLE devices ADD COLUMN retired_from_outcome TEXT")
    # SQLite cannot change a CHECK in place: the table is rebuilt from its own definition, only
    # the outcome's CHECK widened, every row kept with its id, and its indexes and triggers
    # (whichever steps made them) made again as they were. The history, notes and notices point
    # at devices by id and by name; the store runs the steps with foreign keys off, so the old
    # table is dropped without touching them and the new one takes its name.
    table_sql = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'devices'"
    ).fetchone()[0]
    if _OUTCOME_CHECK not in table_sql:
        raise RuntimeError("the devices table's outcome CHECK is not the one 0001 wrote")
    dependants = [
        sql
        for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'devices'"
            " AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name"
        ).fetchall()
    ]
    columns = ", ".join(
        row[1] for row in db.execute("SELECT * FROM pragma_table_info('devices')").fetchall()
    )
    new_table = re.sub(
        r'^CREATE TABLE\s+(?:"devices"|devices)', "CREATE TABLE devices_0006", table_sql, count=1
    )
    db.execute(new_table.replace(_OUTCOME_CHECK, _RETIRE_OUTCOME_CHECK, 1))
    db.execute(f"INSERT INTO devices_0006 ({columns}) SELECT {columns} FROM devices")
    db.execute("DROP TABLE devices")
    db.execute("ALTER TABLE devices_0006 RENAME TO devices")
    for sql in dependants:
        db.execute(sql)


def _digests(db: Database) -> None:
    # The admin digest's ledger: one row per recipient and day, so a recipient gets one digest
    # a day however often cron runs. ``recipient_key`` is the recipient as folding.fold
    # compares addresses. A row is claimed (``sending``, with this host and process) before the
    # mail server sees the mail and marked ``sent`` once it accepted it; ``pending`` is a claim
    # given back (the server was down), ``failed`` a mail the server refused. ``content_key``
    # says what the mail said: one sent again keeps its Message-ID only when it says the same.
    db.execute(
        """
        CREATE TABLE digests (
            id INTEGER PRIMARY KEY,
            recipient TEXT NOT NULL,
            recipient_key TEXT NOT NULL,
            day TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status = 'pending' OR status = 'sending' OR status = 'sent'
                    OR status = 'failed'),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            message_id TEXT NOT NULL,
            content_key TEXT NOT NULL,
            claimed_by TEXT,
            claimed_at TEXT,
            sent_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (recipient_key, day)
        )
        """
    )


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
