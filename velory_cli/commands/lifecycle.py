"""velory start, order, deliver, confirm-return, release, retire, note, reinstate, edit.

The actions on a device during its renewal, as velory_cli.lifecycle's transitions table allows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from velory_cli.commands.common import (
    DATE,
    EMAIL,
    FILE,
    SERIAL,
    TEXT,
    JsonOption,
    examples,
    now_utc,
    state,
    today_local,
)

if TYPE_CHECKING:
    from velory_cli.lifecycle import ActionReport
    from velory_cli.render import Column

SerialArgument = Annotated[
    str, typer.Argument(metavar=SERIAL, help="The device's serial number.", show_default=False)
]
SerialsArgument = Annotated[
    list[str] | None,
    typer.Argument(metavar="SERIAL...", help="Serial numbers; or use --file.", show_default=False),
]
FileOption = Annotated[
    str | None,
    typer.Option(
        "--file",
        "-f",
        metavar=FILE,
        help="Read serials from this file, one a line ('-' reads stdin); "
        "blank lines and # comments are ignored.",
        show_default=False,
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Change nothing; say what would happen.")
]

# What each action did, as the result table and the summary say it: one for every action of
# velory_cli.lifecycle.TRANSITIONS (a test holds this).
DONE = {
    "start": "started",
    "order": "ordered",
    "deliver": "delivered",
    "confirm-return": "confirmed",
    "release": "released",
    "retire": "retired",
    "reinstate": "reinstated",
    "note": "noted",
    "edit": "edited",
}

RELEASE_MEANS = (
    "A released device is no longer in MDM or any company system: it leaves the user's "
    "hardware view and the company assets."
)
RETIRE_MEANS = (
    "A retired device leaves the user's hardware view and the company assets without being "
    "returned; velory reinstate brings it back."
)


# ---- the actions ---------------------------------------------------------------------------


def start(
    ctx: typer.Context,
    serials: SerialsArgument = None,
    file: FileOption = None,
    dry_run: DryRunOption = False,
    json_out: JsonOption = False,
) -> None:
    """The user started the renewal process: status renewal_started."""
    from velory_cli.lifecycle import start_renewals

    wanted = _serials(serials, file)
    st = state(ctx)
    with st.store() as store:
        report = start_renewals(
            store, wanted, now=now_utc(), actor=st.settings.actor, dry_run=dry_run
        )
    _finish(report, json_out)


def order(
    ctx: typer.Context,
    serial: SerialArgument,
    model: Annotated[
        str,
        typer.Option("--model", metavar=TEXT, help="The model requested in the store."),
    ],
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
        str,
        typer.Option("--new-serial", metavar=SERIAL, help="The serial of the delivered device."),
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", metavar=TEXT, help="Its model, if not the one ordered."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """The replacement arrived: it becomes an active store device of the same user."""
    from velory_cli.config import DEFAULT_TERM_MONTHS, MAX_TERM_MONTHS
    from velory_cli.lifecycle import deliver_replacement

    st = state(ctx)
    term_months = st.settings.integer(
        "term_months", DEFAULT_TERM_MONTHS, minimum=1, maximum=MAX_TERM_MONTHS
    )
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
    note: Annotated[
        str | None, typer.Option("--note", metavar=TEXT, help="Added to the device's notes.")
    ] = None,
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
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Release devices the latest MDM snapshot still lists; the history says so.",
        ),
    ] = False,
    dry_run: DryRunOption = False,
    json_out: JsonOption = False,
) -> None:
    """Mark devices as released: status removed."""
    from velory_cli.lifecycle import release_devices

    wanted = _serials(serials, file)
    st = state(ctx)
    with st.store() as store:

        def act(dry: bool) -> ActionReport:
            return release_devices(
                store, wanted, now=now_utc(), actor=st.settings.actor, dry_run=dry, force=force
            )

        report, preview = _asked_first(
            act, yes=yes, dry_run=dry_run, means=RELEASE_MEANS, verb="Release"
        )
    _finish(report, json_out, asked=preview)


def retire(
    ctx: typer.Context,
    outcome: Annotated[
        str,
        typer.Option(
            "--outcome",
            metavar="lost|stolen|broken|other",
            help="What happened to the device; kept as its outcome.",
            show_default=False,
        ),
    ],
    note: Annotated[
        str,
        typer.Option(
            "--note",
            metavar=TEXT,
            help="What happened, for the device's notes.",
            show_default=False,
        ),
    ],
    serials: SerialsArgument = None,
    file: FileOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: DryRunOption = False,
    json_out: JsonOption = False,
) -> None:
    """Take lost, stolen or broken devices out of the assets: status removed, any status."""
    from velory_cli.lifecycle import retire_devices

    wanted = _serials(serials, file)
    st = state(ctx)
    with st.store() as store:

        def act(dry: bool) -> ActionReport:
            return retire_devices(
                store,
                wanted,
                outcome=outcome,
                note=note,
                now=now_utc(),
                actor=st.settings.actor,
                dry_run=dry,
            )

        report, preview = _asked_first(
            act,
            yes=yes,
            dry_run=dry_run,
            means=RETIRE_MEANS,
            verb="Retire",
            how=f" as {outcome.strip().lower()}",
        )
    _finish(report, json_out, asked=preview)


def note(
    ctx: typer.Context,
    serial: Annotated[
        str | None,
        typer.Argument(
            metavar=SERIAL, help="The device's serial number (not with --file).", show_default=False
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Argument(
            metavar=TEXT,
            help="The note (with --file: for every serial listed).",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            metavar=FILE,
            help="Read SERIAL<TAB>TEXT lines from this file ('-' reads stdin); with one TEXT "
            "or --note for all, one serial a line. Blank lines and # comments are ignored.",
            show_default=False,
        ),
    ] = None,
    common: Annotated[
        str | None,
        typer.Option("--note", metavar=TEXT, help="The note, instead of TEXT.", show_default=False),
    ] = None,
    dry_run: DryRunOption = False,
    json_out: JsonOption = False,
) -> None:
    """Add a note to a device."""
    from velory_cli.errors import UsageError
    from velory_cli.lifecycle import add_note, add_notes, checked_text, parse_note_lines

    st = state(ctx)
    if file is None:
        if serial is None or (text is None) == (common is None):
            raise UsageError(
                "give the serial and the note (velory note SERIAL TEXT), or --file FILE"
            )
        if dry_run:
            raise UsageError("--dry-run is for --file; a note on one device is added or not")
        with st.store() as store:
            report = add_note(
                store, serial, text or common or "", now=now_utc(), actor=st.settings.actor
            )
        _finish(report, json_out)
        return
    # With --file, a single argument is the note for every serial the file lists.
    if text is not None:
        raise UsageError("with --file, give at most one TEXT (the note for every serial)")
    if serial is not None and common is not None:
        raise UsageError("give the note once: as TEXT or with --note")
    same_for_all = common if common is not None else serial
    content = _read_text(file)
    source = "stdin" if file == "-" else file
    if same_for_all is None:
        notes = parse_note_lines(content, source)
    else:
        shared = checked_text(same_for_all, "the note")
        if not shared:
            raise UsageError("the note is empty")
        from velory_cli.lifecycle import parse_serial_list

        notes = [(listed, shared) for listed in parse_serial_list(content)]
    with st.store() as store:
        report = add_notes(store, notes, now=now_utc(), actor=st.settings.actor, dry_run=dry_run)
    _finish(report, json_out)


def reinstate(
    ctx: typer.Context,
    serial: SerialArgument,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", metavar=TEXT, help="Why the release is undone; kept in the history."
        ),
    ],
    json_out: JsonOption = False,
) -> None:
    """Undo a release or a retirement: back to the status it had, the reason in the history."""
    from velory_cli.lifecycle import reinstate_device

    st = state(ctx)
    with st.store() as store:
        report = reinstate_device(store, serial, reason, now=now_utc(), actor=st.settings.actor)
    _finish(report, json_out)


def _field_option(name: str, metavar: str, help: str) -> Any:
    return typer.Option(name, metavar=metavar, help=help, show_default=False)


def edit(
    ctx: typer.Context,
    serial: SerialArgument,
    email: Annotated[
        str | None, _field_option("--email", EMAIL, "The user's email ('' clears it).")
    ] = None,
    user_name: Annotated[
        str | None, _field_option("--user-name", TEXT, "The user's name ('' clears it).")
    ] = None,
    model: Annotated[str | None, _field_option("--model", TEXT, "The model.")] = None,
    category: Annotated[str | None, _field_option("--category", TEXT, "The category.")] = None,
    distributor: Annotated[
        str | None, _field_option("--distributor", TEXT, "The distributor.")
    ] = None,
    purchase_date: Annotated[
        str | None, _field_option("--purchase-date", DATE, "The purchase date.")
    ] = None,
    renewal_date: Annotated[
        str | None, _field_option("--renewal-date", DATE, "The renewal date.")
    ] = None,
    note: Annotated[str | None, _field_option("--note", TEXT, "Added to its notes.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Change a device's user, model, distributor or dates, checked as an import checks them."""
    from velory_cli.lifecycle import edit_device

    given = {
        "user_email": email,
        "user_name": user_name,
        "model": model,
        "category": category,
        "distributor": distributor,
        "purchase_date": purchase_date,
        "renewal_date": renewal_date,
    }
    fields = {column: value for column, value in given.items() if value is not None}
    st = state(ctx)
    with st.store() as store:
        report = edit_device(
            store, serial, fields, note=note, now=now_utc(), actor=st.settings.actor
        )
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


def _asked_first(
    act: Callable[[bool], ActionReport],
    *,
    yes: bool,
    dry_run: bool,
    means: str,
    verb: str,
    how: str = "",
) -> tuple[ActionReport, ActionReport | None]:
    """Run a bulk removal (``act(dry_run)``), at a terminal only after the admin has seen
    what it would do (a dry run of it) and said yes; declined, nothing changes and the exit is
    1. Returns the report and the preview that was confirmed, if one was."""
    from velory_cli import render

    preview = None
    if not (yes or dry_run) and _interactive():
        preview = act(True)
        if preview.succeeded and not _confirm(preview, means, verb, how):
            render.info(f"Nothing {DONE[preview.action]}.")
            raise typer.Exit(1)
    return act(dry_run), preview


def _confirm(preview: ActionReport, means: str, verb: str, how: str = "") -> bool:
    """Ask before releasing or retiring, naming what will be done (the serials when few, a
    count when many) after the refusals, so the admin decides knowing both."""
    from velory_cli import render
    from velory_cli.wording import count, listing, was_were

    for result in preview.results:
        if result.error:
            render.error(f"will be refused: {result.error}")
    for warning in preview.warnings:
        render.warn(warning)
    done = DONE[preview.action]
    changed = [result.serial for result in preview.results if result.ok and result.changed]
    unchanged = [result.serial for result in preview.results if result.ok and not result.changed]
    refused = [result.serial for result in preview.results if not result.ok]
    lines = [means]
    if refused:
        lines.append(f"{listing(refused)} will be refused (see above).")
    if unchanged:
        lines.append(f"{listing(unchanged)} {was_were(len(unchanged))} {done} already.")
    what = listing(changed) if changed else count(0, "device")
    lines.append(f"{verb} {what}{how}?")
    return typer.confirm("\n".join(lines), default=False, err=True)


def _serials(arguments: list[str] | None, file: str | None) -> list[str]:
    from velory_cli.errors import UsageError
    from velory_cli.lifecycle import parse_serial_list

    serials = list(arguments or [])
    if any(not serial.strip() for serial in serials):
        raise UsageError("a serial given as an argument is empty")
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


def _finish(report: ActionReport, json_out: bool, *, asked: ActionReport | None = None) -> None:
    """Print the per-serial results (stdout), the reasons and reminders (stderr); exit 1 when a
    device was refused. ``asked``: the preview the admin confirmed, whose warnings were shown
    with the question and are not repeated."""
    from velory_cli import render

    if json_out:
        render.emit_json(report.to_dict())
    elif len(report.results) == 1:
        # One device: one line says it; a table of one row would only frame it.
        row = next(iter(_result_rows(report)))
        render.line(f"{row['serial']}: {row['result']} ({row['status_label']})")
    else:
        render.table(
            _result_columns(),
            _result_rows(report),
            title=None,
            empty="No serials.",
            all_rows=True,
            also="--json",
        )
    for result in report.results:
        if result.error:
            render.error(result.error)
    for warning in report.warnings:
        if asked is None or warning not in asked.warnings:
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
        Column("Serial", "serial", no_wrap=True, need=1),
        Column("Result", "result", style=_result_style, need=1, min_width=8),
        Column("Status", "status_label", need=2),
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


def register(app: typer.Typer) -> None:
    app.command(
        "start",
        epilog=examples(
            "velory start PF1K2X9Z",
            "velory start --file started.txt --dry-run",
        ),
    )(start)
    app.command("order", epilog=examples("velory order PF1K2X9Z --model 'MacBook Air 13\" M4'"))(
        order
    )
    app.command(
        "deliver",
        epilog=examples(
            "velory deliver PF1K2X9Z --new-serial C02ZK1QX",
            "velory deliver PF1K2X9Z --new-serial C02ZK1QX --model 'MacBook Air 15\"'",
        ),
    )(deliver)
    app.command(
        "confirm-return",
        epilog=examples(
            "velory confirm-return PF1K2X9Z",
            "velory confirm-return PF1K2X9Z --bought-out --note 'Invoice 4471'",
            "velory confirm-return --file returned.txt --dry-run",
        ),
    )(confirm_return)
    app.command(
        "release",
        epilog=examples(
            "velory release PF1K2X9Z                 # asks first at a terminal",
            "velory release --file released.txt --yes",
            "grep -v '^#' list.txt | velory release --file - --dry-run",
        ),
    )(release)
    app.command(
        "retire",
        epilog=examples(
            "velory retire PF1K2X9Z --outcome stolen --note 'Police report 2026/4471'",
            "velory retire --file lost.txt --outcome lost --note 'Lost in the move' --yes",
            "velory retire PF1K2X9Z --outcome broken --note 'Water damage' --dry-run",
        ),
    )(retire)
    app.command(
        "note",
        epilog=examples(
            "velory note PF1K2X9Z 'Screen replaced under warranty'",
            "velory note --file notes.tsv                # SERIAL<TAB>TEXT lines",
            "velory note --file lost.txt --note 'Reported lost in the move'",
        ),
    )(note)
    app.command(
        "edit",
        epilog=examples(
            "velory edit PF1K2X9Z --email bo.ek@nordlys.se --user-name 'Bo Ek'",
            "velory edit PF1K2X9Z --email '' --user-name '' --note 'Spare, in the IT room'",
            "velory edit PF1K2X9Z --renewal-date 2027-06-30",
        ),
    )(edit)
    app.command(
        "reinstate",
        epilog=examples("velory reinstate PF1K2X9Z --reason 'Released by mistake, still in use'"),
    )(reinstate)
