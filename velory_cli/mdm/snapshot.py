"""``velory mdm import``: an MDM export becomes its source's latest snapshot.

The previous snapshot of the source is replaced in the same transaction as the new one is
written: killed half way, or refused (a file that is no export), the previous one stays as it
was. Rows without a usable serial are counted and skipped, never an error.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from velory_cli.errors import InvalidInput, UsageError
from velory_cli.folding import fold
from velory_cli.mdm import sources
from velory_cli.mdm.store import MdmStore, Snapshot

if TYPE_CHECKING:
    from velory_cli.importer import Source
    from velory_cli.store import Store

CHUNK_RECORDS = 5000
_MAX_SOURCE_CHARS = 64


@dataclass
class SnapshotReport:
    source: str
    name: str
    kind: str
    format: str
    encoding: str | None
    file: str
    imported_at: str
    rows: int = 0
    devices: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    taken_at: str | None = None
    previous: Snapshot | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def duplicates(self) -> int:
        return self.rows - self.skipped_total - self.devices

    @property
    def as_of(self) -> str:
        return (self.taken_at or self.imported_at)[:10]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "kind": self.kind,
            "format": self.format,
            "encoding": self.encoding,
            "file": self.file,
            "rows": self.rows,
            "devices": self.devices,
            "duplicates": self.duplicates,
            "skipped": self.skipped_total,
            "skipped_by_reason": self.skipped,
            "taken_at": self.taken_at,
            "as_of": self.as_of,
            "imported_at": self.imported_at,
            "replaced": self.previous.to_dict() if self.previous else None,
            "warnings": self.warnings,
        }


def source_name(given: str | None, kind: str) -> tuple[str, str]:
    """The snapshot's source key and how messages name it: ``--source`` when given, else the
    source the kind of export implies; a generic export needs ``--source``."""
    if given is not None:
        from velory_cli.lifecycle import checked_text

        name = checked_text(given, "--source", one_line=True)
        if not name:
            raise UsageError("--source is empty; name the MDM the export comes from")
        if len(name) > _MAX_SOURCE_CHARS:
            raise UsageError(f"--source is longer than {_MAX_SOURCE_CHARS} characters")
        key = fold(name)
        return key, sources.SOURCE_NAMES.get(key, name)
    known = sources.KIND_SOURCES.get(kind)
    if known is None:
        raise UsageError(
            "cannot tell which MDM this export comes from: name it with --source NAME "
            "(intune, jamf, kandji, google, or your MDM's name)"
        )
    return known, sources.SOURCE_NAMES[known]


def import_snapshot(
    store: Store,
    source: Source,
    *,
    source_given: str | None,
    encoding: str | None = None,
    now: str,
    actor: str,
    allow_empty: bool = False,
) -> SnapshotReport:
    """Read ``source`` and make it its MDM source's latest snapshot, in one transaction. A
    file that is no export is InvalidInput, naming the file; the previous snapshot stands.
    So is an export of no devices that would replace a snapshot of some, unless
    ``allow_empty``: with none enrolled, every release would pass the MDM's guard."""
    try:
        return _import(
            store,
            source,
            source_given=source_given,
            encoding=encoding,
            now=now,
            actor=actor,
            allow_empty=allow_empty,
        )
    except InvalidInput as exc:
        raise InvalidInput(
            f"{source.name}: {exc.message}; nothing was written, the previous snapshot stands"
        ) from None


def _import(
    store: Store,
    source: Source,
    *,
    source_given: str | None,
    encoding: str | None,
    now: str,
    actor: str,
    allow_empty: bool,
) -> SnapshotReport:
    if source_given is not None:
        source_name(source_given, sources.GENERIC_CSV)  # a bad --source fails before reading
    export = sources.open_export(source, encoding)
    records = iter(export.records)
    first = next(records, None)  # the kind is known once the header or first device is read
    key, name = source_name(source_given, export.kind)
    mdm = MdmStore(store)
    report = SnapshotReport(
        source=key,
        name=name,
        kind=export.kind,
        format=export.format,
        encoding=export.encoding,
        file=source.name,
        imported_at=now,
        warnings=export.warnings,
    )
    skipped = dict.fromkeys(sources.SKIP_REASONS, 0)
    all_records = itertools.chain([first] if first else [], records)
    with store.transaction():
        report.previous = mdm.snapshot(key)
        snapshot_id = mdm.start_snapshot(
            source=key, name=name, kind=export.kind, file=source.name, at=now, actor=actor
        )
        while chunk := list(itertools.islice(all_records, CHUNK_RECORDS)):
            rows = []
            for record in chunk:
                reason = sources.unusable_serial(record.serial)
                if reason:
                    skipped[reason] += 1
                    continue
                rows.append(_values(record))
            report.rows += len(chunk)
            mdm.add_devices(snapshot_id, rows)
        report.skipped = {reason: count for reason, count in skipped.items() if count}
        report.devices, report.taken_at = mdm.finish_snapshot(
            snapshot_id, skipped=report.skipped_total, latest=_a_day_after(now)
        )
        previous = report.previous
        if not report.devices and previous is not None and previous.devices and not allow_empty:
            had = f"{previous.devices:,} device{'' if previous.devices == 1 else 's'}"
            raise InvalidInput(
                f"it lists no devices and would replace {name}'s snapshot of {had} with none "
                "(an export that failed or was filtered?); check it, or give --allow-empty"
            )
    if export.unreadable_dates[0]:
        count = export.unreadable_dates[0]
        report.warnings.append(
            f"{count} check-in {'time' if count == 1 else 'times'} could not be read as a date;"
            " those devices are never counted as stale"
        )
    if report.rows == 0:
        report.warnings.append(f"{source.name} lists no devices")
    return report


def _a_day_after(moment: str) -> str:
    """A day after ``moment`` (UTC, ISO): the latest check-in an export made now can hold,
    whatever time zone its machine's clock was set to."""
    from datetime import datetime, timedelta

    later = datetime.fromisoformat(moment.replace("Z", "+00:00")) + timedelta(days=1)
    return later.strftime("%Y-%m-%dT%H:%M:%SZ")


def _values(record: sources.Record) -> tuple[Any, ...]:
    serial = record.serial.strip()
    return (
        fold(serial),
        serial,
        record.user,
        fold(record.user) if record.user else None,
        fold(record.user_alias) if record.user_alias else None,
        record.last_check_in,
        record.enrolled_at,
        record.state,
        record.name,
        record.model,
        record.row,
    )
