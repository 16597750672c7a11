"""The mails as a mail program reads them: sent by `velory notices send` to a real SMTP server
or written to the outbox, then parsed with the email package's default policy."""

from __future__ import annotations

import email
import json
import os
import re
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
        ("KEPT1", {**long, "user_email": "kept@example.com", "renewal_date": day(200)}),
    )
    renewals = send_to_outbox(invoke, home)
    reminders = send_to_outbox(invoke, home, as_of=3)
    deliver(invoke, "OLD1", "NEW1", LONG_MODEL, bought_out=False)
    deliver(invoke, "KEPT1", "NEWK1", LONG_MODEL, bought_out=True)
    personal = send_to_outbox(invoke, home)
    assert len(renewals) == 2 and len(reminders) == 1 and len(personal) == 2
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


# ---- the text part -----------------------------------------------------------------------


def test_the_text_part_keeps_each_paragraph_on_one_line(invoke: Invoke, home: Path) -> None:
    seed(home, ("LAP1", {"model": LONG_MODEL, "user_name": LONG_NAME, "distributor": "Inetum"}))
    configure(home, 'portal_url = "https://velory.example.com/hardware/devices/overview"\n')
    (raw,) = send_to_outbox(invoke, home, as_of=-30)
    message = parse(raw)
    text = text_part(message)

    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None and plain["Content-Type"].params == {"charset": "utf-8"}
    lines = text.splitlines()
    # Whole paragraphs and items, each on its own line, however long the data makes them.
    assert f"Hi {LONG_NAME}," in lines
    assert f"  - {LONG_MODEL}, serial number LAP1" in lines
    assert (
        "The only step needed in Velory is to start the process. Open "
        'https://velory.example.com/hardware/devices/overview and click "Start the process" '
        "on the device."
    ) in lines
    assert (
        "1. Soon after you start the process, Inetum will contact you by email about the "
        "options for the old device: return it or buy it out. You settle that directly with "
        "Inetum."
    ) in lines
    # No line ends inside a sentence: each is a paragraph, a heading, an item or a device.
    headings = {"What you need to do", "What happens next"}
    for line in lines[:-1]:  # the signature is a name
        device_line = line.startswith("    Renewal date:") or (
            line.startswith("  - ") and ", serial number " in line
        )
        if line and line not in headings and not device_line:
            assert line[-1] in ".:,", line
    # On the wire every line fits: quoted-printable carries the long ones with soft breaks.
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))


# ---- what the mails say ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distributors", "expected"),
    [
        (["Inetum"], "Soon after you start the process, Inetum will contact you by email"),
        (["Inetum", "inetum"], "Soon after you start the process, Inetum will contact you"),
        (["Inetum", "Atea"], "Soon after you start the process, Inetum and Atea will contact"),
        ([None], "Soon after you start the process, the distributor will contact you"),
        (["Inetum", None], "Soon after you start the process, the distributor will contact"),
    ],
)
def test_the_renewal_mail_names_the_distributor_the_store_knows(
    invoke: Invoke, home: Path, distributors: list[str | None], expected: str
) -> None:
    seed(
        home,
        *(
            (
                f"D{i}",
                {"distributor": name, "user_email": "anna@example.com", "renewal_date": day(i)},
            )
            for i, name in enumerate(distributors, start=1)
        ),
    )
    (raw,) = send_to_outbox(invoke, home)
    message = parse(raw)
    text, html = text_part(message), html_part(message)
    assert expected in text
    assert html is not None and expected in html
    if distributors[0] == "Inetum" and None not in distributors:
        assert "the distributor" not in text


def test_a_bought_out_device_gets_the_wording_for_a_device_the_user_keeps(
    invoke: Invoke, home: Path
) -> None:
    seed(
        home,
        ("KEPT1", {"renewal_date": day(200), "user_email": "kim@example.com"}),
        ("GONE1", {"renewal_date": day(200), "user_email": "eva@example.com"}),
    )
    deliver(invoke, "KEPT1", "NEWK1", "MacBook Air 13", bought_out=True)
    deliver(invoke, "GONE1", "NEWG1", "MacBook Air 13", bought_out=False)
    mails = {str(parse(raw)["To"]): parse(raw) for raw in send_to_outbox(invoke, home)}
    kept, gone = mails["User KEPT1 <kim@example.com>"], mails["User GONE1 <eva@example.com>"]

    for part in (text_part(kept), html_part(kept)):
        assert part is not None
        assert "leaves you" not in part and "delete your personal files" not in part
        assert "You bought out the old device, so it stays with you." in part
        assert "Your personal information on it is yours to keep" in part
    assert subject(kept) == "Your new device has arrived: move your work over from the old one"
    assert "Before the old device leaves you" in text_part(gone)
    assert subject(gone).endswith("move or delete your personal data on the old one")


SINGULAR = {
    "en": re.compile(r"\b(?:the|this|old|new|your) device\b(?! itself)|\bit\b|\bthe old one\b"),
    "sv": re.compile(r"\b(?:enheten|den gamla|din nya enhet|din gamla enhet|den här)\b"),
}


@pytest.mark.parametrize("language", ["en", "sv"])
def test_a_mail_about_several_devices_reads_in_the_plural(
    invoke: Invoke, home: Path, language: str
) -> None:
    configure(home, f'language = "{language}"\nreminder_days = [7]\n')
    two = {"user_email": "anna@example.com", "user_name": "Anna", "renewal_date": day(10)}
    seed(home, ("LAP1", two), ("PHONE1", {**two, "model": "iPhone 15"}))
    (renewal,) = send_to_outbox(invoke, home)
    (reminder,) = send_to_outbox(invoke, home, as_of=3)
    deliver(invoke, "LAP1", "NEWL1", "MacBook Air 13", bought_out=False)
    deliver(invoke, "PHONE1", "NEWP1", "iPhone 16", bought_out=False)
    (personal,) = send_to_outbox(invoke, home)

    for raw in (renewal, reminder, personal):
        message = parse(raw)
        for part in (subject(message), text_part(message), html_part(message)):
            assert part is not None
            prose = "\n".join(
                line
                for line in part.splitlines()
                # the device lines name each device on its own
                if not re.match(r"\s*(-|<li>)\s*(Old device|New device|Gammal|Ny|\S+ \d)", line)
                and "serial" not in line
            )
            found = SINGULAR[language].findall(prose)
            assert not found, (subject(message), found, prose)
    if language == "sv":
        text = text_part(parse(renewal))
        assert 'öppna enheterna och klicka på "Starta processen" på var och en' in text
        assert "om alternativen för de gamla enheterna: att lämna tillbaka dem" in text
        assert text_part(parse(personal)).count("de gamla enheterna") >= 3


# ---- a company's own templates -----------------------------------------------------------


def test_a_company_text_without_its_html_makes_a_text_only_mail(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, ("A1", {"renewal_date": day(10)}), ("B1", {"renewal_date": day(10)}))
    (home / "templates").mkdir()
    (home / "templates" / "renewal.en.txt").write_text(
        "Subject: $company: renew your laptop\n\n$greeting\n\nOur own words.\n\n$devices\n",
        encoding="utf-8",
    )
    configure(home, 'company_name = "Acme"\n')
    result = invoke(["notices", "send"], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""

    for received in smtp_server.messages():
        message = parse(received.data)
        assert subject(message) == "Acme: renew your laptop"
        assert message.get_content_type() == "text/plain"
        assert not message.is_multipart()
        assert html_part(message) is None
        assert "Our own words." in text_part(message)
        assert "What happens next" not in received.data.decode("ascii")


def test_a_company_text_with_its_html_makes_both_parts_and_serves_several_devices(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    two = {"user_email": "anna@example.com", "renewal_date": day(10)}
    seed(home, ("A1", two), ("B1", two))
    (home / "templates").mkdir()
    (home / "templates" / "renewal.en.txt").write_text(
        "Subject: Renew your $count devices\n\nOur own words.\n\n$devices\n", encoding="utf-8"
    )
    (home / "templates" / "renewal.en.html").write_text(
        "<p>Our own <b>HTML</b>.</p><ul>$devices</ul>\n", encoding="utf-8"
    )
    result = invoke(["notices", "send"], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output

    (received,) = smtp_server.messages()
    message = parse(received.data)
    # The company's renewal wins over velory's own wording for several devices.
    assert subject(message) == "Renew your 2 devices"
    assert message.get_content_type() == "multipart/alternative"
    assert text_part(message).startswith("Our own words.")
    html = html_part(message)
    assert html is not None and html.startswith("<p>Our own <b>HTML</b>.</p>")
    assert "What happens next" not in html


def test_the_distributor_is_escaped_in_the_html_part(invoke: Invoke, home: Path) -> None:
    seed(home, ("A1", {"distributor": "Atea & <Partners>", "renewal_date": day(10)}))
    (raw,) = send_to_outbox(invoke, home)
    message = parse(raw)
    assert "Atea & <Partners> will contact you" in text_part(message)
    html = html_part(message)
    assert html is not None and "Atea &amp; &lt;Partners&gt; will contact you" in html
    assert "<Partners>" not in html


@pytest.mark.parametrize(
    ("language", "late", "expected"),
    [
        ("en", [-5, 10], "Action required: The renewal of one of your devices is overdue"),
        ("en", [-5, -1, 10], "Action required: The renewal of 2 of your devices is overdue"),
        ("en", [-5, -1], "Action required: The renewal of your devices is overdue"),
        ("en", [5, 10], "Action required: Your devices are up for renewal"),
        ("sv", [-5, 10], "Åtgärd krävs: Förnyelsen av en av dina enheter är försenad"),
        ("sv", [-5, -1], "Åtgärd krävs: Förnyelsen av dina enheter är försenad"),
    ],
)
def test_a_mail_calls_overdue_only_the_devices_that_are(
    invoke: Invoke, home: Path, language: str, late: list[int], expected: str
) -> None:
    configure(home, f'language = "{language}"\n')
    seed(
        home,
        *(
            (f"D{i}", {"user_email": "anna@example.com", "renewal_date": day(offset)})
            for i, offset in enumerate(late)
        ),
    )
    (raw,) = send_to_outbox(invoke, home)
    message = parse(raw)
    assert subject(message) == expected
    headline = expected.split(": ", 1)[1]
    assert text_part(message).splitlines()[2].startswith(f"{headline}, ")


def test_a_long_message_id_is_never_encoded_like_a_subject(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    serial = "C02-ZK1QX-LONG-SERIAL-FROM-AN-OLD-LEASING-EXPORT-2023"
    seed(home, (serial, {"renewal_date": day(10), "user_email": "anna@example.com"}))
    sender = "IT <it@it-department.headquarters.example-company-holding.com>"
    result = invoke(["notices", "send"], extra_env={**smtp_server.env, "VELORY_MAIL_FROM": sender})
    assert result.exit_code == 0, result.output

    (received,) = smtp_server.messages()
    (notice,) = json.loads(invoke(["notices", "list", "--json"]).stdout)
    assert len(notice["message_id"]) > 78
    assert b"=?" not in b"".join(header_lines(received.data, b"Message-ID"))
    assert str(parse(received.data)["Message-ID"]) == notice["message_id"]
