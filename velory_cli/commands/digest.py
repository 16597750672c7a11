"""velory digest: one mail to the admins with what waits for them (the cron job, beside the
notices)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from velory_cli.commands.common import (
    DIR,
    EMAIL,
    AsOfOption,
    JsonOption,
    QuietOption,
    examples,
    now_utc,
    parse_as_of,
    state,
)

if TYPE_CHECKING:
    from velory_cli.digest import DigestReport, RecipientOutcome


def digest(
    ctx: typer.Context,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            metavar=EMAIL,
            help="Send it to this address; repeat for several (default VELORY_ADMIN_EMAIL, "
            "else admin_email in config.toml).",
            show_default=False,
        ),
    ] = None,
    as_of: AsOfOption = None,
    outbox: Annotated[
        Path | None,
        typer.Option(
            "--outbox",
            metavar=DIR,
            help="Write the mail as an .eml file into this folder instead of using SMTP.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the mail; send and record nothing.")
    ] = False,
    quiet: QuietOption = False,
    json_out: JsonOption = False,
) -> None:
    """Mail the admins what waits for them: users to chase, returns, releases, failures, MDM.

    One mail per recipient and day, however often it runs: a second run that day sends
    nothing. Exit codes as for notices send (78 also for no recipient).
    """
    from velory_cli import render
    from velory_cli.digest import compose_digest, digest_recipients, gather_digest, send_digest
    from velory_cli.mailer import resolve_delivery
    from velory_cli.mails import mail_style
    from velory_cli.notices import claim_owner

    st = state(ctx)
    settings = st.settings
    day = parse_as_of(as_of)
    recipients = digest_recipients(to or [], settings.value("admin_email"))
    delivery = resolve_delivery(settings, outbox=outbox, dry_run=dry_run)
    style = mail_style(settings, delivery.sender)
    for warning in delivery.warnings:
        render.warn(warning)
    if not dry_run:
        delivery.check()
    transport = None if dry_run else delivery.transport()
    with st.store() as store:
        found = gather_digest(store, today=day)
        mail = compose_digest(found, style)
        report = send_digest(
            store,
            found,
            mail,
            recipients,
            sender=delivery.sender,
            transport=transport,
            clock=now_utc,
            owner=claim_owner(),
        )
    _show_report(report, json_out=json_out, quiet=quiet)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _show_report(report: DigestReport, *, json_out: bool, quiet: bool) -> None:
    """The JSON document (or, in a dry run, the mail) on stdout; warnings and errors on
    stderr; a line per recipient: on stdout, or stderr with --json; none with --quiet when all
    went well."""
    from velory_cli import render

    if json_out:
        render.emit_json(report.to_dict())
    elif report.dry_run and not (quiet and report.exit_code == 0):
        recipients = ", ".join(outcome.recipient for outcome in report.outcomes)
        render.line(f"To: {recipients}")
        render.line(f"Subject: {report.mail.subject}")
        render.line()
        render.line(report.mail.text.rstrip("\n"))
        render.line()
    for warning in report.warnings:
        render.warn(warning)
    for message in report.errors:
        render.error(message)
    if quiet and report.exit_code == 0:
        return
    for outcome in report.outcomes:
        if json_out or quiet:
            render.info(_summary(outcome, report))
        else:
            render.line(_summary(outcome, report))


def _summary(outcome: RecipientOutcome, report: DigestReport) -> str:
    from velory_cli.digest import SKIPPED, WOULD_SEND

    counts = report.mail.subject.removeprefix("velory: ")
    if outcome.status == WOULD_SEND:
        return f"Dry run: the digest would go to {outcome.recipient} ({counts}); nothing sent."
    if outcome.status == SKIPPED:
        if (outcome.error or "").startswith("already sent"):
            return f"Digest already sent today to {outcome.recipient}."
        return f"Digest to {outcome.recipient} not sent by this run: {outcome.error}."
    if outcome.status == "sent":
        return f"Digest sent to {outcome.recipient} ({counts})."
    if outcome.status == "failed":
        return f"Digest to {outcome.recipient} failed: {outcome.error}"
    return f"Digest to {outcome.recipient} not sent; the next run sends it: {outcome.error}"


def register(app: typer.Typer) -> None:
    app.command(
        "digest",
        epilog=examples(
            "velory digest --quiet                     # cron, Monday mornings",
            "velory digest --dry-run                   # show the mail, send nothing",
            "velory digest --to it@example.com --outbox ./mails",
        ),
    )(digest)
