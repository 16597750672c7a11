"""velory mdm import, velory mdm check: the register against the MDM's own export."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from velory_cli.commands.common import (
    CsvOption,
    JsonOption,
    QuietOption,
    group,
    now_utc,
    output_mode,
    parse_as_of,
    state,
)

if TYPE_CHECKING:
    from velory_cli.mdm.check import CheckReport
    from velory_cli.mdm.snapshot import SnapshotReport

mdm_app = group("mdm", "Compare the register with MDM exports: import, check.")


@mdm_app.command("import")
def import_export(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help="An MDM export: Intune CSV, Graph managedDevices JSON, Jamf, Kandji, Google "
            "ChromeOS JSON, or a CSV with a serial column; '-' reads stdin.",
            show_default=False,
        ),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            metavar="NAME",
            help="The MDM it comes from (intune, jamf, kandji, google, or any name); needed "
            "when the file does not tell. One snapshot per source.",
            show_default=False,
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            metavar="NAME",
            help="The file's encoding (default: UTF-8, else Windows-1252).",
            show_default=False,
        ),
    ] = None,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Keep an export of no devices even when it replaces a snapshot of some.",
        ),
    ] = False,
    quiet: QuietOption = False,
    json_out: JsonOption = False,
) -> None:
    """Keep an MDM export as its source's snapshot, replacing the previous one.

    Examples:

      velory mdm import DevicesWithInventory.csv

      velory mdm import devices.csv --source workspace-one --json
    """
    from velory_cli import importer
    from velory_cli.mdm.snapshot import import_snapshot

    mode = output_mode(json_out)
    forced = importer.check_encoding(encoding)
    stdin = _stdin() if file == "-" else None
    st = state(ctx)
    with importer.open_source(file, stdin) as opened, st.store() as store:
        report = import_snapshot(
            store,
            opened,
            source_given=source,
            encoding=forced,
            now=now_utc(),
            actor=st.settings.actor,
            allow_empty=allow_empty,
        )
    _show_import(report, "quiet" if quiet and mode == "table" else mode)


def _devices(count: int) -> str:
    return f"{count} device" if count == 1 else f"{count} devices"


def _stdin() -> BinaryIO:
    from velory_cli.errors import InputUnreadable

    if sys.stdin is None:
        raise InputUnreadable("cannot read the export from stdin: it is closed")
    return sys.stdin.buffer


def _show_import(report: SnapshotReport, mode: str) -> None:
    from velory_cli import render

    for warning in report.warnings:
        render.warn(warning)
    if mode == "json":
        render.emit_json(report.to_dict())
        return
    if mode == "quiet":
        return
    skipped = ", ".join(
        f"{count} {reason.replace('_', ' ')}" for reason, count in report.skipped.items()
    )
    render.key_values(
        [
            ("Source", f"{report.name} ({report.kind})"),
            ("File", report.file),
            ("Devices", report.devices),
            ("Skipped", f"{report.skipped_total}" + (f" ({skipped})" if skipped else "")),
            ("Listed twice", report.duplicates),
            ("Latest check-in", report.taken_at or "none in the file"),
        ],
        title=f"MDM snapshot of {report.name} as of {report.as_of}",
    )
    previous = report.previous
    replaced = (
        f"; it replaces the snapshot as of {previous.as_of} ({_devices(previous.devices)})"
        if previous
        else ""
    )
    render.info(f"Kept {_devices(report.devices)} as {report.name}'s snapshot{replaced}.")


@mdm_app.command("check")
def check(
    ctx: typer.Context,
    stale_days: Annotated[
        int,
        typer.Option(
            "--stale-days",
            min=0,
            max=3650,
            metavar="N",
            help="A device with no check-in for more than N days is stale.",
        ),
    ] = 30,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", metavar="DATE", help="The day to count from (default today)."),
    ] = None,
    quiet: QuietOption = False,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """List what the register and the MDM snapshots disagree about.

    Kinds: released_but_enrolled, missing_from_mdm, unknown_to_velory, user_mismatch, stale.
    Exit 0 when they agree, 1 when something disagrees, 78 with no snapshot imported.

    Examples:

      velory mdm check

      velory mdm check --stale-days 60 --csv > mdm-check.csv

      velory mdm check --quiet   # cron: output only when something disagrees
    """
    from velory_cli import render
    from velory_cli.mdm.check import DISCREPANCY_KEYS, check_snapshots

    mode = output_mode(json_out, csv_out)
    day = parse_as_of(as_of)
    with state(ctx).store() as store:
        report = check_snapshots(store, today=day, stale_days=stale_days)
    if mode == "json":
        render.emit_json(report.to_dict())
    elif mode == "csv":
        render.emit_csv(report.discrepancies, DISCREPANCY_KEYS)
    elif not (quiet and not report.discrepancies):
        _check_table(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _check_table(report: CheckReport) -> None:
    from velory_cli import render
    from velory_cli.render import Column

    for snapshot in report.snapshots:
        render.info(
            f"{snapshot.name}: {_devices(snapshot.devices)} as of {snapshot.as_of} "
            f"(imported {snapshot.imported_at[:10]})"
        )
    total = len(report.discrepancies)
    render.table(
        [
            Column("Kind", "kind", style=_kind_style, no_wrap=True),
            Column("Serial", "serial", no_wrap=True),
            Column("MDM", "source_label"),
            Column("Velory user", "velory_user"),
            Column("MDM user", "mdm_user"),
            Column("MDM state", "mdm_state"),
            Column("Last check-in", "check_in", no_wrap=True),
        ],
        _rows(report.discrepancies, report),
        title=f"MDM check as of {report.as_of.isoformat()}: "
        + (f"{total} {'discrepancy' if total == 1 else 'discrepancies'}" if total else "all agree"),
        empty="No discrepancies: the register and the MDM agree.",
    )
    if total:
        counts = ", ".join(f"{count} {kind}" for kind, count in report.counts.items() if count)
        render.info(counts)


def _rows(items: Iterable[dict[str, Any]], report: CheckReport) -> Iterable[dict[str, Any]]:
    names = {snapshot.source: snapshot.name for snapshot in report.snapshots}
    for item in items:
        yield {
            **item,
            "source_label": names.get(item["source"], item["source"] or "none"),
            "check_in": (item["mdm_last_check_in"] or "")[:10],
        }


def _kind_style(row: Mapping[str, Any]) -> str | None:
    return "bold red" if row["kind"] == "released_but_enrolled" else None


def register(app: typer.Typer) -> None:
    app.add_typer(mdm_app, name="mdm")
