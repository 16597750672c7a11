"""velory start, order, deliver, confirm-return, release, note; renewals, todo, stats.

The renewal flow: the actions that move a device along it, and the views of what is due.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from velory_cli.commands.common import (
    CsvOption,
    JsonOption,
    now_utc,
    output_mode,
    parse_as_of,
    state,
    today_local,
)
from velory_cli.models import DEVICE_STATUSES, REMOVED

if TYPE_CHECKING:
    from velory_cli.lifecycle import ActionReport
    from velory_cli.render import Column

SerialArgument = Annotated[str, typer.Argument(help="The device's serial number.")]
SerialsArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Serial numbers; or use --file.", show_default=False),
]
FileOption = Annotated[
    str | None,
    typer.Option(
        "--file",
        "-f",
        help="Read serials from this file, one a line ('-' reads stdin); "
        "blank lines and # comments are ignored.",
        show_default=False,
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Change nothing; say what would happen.")
]

# What each action did, as the result table and the summary say it: one for every action of
# lifecycle.TRANSITIONS (a test holds this).
DONE = {
    "start": "started",
    "order": "ordered",
    "deliver": "delivered",
    "confirm-return": "confirmed",
    "release": "released",
    "reinstate": "reinstated",
    "note": "noted",
}

RELEASE_MEANS = (
    "A released device is no longer in MDM or any company system: it leaves the user's "
    "hardware view and the company assets."
)


# ---- the actions ---------------------------------------------------------------------------


def start(ctx: typer.Context, serial: SerialArgument, json_out: JsonOption = False) -> None:
    """The user started the renewal process: status renewal_started."""
    from velory_cli.lifecycle import start_renewal

    st = state(ctx)
    with st.store() as store:
        report = start_renewal(store, serial, now=now_utc(), actor=st.settings.actor)
    _finish(report, json_out)


def order(
    ctx: typer.Context,
    serial: SerialArgument,
    model: Annotated[str, typer.Option("--model", help="The model requested in the store.")],
    json_out: JsonOption = False,
) -> None:
    """The replacement the user requested in the store (one per renewing device)."""
    from velory_cli.lifecycle import order_replacement

    st = state(ctx)
    with st.store() as store:
        report = order_replacement(store, serial, model, now=now_utc(), actor=st.settings.actor)
    _finish(report, json_out)


def deliver(
    ctx: typer.Context,
    serial: SerialArgument,
    new_serial: Annotated[
        str, typer.Option("--new-serial", help="The serial of the delivered device.")
    ],
    model: Annotated[
        str | None, typer.Option("--model", help="Its model, if not the one ordered.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """The replacement arrived: it becomes an active store device of the same user."""
    from velory_cli.config import DEFAULT_TERM_MONTHS
    from velory_cli.lifecycle import deliver_replacement

    st = state(ctx)
    term_months = st.settings.integer("term_months", DEFAULT_TERM_MONTHS)
    with st.store() as store:
        report = deliver_replacement(
            store,
            serial,
            new_serial,
            model=model,
            today=today_local(),
            now=now_utc(),
            actor=st.settings.actor,
            term_months=term_months,
        )
    _finish(report, json_out)


def confirm_return(
    ctx: typer.Context,
    serials: SerialsArgument = None,
    file: FileOption = None,
    bought_out: Annotated[
        bool, typer.Option("--bought-out", help="The user bought the device out.")
    ] = False,
    note: Annotated[str | None, typer.Option("--note", help="Added to the device's notes.")] = None,
    dry_run: DryRunOption = False,
    json_out: JsonOption = False,
) -> None:
    """The admin confirms the old devices were returned (or bought out)."""
    from velory_cli.lifecycle import confirm_returns

    wanted = _serials(serials, file)
    st = state(ctx)
    with st.store() as store:
        report = confirm_returns(
            store,
            wanted,
            now=now_utc(),
            actor=st.settings.actor,
            bought_out=bought_out,
            note=note,
            dry_run=dry_run,
        )
    _finish(report, json_out)


def release(
    ctx: typer.Context,
    serials: SerialsArgument = None,
    file: FileOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: DryRunOption = False,
    json_out: JsonOption = False,
) -> None:
    """Mark devices as released: status removed."""
    from velory_cli import render
    from velory_cli.lifecycle import release_devices

    wanted = _serials(serials, file)
    st = state(ctx)
    with st.store() as store:
        if not (yes or dry_run) and _interactive():
            preview = release_devices(
                store, wanted, now=now_utc(), actor=st.settings.actor, dry_run=True
            )
            if preview.succeeded and not _confirm_release(preview.succeeded):
                render.info("Nothing released.")
                raise typer.Exit(1)
        report = release_devices(
            store, wanted, now=now_utc(), actor=st.settings.actor, dry_run=dry_run
        )
    _finish(report, json_out)


def note(
    ctx: typer.Context,
    serial: SerialArgument,
    text: Annotated[str, typer.Argument(help="The note.")],
    json_out: JsonOption = False,
) -> None:
    """Add a note to a device."""
    from velory_cli.lifecycle import add_note

    st = state(ctx)
    with st.store() as store:
        report = add_note(store, serial, text, now=now_utc(), actor=st.settings.actor)
    _finish(report, json_out)


def reinstate(
    ctx: typer.Context,
    serial: SerialArgument,
    reason: Annotated[
        str, typer.Option("--reason", help="Why the release is undone; kept in the history.")
    ],
    json_out: JsonOption = False,
) -> None:
    """Undo a release made by mistake: back to return_confirmed, the reason in the history."""
    from velory_cli.lifecycle import reinstate_device

    st = state(ctx)
    with st.store() as store:
        report = reinstate_device(store, serial, reason, now=now_utc(), actor=st.settings.actor)
    _finish(report, json_out)


def _interactive() -> bool:
    """Someone at a terminal who can answer: only then does release ask."""
    # A stream that is closed altogether (cron's `<&-`) is None, and certainly no terminal.
    return (
        sys.stdin is not None
        and sys.stdout is not None
        and sys.stdin.isatty()
        and sys.stdout.isatty()
    )


def _confirm_release(count: int) -> bool:
    devices = "device" if count == 1 else "devices"
    return typer.confirm(f"{RELEASE_MEANS}\nRelease {count} {devices}?", default=False, err=True)


def _serials(arguments: list[str] | None, file: str | None) -> list[str]:
    from velory_cli.errors import UsageError
    from velory_cli.lifecycle import parse_serial_list

    serials = list(arguments or [])
    if file is not None:
        serials += parse_serial_list(_read_text(file))
    elif not serials:
        raise UsageError("give the serials as arguments, or with --file FILE (--file - for stdin)")
    return serials


def _read_text(file: str) -> str:
    from velory_cli.errors import InputUnreadable

    if file == "-" and sys.stdin is None:
        raise InputUnreadable("cannot read the serials from stdin: it is closed")
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise InputUnreadable(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _finish(report: ActionReport, json_out: bool) -> None:
    """Print the per-serial results (stdout), the reasons and reminders (stderr); exit 1 when a
    device was refused."""
    from velory_cli import render

    if json_out:
        render.emit_json(report.to_dict())
    else:
        render.table(_result_columns(), _result_rows(report), title=None, empty="No serials.")
    for result in report.results:
        if result.error:
            render.error(result.error)
    for warning in report.warnings:
        render.warn(warning)
    for message in report.messages:
        render.info(message)
    if not json_out:
        render.info(_summary(report))
    if report.failed:
        raise typer.Exit(1)


def _result_columns() -> list[Column]:
    from velory_cli.render import Column

    return [
        Column("Serial", "serial", no_wrap=True),
        Column("Result", "result", style=_result_style),
        Column("Status", "status_label"),
    ]


def _result_style(row: Mapping[str, Any]) -> str | None:
    return "red" if not row["ok"] else None


def _result_rows(report: ActionReport) -> Iterable[dict[str, Any]]:
    from velory_cli.lifecycle import status_label

    done = DONE[report.action]
    for result in report.results:
        if not result.ok:
            outcome = "refused"
        elif not result.changed:
            outcome = "unchanged"
        else:
            outcome = f"would be {done}" if report.dry_run else done
        row = result.to_dict()
        row["result"] = outcome
        row["status_label"] = (
            status_label(result.status, result.outcome) if result.status else "unknown"
        )
        yield row


def _summary(report: ActionReport) -> str:
    done = DONE[report.action]
    if report.dry_run:
        head = f"Dry run: {report.succeeded} would be {done}"
        tail = "; nothing was changed."
    else:
        head = f"{report.succeeded} {done}"
        tail = "."
    return f"{head}, {report.unchanged} unchanged, {report.failed} refused{tail}"


# ---- what is due ---------------------------------------------------------------------------

# The statuses renewals may be asked for: it never lists removed devices.
_NOT_REMOVED = tuple(status for status in DEVICE_STATUSES if status != REMOVED)


def renewals(
    ctx: typer.Context,
    within: Annotated[
        int, typer.Option("--within", min=0, help="Days ahead of --as-of to look.")
    ] = 30,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The day to count from (default today).")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Only this user's devices (email).")
    ] = None,
    distributor: Annotated[
        str | None, typer.Option(help="Only distributors whose name contains this, any case.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(help=f"Only this status: {', '.join(_NOT_REMOVED)}."),
    ] = None,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Devices renewing within --within days of --as-of, overdue ones too, soonest first."""
    from velory_cli import render
    from velory_cli.renewals import RENEWAL_KEYS, renewals_due
    from velory_cli.store import DeviceFilter

    mode = output_mode(json_out, csv_out)
    day = parse_as_of(as_of)
    where = DeviceFilter(
        status=status.strip().lower() if status else None,
        user_email=user,
        distributor=distributor,
    )
    with state(ctx).store() as store:
        due = renewals_due(store, as_of=day, within_days=within, where=where)
    if mode == "json":
        render.emit_json([renewal.to_dict() for renewal in due])
    elif mode == "csv":
        render.emit_csv((renewal.to_dict() for renewal in due), RENEWAL_KEYS)
    else:
        render.table(
            _renewal_columns(),
            _with_labels(renewal.to_dict() for renewal in due),
            title=f"Renewals up to {within} days after {day.isoformat()}",
            empty="No renewals due.",
        )


def _renewal_columns() -> list[Column]:
    from velory_cli.render import Column

    return [
        Column("Days left", "days_left", justify="right", style=_days_style, no_wrap=True),
        Column("Renewal", "renewal_date", no_wrap=True),
        Column("Serial", "serial", no_wrap=True),
        Column("Model", "model"),
        Column("User", "user_name"),
        Column("Email", "user_email"),
        Column("Distributor", "distributor_label"),
        Column("Status", "status_label"),
        Column("Notice", "notice_status"),
    ]


def _days_style(row: Mapping[str, Any]) -> str | None:
    days = int(row["days_left"])
    return "red" if days < 0 else "yellow" if days <= 7 else None


def _with_labels(rows: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Rows with the status as Velory's screens word it, and Dustin's devices marked."""
    from velory_cli.lifecycle import status_label
    from velory_cli.models import distributor_label

    for row in rows:
        row["status_label"] = status_label(row["status"], row["outcome"])
        row["distributor_label"] = distributor_label(row["distributor"])
        yield row


def todo(ctx: typer.Context, json_out: JsonOption = False, csv_out: CsvOption = False) -> None:
    """What waits for an admin: returns to confirm, devices to release, deliveries awaited."""
    from velory_cli import render
    from velory_cli.renewals import TODO_KEYS, todo_list

    mode = output_mode(json_out, csv_out)
    with state(ctx).store() as store:
        items = todo_list(store)
    if mode == "json":
        render.emit_json([item.to_dict() for item in items])
    elif mode == "csv":
        render.emit_csv((item.to_dict() for item in items), TODO_KEYS)
    else:
        from velory_cli.render import Column

        render.table(
            [
                Column("Action", "action", no_wrap=True),
                Column("Since", "since", no_wrap=True),
                Column("Serial", "serial", no_wrap=True),
                Column("Model", "model"),
                Column("User", "user_name"),
                Column("Email", "user_email"),
                Column("Status", "status_label"),
                Column("Replacement", "replacement_serial"),
            ],
            _with_labels(item.to_dict() for item in items),
            title="Waiting for an admin",
            empty="Nothing to do.",
        )


def stats(
    ctx: typer.Context,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The month to start from (default today).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Devices by status and distributor, and renewals per month for the next 12 months."""
    from velory_cli import render
    from velory_cli.lifecycle import STATUS_LABELS
    from velory_cli.models import distributor_label
    from velory_cli.render import Column
    from velory_cli.stats import fleet_stats

    day = parse_as_of(as_of)
    with state(ctx).store() as store:
        result = fleet_stats(store, as_of=day)
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.table(
        [Column("Status", "label"), Column("Devices", "count", justify="right")],
        (
            {"label": STATUS_LABELS.get(status, status), "count": count}
            for status, count in result.by_status.items()
        ),
        title="Devices by status",
    )
    render.table(
        [Column("Distributor", "name"), Column("Devices", "count", justify="right")],
        (
            {"name": distributor_label(name), "count": count}
            for name, count in result.by_distributor.items()
        ),
        title="Company assets by distributor",
        empty="No company assets.",
    )
    render.bar_chart(result.renewals_by_month, title="Renewals per month")


def register(app: typer.Typer) -> None:
    app.command("start")(start)
    app.command("order")(order)
    app.command("deliver")(deliver)
    app.command("confirm-return")(confirm_return)
    app.command("release")(release)
    app.command("note")(note)
    app.command("reinstate")(reinstate)
    app.command("renewals")(renewals)
    app.command("todo")(todo)
    app.command("stats")(stats)
