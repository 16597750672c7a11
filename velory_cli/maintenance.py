"""Looking after the store itself: an online backup, and a check of its health."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from velory_cli import migrations
from velory_cli.errors import OutputUnwritable
from velory_cli.outputs import check_target, discard, private_temp_file
from velory_cli.store import Store

# A notice still "sending" this long after its claim was left by a run that died; the next
# `notices send` re-sends it (with the same Message-ID), and `db check` reports it meanwhile.
STUCK_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class InitReport:
    path: Path
    created: bool
    schema_version: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.path),
            "created": self.created,
            "unchanged": not self.created,
            "schema_version": self.schema_version,
        }


def init_store(store: Store) -> InitReport:
    """Put a new, empty store in place; one that was there already stays as it is (an older
    one is upgraded, as every command does on opening it)."""
    created = store.is_new
    store.publish()
    return InitReport(path=store.path, created=created, schema_version=migrations.SCHEMA_VERSION)


def backup_store(store: Store, target: Path, *, force: bool = False) -> Path:
    """Copy the store, consistent even while other commands write, to ``target`` (0600).

    The copy is made beside the target and renamed into place, so a failed backup never leaves
    a half-written file where the backup should be.
    """
    target = Path(target)
    if target.resolve() == store.path.resolve():
        raise OutputUnwritable(f"{target} is the store itself")
    check_target(target, force=force, store_allowed=True)
    temp_name = private_temp_file(target)
    import sqlite3

    try:
        store.backup_to(Path(temp_name))
        os.replace(temp_name, target)
    except (OSError, sqlite3.Error) as exc:
        discard(temp_name)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputUnwritable(f"cannot write the backup {target}: {reason}") from None
    except BaseException:
        discard(temp_name)
        raise
    return target


@dataclass(frozen=True)
class Check:
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "problems": self.problems}


@dataclass(frozen=True)
class CheckReport:
    path: Path
    schema_version: int
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.path),
            "ok": self.ok,
            "schema_version": self.schema_version,
            "checks": [check.to_dict() for check in self.checks],
        }


def check_store(store: Store, *, now: datetime) -> CheckReport:
    """Integrity, foreign keys, schema version, orphaned rows and stuck notices."""
    version = store.schema_version()
    schema = []
    if version != migrations.SCHEMA_VERSION:
        schema.append(f"schema version {version}, expected {migrations.SCHEMA_VERSION}")
    stuck = []
    for notice in store.notices_in_sending():
        claimed = _parse_time(notice["claimed_at"])
        if claimed is None or now - claimed > STUCK_AFTER:
            stuck.append(
                f"{notice['serial']}: {notice['kind']} notice for {notice['renewal_date']} "
                f"has been sending since {notice['claimed_at'] or 'an unknown time'} "
                f"(claimed by {notice['claimed_by'] or 'unknown'}); the next notices run "
                "re-sends it"
            )
    checks = [
        Check("integrity", store.integrity_problems()),
        Check("foreign keys", store.foreign_key_problems()),
        Check("schema version", schema),
        Check("replacement links", store.broken_links()),
        Check(
            "history",
            [f"{serial}: no history entry" for serial in store.devices_without_history()],
        ),
        Check("notices stuck in sending", stuck),
    ]
    return CheckReport(path=store.path, schema_version=version, checks=checks)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed
