"""velory renewals, todo, stats: views of what is due, for a given day.

What renews soon, what waits for an admin, and the fleet in numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from velory_cli.commands.common import (
    DATE,
    EMAIL,
    TEXT,
    AllOption,
    AsOfOption,
    CsvOption,
    ExcludeDistributorOption,
    JsonOption,
    LimitOption,
    N,
    check_limit,
    examples,
    output_mode,
    parse_as_of,
    state,
)
from velory_cli.config import MAX_DAYS_AHEAD
from velory_cli.models import DEVICE_STATUSES, REMOVED

if TYPE_CHECKING:
    from datetime import date

    from velory_cli.render import Column
    from velory_cli.renewals import Renewal

# The statuses renewals may be asked for: it never lists removed devices.
_NOT_REMOVED = tuple(status for status in DEVICE_STATUSES if status != REMOVED)


def renewals(
    ctx: typer.Context,
    within: Annotated[
        int,
        typer.Option(
            "--within",
            metavar=N,
            min=0,
            max=MAX_DAYS_AHEAD,
            help="Days ahead of --as-of to look.",
        ),
    ] = 30,
    as_of: AsOfOption = None,
    user: Annotated[
        str | None, typer.Option("--user", metavar=EMAIL, help="Only this user's devices.")
    ] = None,
    distributor: Annotated[
        str | None,
        typer.Option(metavar=TEXT, help="Only distributors whose name contains this, any case."),
    ] = None,
    exclude_distributor: ExcludeDistributorOption = None,
    status: Annotated[
        str | None,
        typer.Option(metavar="STATUS", help=f"Only this status: {', '.join(_NOT_REMOVED)}."),
    ] = None,
    limit: LimitOption = None,
    all_rows: AllOption = False,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Devices renewing within --within days of --as-of, overdue ones too, soonest first."""
    from velory_cli.renewals import iter_renewals_due
    from velory_cli.store import DeviceFilter

    mode = output_mode(json_out, csv_out)
    check_limit(limit, all_rows)
    day = parse_as_of(as_of)
    where = DeviceFilter(
        status=status.strip().lower() if status else None,
        user_email=user,
        distributor=distributor,
        exclude_distributors=tuple(exclude_distributor or ()),
    )
    with state(ctx).store() as store:
        due = iter_renewals_due(store, as_of=day, within_days=within, where=where)
        _show_renewals(due, mode, within=within, day=day, limit=limit, all_rows=all_rows)


def _show_renewals(
    due: Iterable[Renewal],
    mode: str,
    *,
    within: int,
    day: date,
    limit: int | None,
    all_rows: bool,
) -> None:
    from velory_cli import render
    from velory_cli.renewals import RENEWAL_KEYS
    from velory_cli.wording import count

    if mode == "json":
        render.emit_json_array(renewal.to_dict() for renewal in due)
    elif mode == "csv":
        render.emit_csv((renewal.to_dict() for renewal in due), RENEWAL_KEYS)
    else:
        render.table(
            _renewal_columns(),
            _with_labels(renewal.to_dict() for renewal in due),
            title=f"Renewals up to {count(within, 'day')} after {day.isoformat()}",
            empty="No renewals due.",
            limit=limit,
            all_rows=all_rows,
            noun="device",
        )


def _renewal_columns() -> list[Column]:
    from velory_cli.render import Column

    # In the order a reader needs them: how soon, which device, whose; then the rest.
    return [
        Column(
            "Days left",
            "days_left",
            justify="right",
            style=_days_style,
            need=1,
            min_width=4,
        ),
        Column("Renewal", "renewal_date", no_wrap=True, need=1),
        Column("Serial", "serial", no_wrap=True, need=1),
        Column("Model", "model", need=5),
        Column("User", "user_name", need=4),
        Column("Email", "user_email", no_wrap=True, need=1),
        Column("Distributor", "distributor_label", need=6),
        Column("Status", "status_label", need=2),
        Column("Notice", "notice_status", no_wrap=True, need=3),
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


def todo(
    ctx: typer.Context,
    as_of: AsOfOption = None,
    exclude_distributor: ExcludeDistributorOption = None,
    limit: LimitOption = None,
    all_rows: AllOption = False,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """What waits for an admin: returns, releases, deliveries awaited, users to chase."""
    from velory_cli import render
    from velory_cli.mdm.check import discrepancy_counts, discrepancy_line
    from velory_cli.renewals import TODO_KEYS, todo_list
    from velory_cli.store import DeviceFilter

    mode = output_mode(json_out, csv_out)
    check_limit(limit, all_rows)
    day = parse_as_of(as_of)
    where = DeviceFilter(exclude_distributors=tuple(exclude_distributor or ()))
    with state(ctx).store() as store:
        items = todo_list(store, today=day, where=where)
        mdm_line = discrepancy_line(discrepancy_counts(store, today=day))
    if mode == "json":
        render.emit_json_array(item.to_dict() for item in items)
    elif mode == "csv":
        render.emit_csv((item.to_dict() for item in items), TODO_KEYS)
    else:
        from velory_cli.render import Column

        render.table(
            [
                Column("Action", "action", no_wrap=True, need=1),
                Column("Since", "since", no_wrap=True, need=2),
                Column("Serial", "serial", no_wrap=True, need=1),
                Column("Model", "model", need=5),
                Column("User", "user_name", need=4),
                Column("Email", "user_email", no_wrap=True, need=1),
                Column("Status", "status_label", need=6),
                Column("Replacement", "replacement_serial", no_wrap=True, need=3),
                Column("Notice", "notice_status", no_wrap=True, need=3),
            ],
            _with_labels(item.to_dict() for item in items),
            title="Waiting for an admin",
            empty="Nothing to do.",
            limit=limit,
            all_rows=all_rows,
            noun="device",
        )
    if mdm_line:
        render.info(mdm_line)


def stats(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar=DATE,
            help="The month to start from (default today), written like 2026-12-01.",
            show_default=False,
        ),
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
    from velory_cli.mdm.check import discrepancy_line

    with state(ctx).store() as store:
        result = fleet_stats(store, as_of=day)
    mdm_line = discrepancy_line(result.mdm_discrepancies)
    if json_out:
        render.emit_json(result.to_dict())
        if mdm_line:
            render.info(mdm_line)
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
    if mdm_line:
        render.info(mdm_line)


def register(app: typer.Typer) -> None:
    app.command(
        "renewals",
        epilog=examples(
            "velory renewals                               # the next 30 days, overdue first",
            "velory renewals --within 90 --as-of 01.01.2027",
            "velory renewals --exclude-distributor dustin --csv > renewals.csv",
        ),
    )(renewals)
    app.command(
        "todo",
        epilog=examples(
            "velory todo",
            "velory todo --json | jq '.[] | select(.action == \"chase-user\") | .user_email'",
        ),
    )(todo)
    app.command("stats", epilog=examples("velory stats", "velory stats --as-of 2027-01-01"))(stats)
