"""velory notices send (the cron job) and velory notices list (the ledger)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from velory_cli.commands.common import (
    DATE,
    DIR,
    AllOption,
    CsvOption,
    JsonOption,
    LimitOption,
    N,
    QuietOption,
    check_limit,
    examples,
    group,
    now_utc,
    output_mode,
    parse_as_of,
    state,
)
from velory_cli.config import MAX_DAYS_AHEAD

if TYPE_CHECKING:
    from velory_cli.notices import SendReport
    from velory_cli.render import Column

notices_app = group(
    "notices",
    "Mail the due notices (cron), list them, retry failed ones.",
)

# How each outcome reads in the dry-run table.
WOULD = {"pending": "would send", "cancelled": "would cancel", "skipped": "skipped"}


@notices_app.command(
    "send",
    epilog=examples(
        "velory notices send                       # the daily cron job",
        "velory notices send --dry-run             # what would go, changing nothing",
        "velory notices send --outbox ./mails      # .eml files instead of SMTP",
    ),
)
def send(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar=DATE,
            help="The day to send for (default today's local date), like 2026-12-01.",
            show_default=False,
        ),
    ] = None,
    lead_days: Annotated[
        int | None,
        typer.Option(
            "--lead-days",
            metavar=N,
            min=0,
            max=MAX_DAYS_AHEAD,
            help="Days before the renewal date a notice is due (default lead_days, else 30).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Write and send nothing; show what would be sent.")
    ] = False,
    outbox: Annotated[
        Path | None,
        typer.Option(
            "--outbox",
            metavar=DIR,
            help="Write one .eml file per mail into this folder instead of using SMTP.",
            show_default=False,
        ),
    ] = None,
    quiet: QuietOption = False,
    json_out: JsonOption = False,
) -> None:
    """Mail every notice that is due: the cron job, once a day."""
    from velory_cli import render
    from velory_cli.mailer import resolve_delivery
    from velory_cli.mails import mail_style
    from velory_cli.notices import claim_owner, notice_rules, send_notices

    st = state(ctx)
    settings = st.settings
    rules = notice_rules(settings, parse_as_of(as_of), lead_days)
    delivery = resolve_delivery(settings, outbox=outbox, dry_run=dry_run)
    style = mail_style(settings, delivery.sender)
    for warning in delivery.warnings:
        render.warn(warning)
    if not dry_run:
        delivery.check()
    transport = None if dry_run else delivery.transport()
    with st.store() as store:
        report = send_notices(
            store, rules, style, transport=transport, clock=now_utc, owner=claim_owner()
        )
    _show_report(report, json_out=json_out, quiet=quiet)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _show_report(report: SendReport, *, json_out: bool, quiet: bool) -> None:
    """The result on stdout (JSON, or the dry run's table), warnings and errors on stderr, and
    one summary line: on stdout, or stderr with --json; none with --quiet when all went well."""
    from velory_cli import render

    if json_out:
        render.emit_json(report.to_dict())
    elif report.dry_run and not (quiet and report.exit_code == 0):
        render.table(
            _dry_run_columns(),
            _dry_run_rows(report),
            title="Notices (dry run)",
            empty="No notices due." if report.renewal_notices else _NOTHING_WHILE_OFF,
        )
    for warning in report.warnings:
        render.warn(warning)
    for message in report.errors:
        render.error(message)
    if quiet and report.exit_code == 0:
        return
    if json_out or quiet:
        render.info(_summary(report))
    else:
        render.line(_summary(report))


# What a run says when renewal notices are turned off: an admin who reads "No notices due."
# would think the fleet has nothing due.
_TURNED_OFF = "Renewal notices are turned off (renewal_notices = false): none queued or sent"
_NOTHING_WHILE_OFF = f"{_TURNED_OFF}; no personal-data reminders due."


def _summary(report: SendReport) -> str:
    from velory_cli.wording import count

    counts = report.to_dict()
    if report.dry_run:
        pending = counts["pending"]
        line = (
            f"Dry run: {count(pending, 'notice')} would be sent, {counts['cancelled']} "
            f"cancelled, {counts['skipped']} skipped (no email); nothing was written or sent."
        )
    elif not report.outcomes:
        return "No notices due." if report.renewal_notices else _NOTHING_WHILE_OFF
    else:
        sent = counts["sent"]
        mails = f" in {count(report.mails, 'mail')}" if sent else ""
        line = (
            f"Sent {count(sent, 'notice')}{mails}; {counts['failed']} failed, "
            f"{counts['pending']} pending, {counts['skipped']} skipped (no email), "
            f"{counts['cancelled']} cancelled."
        )
    return line if report.renewal_notices else f"{line} {_TURNED_OFF}."


def _dry_run_columns() -> list[Column]:
    from velory_cli.render import Column

    return [
        Column("Serial", "serial", no_wrap=True, need=1),
        Column("Kind", "kind", no_wrap=True, need=2),
        Column("To", "recipient", no_wrap=True, need=1),
        Column("Renewal", "renewal_date", no_wrap=True, need=3),
        Column("Would", "would", need=1, min_width=6),
        Column("Why", "error", need=2, min_width=16),
    ]


def _dry_run_rows(report: SendReport) -> Iterable[dict[str, Any]]:
    for outcome in report.outcomes:
        row = outcome.to_dict()
        row["would"] = WOULD.get(outcome.status, outcome.status)
        yield row


@notices_app.command(
    "list",
    epilog=examples(
        "velory notices list --status failed",
        "velory notices list --csv > notices.csv",
    ),
)
def list_command(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            metavar="STATE", help="Only this state: pending, sending, sent, failed, cancelled."
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(metavar="KIND", help="Only this kind: renewal, personal_data, reminder_DAYS."),
    ] = None,
    limit: LimitOption = None,
    all_rows: AllOption = False,
    json_out: JsonOption = False,
    csv_out: CsvOption = False,
) -> None:
    """Every notice with its state: what was sent, when, to whom, and what failed."""
    from velory_cli import render
    from velory_cli.models import NOTICE_KEYS
    from velory_cli.notices import list_notices

    mode = output_mode(json_out, csv_out)
    check_limit(limit, all_rows)
    with state(ctx).store() as store:
        found = list_notices(store, status=status, kind=kind)
    rows = [notice.to_dict() for notice in found]
    if mode == "json":
        render.emit_json(rows)
    elif mode == "csv":
        render.emit_csv(rows, NOTICE_KEYS)
    else:
        render.table(
            _list_columns(),
            rows,
            title="Notices",
            empty="No notices.",
            limit=limit,
            all_rows=all_rows,
            noun="notice",
        )


def _list_columns() -> list[Column]:
    from velory_cli.render import Column

    return [
        Column("Serial", "serial", no_wrap=True, need=1),
        Column("Kind", "kind", no_wrap=True, need=2),
        Column("To", "recipient", no_wrap=True, need=1),
        Column("Renewal", "renewal_date", no_wrap=True, need=3),
        Column("Status", "status", style=_status_style, no_wrap=True, need=1),
        Column("Tries", "attempts", justify="right", no_wrap=True, need=6),
        Column("Sent", "sent_at", no_wrap=True, need=5),
        Column("Error", "error", need=4, min_width=16),
    ]


def _status_style(row: Mapping[str, Any]) -> str | None:
    return {"failed": "red", "pending": "yellow", "sending": "yellow"}.get(row["status"])


@notices_app.command("retry")
def retry(
    ctx: typer.Context,
    serials: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[SERIAL]...",
            help="The devices whose failed notices to send again.",
            show_default=False,
        ),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every failed notice.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Put failed notices back to pending: the next notices send sends them.

    For when the cause is gone (the server's setting fixed, the mailbox back). Attempts and
    the last error stay in the ledger.

    Examples: velory notices retry PF1K2X9Z · velory notices retry --all --json
    """
    from velory_cli import render
    from velory_cli.notices import retry_failed

    with state(ctx).store() as store:
        report = retry_failed(store, serials or [], every=every, now=now_utc())
    if json_out:
        render.emit_json(report.to_dict())
    else:
        rows = [notice.to_dict() for notice in report.notices]
        render.table(_list_columns(), rows, title="Back to pending", empty="No failed notices.")
    for result in report.results:
        if result.error:
            render.error(result.error)
    count = len(report.notices)
    devices = report.succeeded
    summary = (
        f"{count} {'notice' if count == 1 else 'notices'} of {devices} "
        f"{'device' if devices == 1 else 'devices'} back to pending"
    )
    if report.unchanged:
        summary += f", {report.unchanged} without a failed notice"
    if report.failed:
        summary += f", {report.failed} refused"
    render.info(summary + ("; the next velory notices send sends them." if count else "."))
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(notices_app, name="notices")
