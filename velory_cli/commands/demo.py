"""velory demo: a guided run of the whole flow on the sample data, in a throwaway store."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from velory_cli.commands.common import examples, today_local


@contextmanager
def _isolated_env(home: Path) -> Iterator[None]:
    """The demo's own app directory: the admin's config, store and mail server stay out of it."""
    saved = {key: value for key, value in os.environ.items() if key.startswith("VELORY_")}
    for key in saved:
        del os.environ[key]
    os.environ["VELORY_HOME"] = str(home)
    os.environ["VELORY_ACTOR"] = "demo-admin"
    try:
        yield
    finally:
        for key in [key for key in os.environ if key.startswith("VELORY_")]:
            del os.environ[key]
        os.environ.update(saved)


def _step(
    ctx: typer.Context, number: int, title: str, explanation: str, args: Sequence[str]
) -> int:
    """Print the step, the command an admin would type, and run it for real through the app
    running the demo (the root of ``ctx``): importing the app here would be a cycle, as the
    app is what imports the commands."""
    from velory_cli import render

    render.line()
    render.heading(f"Step {number}. {title}")
    if explanation:
        render.line(explanation)
    render.line("$ velory " + " ".join(_quote(arg) for arg in args), "green")
    velory = ctx.find_root().command
    try:
        code = velory.main(args=list(args), prog_name="velory", standalone_mode=False)
    except SystemExit as exc:  # a usage error inside the demo is a bug; show it, go on
        code = int(exc.code or 0)
    return int(code or 0)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def demo(
    ctx: typer.Context,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the demo's store and outbox, and say where.")
    ] = False,
) -> None:
    """A guided run of the whole renewal flow on the sample data, in a throwaway store."""
    from velory_cli import render
    from velory_cli.demo import write_shifted_sample

    today = today_local()
    workdir = Path(tempfile.mkdtemp(prefix="velory-demo-"))
    try:
        inventory = workdir / "devices.csv"
        count = write_shifted_sample(inventory, today)
        render.heading("velory demo: the renewal of a device bought outside Velory, start to end")
        render.line(
            f"A throwaway store in {workdir}. The sample inventory of Nordlys AB ({count} "
            f"devices) is moved in time so that its renewals fall around today, {today}."
        )
        with _isolated_env(workdir / "home"):
            _tour(ctx, workdir, inventory, today)
    finally:
        if not keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    render.line()
    if keep:
        render.line(f"The demo's store and outbox are kept in {workdir}.")
        render.line(f"Try: velory --db {workdir / 'home' / 'velory.db'} devices --include-removed")
    else:
        render.line("Done. The throwaway store is gone; run `velory demo --keep` to look around.")


def _tour(ctx: typer.Context, workdir: Path, inventory: Path, today: date) -> None:
    from velory_cli.demo import choose_cast
    from velory_cli.store import Store

    outbox = workdir / "outbox"
    _step(
        ctx,
        1,
        "Import the inventory",
        "Every device becomes an active company asset. The first import creates the store:"
        " until then, every other command says there is none (exit 74).",
        ["import", str(inventory)],
    )
    with Store.open(workdir / "home" / "velory.db") as store:
        cast = choose_cast(store.devices(), today)
    device = cast.renewing
    serial, email = device.serial, device.user_email or ""
    who = device.user_name or email
    _step(
        ctx,
        2,
        "What is up for renewal",
        "Devices due within 30 days, overdue ones first. Dustin's follow Dustin's process.",
        ["renewals"],
    )
    _step(
        ctx,
        3,
        "Mail the renewal notices (cron does this every day)",
        "Due devices get one email each; here they go to a folder instead of a server.",
        ["notices", "send", "--outbox", str(outbox)],
    )
    _show_first_mail(outbox, email)
    _step(
        ctx,
        4,
        f"{who}'s hardware view",
        "What the user sees before the renewal.",
        ["hardware", email],
    )
    _step(
        ctx,
        5,
        "The user starts the process",
        "The distributor now contacts the user about returning or buying out the device.",
        ["start", serial],
    )
    if cast.dustin is not None:
        _step(
            ctx,
            6,
            "A Dustin device cannot be started here",
            "It follows Dustin's own process, so velory refuses it and says why.",
            ["start", cast.dustin.serial],
        )
    handed_on = cast.handed_on
    if handed_on is not None:
        _step(
            ctx,
            7,
            "A device changes hands",
            f"{handed_on.user_name or handed_on.user_email} left; the device goes to a "
            "colleague. The change is checked as an import would check it and kept in the "
            "history; the new user gets the renewal notice too.",
            [
                "edit",
                handed_on.serial,
                "--email",
                "kim.berg@nordlys.se",
                "--user-name",
                "Kim Berg",
            ],
        )
    if cast.dustin is not None:
        _step(
            ctx,
            8,
            "A lost device leaves the assets",
            "Any device, Dustin's too, can be retired as lost, stolen or broken; the note "
            "is required, and velory reinstate brings it back if it turns up.",
            [
                "retire",
                cast.dustin.serial,
                "--outcome",
                "lost",
                "--note",
                "Lost on a trip",
                "--yes",
            ],
        )
    _step(
        ctx,
        9,
        "The store opens: the user requests a new device",
        "One replacement per device.",
        ["order", serial, "--model", 'Apple MacBook Air 13" M4'],
    )
    _step(
        ctx,
        10,
        "The new device is delivered",
        "It becomes an active store device of the same user; personal data on the old one "
        "must be moved or deleted, and the user gets a reminder.",
        ["deliver", serial, "--new-serial", f"VLY-{serial[-6:]}"],
    )
    _step(
        ctx,
        11,
        "The next notices run sends the personal-data reminder",
        "And the renewal notice to the device's new user, once.",
        ["notices", "send", "--outbox", str(outbox)],
    )
    _step(ctx, 12, "What waits for the admin", "", ["todo"])
    _step(
        ctx,
        13,
        "The admin confirms the return: this one was bought out",
        "The outcome and the note are kept with the device.",
        [
            "confirm-return",
            serial,
            "--bought-out",
            "--note",
            "Bought out by the user via the distributor",
        ],
    )
    _step(
        ctx,
        14,
        "Mark as released",
        "No longer in MDM or any company system: the device leaves the company's assets "
        "and the user's hardware view.",
        ["release", serial, "--yes"],
    )
    _step(
        ctx,
        15,
        f"{who}'s hardware view afterwards",
        "Only the new device is left.",
        ["hardware", email],
    )
    _step(
        ctx,
        16,
        "The old device's record: notes, history, notices",
        "It stays in the store.",
        ["show", serial],
    )
    _step(ctx, 17, "The fleet at a glance", "", ["stats"])


def _show_first_mail(outbox: Path, email: str) -> None:
    from email import policy
    from email.parser import BytesParser

    from velory_cli import render
    from velory_cli.wording import count

    mails = sorted(outbox.glob("*.eml"))
    chosen = None
    for path in mails:
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if email.lower() in str(message["To"]).lower():
            chosen = message
            break
    if chosen is None:
        return
    render.line(f"{count(len(mails), 'mail')} in the outbox. The one to {email}:", "bold")
    render.line(f"Subject: {chosen['Subject']}")
    render.line()
    body = chosen.get_body(preferencelist=("plain",))
    if body is not None:
        render.line(wrap_mail(body.get_content().strip(), render.console().width))


def wrap_mail(text: str, width: int) -> str:
    """A mail's text wrapped at words to ``width`` (at most 78, a mail's own line length).

    velory's own templates keep each paragraph on one line, which is wrapped to the width; a
    company's template that breaks its paragraphs at about 90 columns has them joined again
    first. A list item's continuation lines keep its indent, so "1." and "-" items still read
    as lists. Short lines (headings, greetings) stay as written.
    """
    import re
    import textwrap

    width = max(20, min(width, 78))
    out: list[str] = []
    # The paragraph being joined: its first line's prefix, its continuation indent, its words.
    first = indent = ""
    words: list[str] = []
    previous = ""

    def flush() -> None:
        if words:
            out.extend(
                textwrap.wrap(
                    " ".join(words),
                    width,
                    initial_indent=first,
                    subsequent_indent=indent,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
            words.clear()

    for line in text.splitlines():
        lead = re.match(r"(\s*)((?:[-*•]|\d+\.)\s+)?", line)
        assert lead is not None  # the pattern matches any line
        carried_on = (
            words
            and line.strip()
            and not lead.group(2)
            and len(previous) > 60
            and len(lead.group(1)) == len(indent)
        )
        if carried_on:
            words.extend(line.split())
        else:
            flush()
            if not line.strip():
                out.append("")
            else:
                first = lead.group(0)
                indent = " " * len(first)
                words.extend(line[lead.end() :].split())
        previous = line
    flush()
    return "\n".join(out)


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        epilog=examples("velory demo", "velory demo --keep     # then look around in its store"),
    )(demo)
