"""velory devices, show, hardware, export: looking at the inventory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from velory_cli.commands.common import (
    EMAIL,
    FILE,
    SERIAL,
    TEXT,
    AllOption,
    CsvOption,
    ExcludeDistributorOption,
    JsonOption,
    LimitOption,
    check_limit,
    examples,
    output_mode,
    state,
)
from velory_cli.models import DEVICE_KEYS, DEVICE_STATUSES, Device, distributor_label

if TYPE_CHECKING:
    from velory_cli.inventory import ExportedDevice


def device_rows(devices: Iterable[Device]) -> Iterable[dict[str, Any]]:
    from velory_cli.lifecycle import status_label

    # A fleet has a handful of distributors: each is labelled once, not once a device.
    labels: dict[str | None, str] = {}
    for device in devices:
        row = device.to_dict()
        row["status_label"] = status_label(device.status, device.outcome)
        label = labels.get(device.distributor)
        if label is None:
            label = labels[device.distributor] = distributor_label(device.distributor)
        row["distributor_label"] = label
        yield row


def device_columns() -> list[Any]:
    from velory_cli.render import Column

    # In the order a reader needs them: which device, whose, when it renews, then the rest.
    return [
        Column("Serial", "serial", no_wrap=True, need=1),
        Column("Model", "model", need=4),
        Column("Category", "category", need=7),
        Column("User", "user_name", need=3),
        Column("Email", "user_email", no_wrap=True, need=1),
        Column("Distributor", "distributor_label", need=5),
        Column("Source", "source", need=6),
        Column("Renewal", "renewal_date", no_wrap=True, need=1),
        Column("Status", "status_label", need=2),
    ]


def show_devices(
    devices: Iterable[Device],
    mode: str,
    *,
    title: str,
    empty: str,
    limit: int | None = None,
    all_rows: bool = False,
    total: int | None = None,
) -> None:
    """Devices as JSON, CSV (written as they come) or a table (at a terminal, the first
    ``limit``; to a pipe, every one, as they come). ``total``: how many there are."""
    from velory_cli import render

    if mode == "json":
        render.emit_json_array(device.to_dict() for device in devices)
    elif mode == "csv":
        render.emit_csv((device.to_dict() for device in devices), DEVICE_KEYS)
    else:
        render.table(
            device_columns(),
            device_rows(devices),
            title=title,
            empty=empty,
            limit=limit,
            all_rows=all_rows,
            noun="device",
            total=total,
        )


def devices(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(metavar="STATUS", help=f"Only this status: {', '.join(DEVICE_STATUSES)}."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", metavar=EMAIL, help="Only this user's devices.")
    ] = None,
    distributor: Annotated[
        str | None,
        typer.Option(metavar=TEXT, help="Only distributors whose name contains this, any case."),
    ] = None,
    exclude_distributor: ExcludeDistributorOption = None,
    search: Annotated[
        str | None,
        typer.Option(
            metavar=TEXT,
            help="Only devices whose serial, email, user's name or model contains this, any "
            "case (beyond ASCII too).",
        ),
    ] = None,
    include_removed: Annotated[
        bool, typer.Option("--include-removed", help="Removed devices too.")
    ] = False,
    limit: LimitOption = None,
    all_rows: AllOption = False,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Company assets: every device not removed."""
    from velory_cli.inventory import iter_devices
    from velory_cli.render import stdout_is_terminal
    from velory_cli.store import DeviceFilter

    mode = output_mode(json_out, csv_out)
    check_limit(limit, all_rows)
    where = DeviceFilter(
        status=status.strip().lower() if status else None,
        user_email=user,
        distributor=distributor,
        include_removed=include_removed,
        exclude_distributors=tuple(exclude_distributor or ()),
        search=search,
    )
    with state(ctx).store() as store:
        found = iter_devices(store, where)
        # At a terminal the table stops after --limit rows: the store counts the rest, so a
        # fleet of a million is not read to say how many more there are.
        total = store.count_devices(where) if mode == "table" and stdout_is_terminal() else None
        show_devices(
            found,
            mode,
            title="Company assets",
            empty="No devices.",
            limit=limit,
            all_rows=all_rows,
            total=total,
        )


def hardware(
    ctx: typer.Context,
    email: Annotated[
        str, typer.Argument(metavar=EMAIL, help="The user's email.", show_default=False)
    ],
    limit: LimitOption = None,
    all_rows: AllOption = False,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """The user's hardware view: their devices not removed."""
    from velory_cli.inventory import hardware_view

    mode = output_mode(json_out, csv_out)
    check_limit(limit, all_rows)
    with state(ctx).store() as store:
        found = hardware_view(store, email)
    show_devices(
        found,
        mode,
        title=f"Hardware of {email.strip()}",
        empty="No hardware.",
        limit=limit,
        all_rows=all_rows,
    )


def show(
    ctx: typer.Context,
    serial: Annotated[
        str, typer.Argument(metavar=SERIAL, help="The device's serial number.", show_default=False)
    ],
    json_out: JsonOption = False,
) -> None:
    """One device with its notes, history and notices."""
    from velory_cli import render
    from velory_cli.inventory import device_detail
    from velory_cli.lifecycle import status_label

    with state(ctx).store() as store:
        detail = device_detail(store, serial)
    if json_out:
        render.emit_json(detail.to_dict())
        return
    device = detail.device
    render.key_values(
        [
            ("Serial", device.serial),
            ("Model", device.model),
            ("Category", device.category),
            ("User", device.user_name),
            ("Email", device.user_email),
            ("Distributor", distributor_label(device.distributor)),
            ("Source", device.source),
            ("Purchased", device.purchase_date),
            ("Renewal", device.renewal_date),
            ("Status", status_label(device.status, device.outcome)),
            ("Replacement", device.replacement_serial),
            ("Replaces", device.replaces_serial),
        ],
        title=f"Device {device.serial}",
    )
    from velory_cli.render import Column

    render.table(
        [
            Column("At", "at", no_wrap=True, need=1),
            Column("By", "actor", need=2),
            Column("Note", "text", need=1, min_width=16),
        ],
        (note.to_dict() for note in detail.notes),
        title="Notes",
        empty="No notes.",
        all_rows=True,
        also="--json",
    )
    render.table(
        [
            Column("At", "at", no_wrap=True, need=1),
            Column("By", "actor", need=4),
            Column("Action", "action", no_wrap=True, need=1),
            Column("From", "from_status", need=3),
            Column("To", "to_status", need=2),
            Column("Details", "details_text", need=2, min_width=16),
        ],
        (
            {**entry.to_dict(), "details_text": _details_text(entry.details)}
            for entry in detail.history
        ),
        title="History",
        empty="No history.",
        all_rows=True,
        also="--json",
    )
    render.table(
        [
            Column("Kind", "kind", need=2),
            Column("To", "recipient", no_wrap=True, need=1),
            Column("Renewal", "renewal_date", no_wrap=True, need=2),
            Column("Status", "status", no_wrap=True, need=1),
            Column("Sent", "sent_at", no_wrap=True, need=3),
            Column("Error", "error", need=2),
        ],
        detail.notices,
        title="Notices",
        empty="No notices.",
        all_rows=True,
        also="--json",
    )
    if detail.mdm is not None:
        render.table(
            [
                Column("MDM", "name"),
                Column("As of", "as_of", no_wrap=True),
                Column("Enrolled", "enrolled_text"),
                Column("State", "state"),
                Column("User", "user"),
                Column("Last check-in", "last_check_in", no_wrap=True),
            ],
            (
                {**entry, "enrolled_text": "yes" if entry["enrolled"] else "no"}
                for entry in detail.mdm["sources"]
            ),
            title="MDM",
        )


def _details_text(details: dict[str, Any] | None) -> str:
    if not details:
        return ""
    parts = []
    for key, value in details.items():
        if isinstance(value, dict) and set(value) == {"old", "new"}:
            parts.append(f"{key}: {value['old']} → {value['new']}")
        else:
            parts.append(f"{key}: {value}")
    return "; ".join(parts)


def export(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="A JSON array instead of CSV.")] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar=FILE,
            help="Write to this file, not stdout.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --output.")] = False,
) -> None:
    """Every device, removed ones too, as CSV, JSON or a workbook (--output FILE.xlsx)."""
    from velory_cli import render, wording
    from velory_cli.inventory import export_devices
    from velory_cli.outputs import atomic_output, atomic_path, is_workbook_path

    with state(ctx).store() as store:
        if output is None:
            _write_export(export_devices(store), json_out, None)
            return
        if is_workbook_path(output) and not json_out:
            with atomic_path(output, force=force) as temp_name:
                count = _write_workbook(export_devices(store), temp_name)
            render.info(f"Exported {wording.count(count, 'device')} to {output}.")
            return
        with atomic_output(output, force=force) as handle:
            # A file is opened in a spreadsheet: CSV starts with a BOM, so Excel reads UTF-8.
            count = _write_export(export_devices(store), json_out, handle, bom=True)
    render.info(f"Exported {wording.count(count, 'device')} to {output}.")


def _write_export(
    devices: Iterable[ExportedDevice], as_json: bool, out: Any, *, bom: bool = False
) -> int:
    from velory_cli import render
    from velory_cli.inventory import EXPORT_KEYS

    if as_json:
        return render.emit_json_array((device.to_dict() for device in devices), out)
    count = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        for device in devices:
            count += 1
            yield device.to_row()

    render.emit_csv(rows(), EXPORT_KEYS, out, bom=bom)
    return count


def _write_workbook(devices: Iterable[ExportedDevice], path: str) -> int:
    """The export as a workbook: the JSON keys as the header, dates as date cells, every text
    a string cell (no ``'`` needed: a string cell is never a formula), the notes one cell."""
    from velory_cli.inventory import EXPORT_KEYS
    from velory_cli.outputs import WorkbookWriter

    keys = list(EXPORT_KEYS)
    dated = [keys.index(key) for key in ("purchase_date", "renewal_date") if key in keys]
    writer = WorkbookWriter(path, keys, sheet="Devices", date_columns=dated)
    count = 0
    for device in devices:
        row = device.to_row()
        writer.add([row.get(key) for key in keys])
        count += 1
    writer.close()
    return count


def register(app: typer.Typer) -> None:
    app.command(
        "devices",
        epilog=examples(
            "velory devices --user asa.lindstrom@nordlys.se",
            "velory devices --distributor atea --status renewal_started",
            "velory devices --search lindström --exclude-distributor dustin",
            "velory devices --csv > assets.csv",
        ),
    )(devices)
    app.command("show", epilog=examples("velory show PF1K2X9Z", "velory show PF1K2X9Z --json"))(
        show
    )
    app.command("hardware", epilog=examples("velory hardware asa.lindstrom@nordlys.se"))(hardware)
    app.command(
        "export",
        epilog=examples(
            "velory export --output assets.csv     # for Excel (UTF-8 with a BOM)",
            "velory export --json | jq length",
        ),
    )(export)
