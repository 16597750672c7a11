"""The mails as a mail program reads them: sent by `velory notices send` to a real SMTP server
or written to the outbox, then parsed with the email package's default policy."""

from __future__ import annotations

import email
import os
from datetime import date, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Invoke
from tests.factory import add_device
from tests.smtp_server import SmtpServer
from velory_cli.store import Store

# The ledger records when a notice went out by the clock, and a reminder follows a notice sent
# before its day: the mails are sent for dates around today.
TODAY = date.today()


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


LONG_MODEL = "MacBook Pro 16-inch M4 Max 48GB 1TB Space Black with AppleCare+ for Business"
LONG_NAME = "Maria-Magdalena Johansson-Wikström de la Gardie"


# ---- helpers -----------------------------------------------------------------------------


def seed(home: Path, *devices: tuple[str, dict[str, Any]]) -> None:
    with Store.open(home / "velory.db") as store:
        for serial, fields in devices:
            add_device(store, serial, **fields)


def configure(home: Path, text: str) -> None:
    path = home / "config.toml"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o600)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def subject(message: EmailMessage) -> str:
    return str(message["Subject"])


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def html_part(message: EmailMessage) -> str | None:
    part = message.get_body(preferencelist=("html",))
    return None if part is None else str(part.get_content())


def send_to_outbox(invoke: Invoke, home: Path, *args: str, as_of: int = 0) -> list[bytes]:
    """``notices send`` into an outbox, ``as_of`` days from today; the raw bytes of each new
    mail, oldest first."""
    outbox = home / "outbox"
    result = invoke(["notices", "send", "--as-of", day(as_of), "--outbox", str(outbox), *args])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    files = sorted(outbox.glob("*.eml"), key=lambda path: path.stat().st_mtime_ns)
    for path in files:
        path.rename(path.with_suffix(".read"))
    return [path.with_suffix(".read").read_bytes() for path in files]


def deliver(invoke: Invoke, serial: str, new_serial: str, model: str, *, bought_out: bool) -> None:
    """The renewal flow up to the delivery that queues the personal-data reminder."""
    steps = [["start", serial], ["order", serial, "--model", model]]
    if bought_out:
        steps.append(["confirm-return", serial, "--bought-out"])
    steps.append(["deliver", serial, "--new-serial", new_serial])
    for step in steps:
        result = invoke(step)
        assert result.exit_code == 0, result.output


def header_lines(raw: bytes, name: bytes) -> list[bytes]:
    """A header as it stands in the raw mail: its first line and its continuation lines."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(head) if line.lower().startswith(name.lower() + b":"))
    lines = [head[start]]
    for line in head[start + 1 :]:
        if line[:1] not in (b" ", b"\t"):
            break
        lines.append(line)
    return lines


# ---- subjects ----------------------------------------------------------------------------


def test_the_personal_data_subject_folds_after_its_first_word(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, ("OLD1", {"renewal_date": day(200), "user_name": LONG_NAME}))
    deliver(invoke, "OLD1", "NEW1", LONG_MODEL, bought_out=False)
    result = invoke(["notices", "send"], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    (received,) = smtp_server.messages()

    lines = header_lines(received.data, b"Subject")
    expected = "Your new device has arrived: move or delete your personal data on the old one"
    assert len(expected) == 77
    assert lines == [
        b"Subject: Your new device has arrived: move or delete your personal data on the",
        b" old one",
    ]
    assert subject(parse(received.data)) == expected


def mails_of_every_kind(invoke: Invoke, home: Path, language: str) -> list[bytes]:
    """A renewal notice, a reminder and a personal-data reminder, for several devices each,
    with long models and names."""
    configure(home, f'language = "{language}"\nreminder_days = [7]\ncompany_name = "Exempel AB"\n')
    long = {"model": LONG_MODEL, "user_name": LONG_NAME, "user_email": "maria@example.com"}
    seed(
        home,
        ("LAP1", {**long, "renewal_date": day(10)}),
        ("PHONE1", {**long, "renewal_date": day(9)}),
        ("LATE", {**long, "user_email": "late@example.com", "renewal_date": day(-30)}),
        ("OLD1", {**long, "user_email": "old@example.com", "renewal_date": day(200)}),
    )
    renewals = send_to_outbox(invoke, home)
    reminders = send_to_outbox(invoke, home, as_of=3)
    deliver(invoke, "OLD1", "NEW1", LONG_MODEL, bought_out=False)
    personal = send_to_outbox(invoke, home)
    assert len(renewals) == 2 and len(reminders) == 1 and len(personal) == 1
    return renewals + reminders + personal


@pytest.mark.parametrize("language", ["en", "sv"])
def test_every_subject_folds_between_words_and_reads_as_written(
    invoke: Invoke, home: Path, language: str
) -> None:
    for raw in mails_of_every_kind(invoke, home, language):
        lines = header_lines(raw, b"Subject")
        assert lines[0].startswith(b"Subject: ") and lines[0][len(b"Subject: ") :].strip()
        assert all(len(line) <= 78 for line in lines)
        shown = subject(parse(raw))
        assert shown == shown.strip() and "  " not in shown
        # Unfolded, the header is the subject: words beyond ASCII encoded, nothing else.
        unfolded = b"".join(lines)[len(b"Subject: ") :].decode("ascii")
        if shown.isascii():
            assert unfolded == shown
        else:
            assert "=?utf-8?q?" in unfolded
