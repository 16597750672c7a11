"""The admin digest: what waits for the admins on a given day, as one mail, sent at most once
per recipient and day.

Gathering (``gather_digest``) reads the store as the other views do: the devices whose renewal
date has passed without the process started, ``todo``'s returns to confirm and devices to
release, the failed notices as ``notices list`` has them, and what ``mdm check`` finds (left out
when no MDM snapshot was imported). Composing (``compose_digest``) turns that into a subject, a
text and an HTML part in the configured language. Sending (``send_digest``) goes through the
same transports as the notices, with a ledger of its own (the ``digests`` table, one row per
recipient and day) worked the same way: claimed before the server sees the mail, recorded once
it accepted it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from velory_cli.errors import (
    ConfigError,
    ExitCode,
    OutputUnwritable,
    TemporaryFailure,
    UsageError,
    worst,
)
from velory_cli.folding import fold
from velory_cli.mails import InvalidRecipient, MailStyle, check_recipient, one_line
from velory_cli.models import Device, NoticeState
from velory_cli.wording import count

if TYPE_CHECKING:
    from velory_cli.mailer import Outgoing, Transport
    from velory_cli.store import DigestRow, Store

# How many devices a section lists before it says how many more there are.
DEFAULT_CAP = 20

# The sections, in the order the mail has them.
CHASE = "chase"
CONFIRM_RETURN = "confirm_return"
RELEASE = "release"
FAILED_NOTICES = "failed_notices"
MDM = "mdm"
SECTIONS = (CHASE, CONFIRM_RETURN, RELEASE, FAILED_NOTICES, MDM)

# Where an admin sees a whole section.
SECTION_COMMANDS = {
    CHASE: "velory todo",
    CONFIRM_RETURN: "velory todo",
    RELEASE: "velory todo",
    FAILED_NOTICES: "velory notices list --status failed",
    MDM: "velory mdm check",
}

# How a digest fared for one recipient; beside the ledger's states, ``skipped`` (sent already
# today, or another run is sending it) and, in a dry run, ``would_send``.
SKIPPED = "skipped"
WOULD_SEND = "would_send"


# ---- gathering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestItem:
    """One device of a section: since when it waits (a date), and a note where the section
    has one (a failed notice's error, the kind of an MDM discrepancy)."""

    serial: str
    user_name: str | None
    user_email: str | None
    since: str | None
    waited_days: int | None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "user_name": self.user_name,
            "user_email": self.user_email,
            "since": self.since,
            "waited_days": self.waited_days,
            "note": self.note,
        }


@dataclass(frozen=True)
class Section:
    """A section of the digest: every device it has, the one waiting longest first."""

    name: str
    items: tuple[DigestItem, ...]

    @property
    def total(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Digest:
    """What waits for the admins on ``day``. ``sections`` holds the MDM section only when an
    MDM snapshot was imported."""

    day: date
    sections: tuple[Section, ...]

    def section(self, name: str) -> Section | None:
        return next((section for section in self.sections if section.name == name), None)

    @property
    def all_clear(self) -> bool:
        return not any(section.total for section in self.sections)

    def counts(self) -> dict[str, int | None]:
        """Each section's count; None for the MDM section when there is no snapshot."""
        found = {section.name: section.total for section in self.sections}
        return {name: found.get(name) for name in SECTIONS}


def _waited(since: str | None, today: date) -> int | None:
    if not since:
        return None
    try:
        return max((today - date.fromisoformat(since[:10])).days, 0)
    except ValueError:
        return None


def _item(device: Device, since: str | None, today: date, note: str | None = None) -> DigestItem:
    day = since[:10] if since else None
    return DigestItem(
        device.serial, device.user_name, device.user_email, day, _waited(day, today), note
    )


def gather_digest(store: Store, *, today: date, stale_days: int | None = None) -> Digest:
    """Every section of the digest for ``today``."""
    from velory_cli.mdm.check import DEFAULT_STALE_DAYS
    from velory_cli.renewals import CHASE_USER as TODO_CHASE
    from velory_cli.renewals import CONFIRM_RETURN as TODO_CONFIRM
    from velory_cli.renewals import RELEASE as TODO_RELEASE
    from velory_cli.renewals import todo_list

    # The users to chase are todo's: one rule for both (active, imported, not Dustin's, the
    # renewal date before today), the longest overdue first.
    todo = todo_list(store, today=today)
    chase = [_item(i.device, i.since, today) for i in todo if i.action == TODO_CHASE]
    confirm = [_item(i.device, i.since, today) for i in todo if i.action == TODO_CONFIRM]
    release = [_item(i.device, i.since, today) for i in todo if i.action == TODO_RELEASE]
    # The failed notices as ``notices list --status failed`` has them, with their devices.
    failed = sorted(
        (
            _item(device, notice.updated_at, today, notice.error)
            for notice, device in store.notices_with_devices((NoticeState.FAILED,))
        ),
        key=lambda item: (item.since or "", item.serial),
    )
    sections = [
        Section(CHASE, tuple(chase)),
        Section(CONFIRM_RETURN, tuple(confirm)),
        Section(RELEASE, tuple(release)),
        Section(FAILED_NOTICES, tuple(failed)),
    ]
    mdm = _mdm_section(store, today, DEFAULT_STALE_DAYS if stale_days is None else stale_days)
    if mdm is not None:
        sections.append(mdm)
    return Digest(today, tuple(sections))


def _mdm_section(store: Store, today: date, stale_days: int) -> Section | None:
    """What ``mdm check`` finds, most urgent kind first; None when no snapshot was imported."""
    from velory_cli.mdm.check import check_snapshots
    from velory_cli.mdm.store import MdmStore

    if not MdmStore(store).has_snapshots():
        return None
    report = check_snapshots(store, today=today, stale_days=stale_days)
    items = []
    for found in report.discrepancies:
        check_in = found.get("mdm_last_check_in")
        since = str(check_in)[:10] if check_in else None
        items.append(
            DigestItem(
                serial=str(found.get("serial") or found.get("mdm_serial") or ""),
                user_name=None,
                user_email=found.get("velory_user") or found.get("mdm_user"),
                since=since,
                waited_days=_waited(since, today),
                note=str(found["kind"]),
            )
        )
    return Section(MDM, tuple(items))


# ---- wording ---------------------------------------------------------------------------------


def _number(n: int, language: str) -> str:
    """A count as the language writes it: from 10,000 up with thousands set apart, as
    ``wording.count`` does ("30,515"; in Swedish "30 515")."""
    if n < 10_000:
        return str(n)
    return f"{n:,}" if language == "en" else f"{n:,}".replace(",", "\u00a0")


def _sv_count(n: int, one: str, many: str) -> str:
    return f"{_number(n, 'sv')} {one if n == 1 else many}"


def _en_days(n: int) -> str:
    return count(n, "day")


def _sv_days(n: int) -> str:
    return _sv_count(n, "dag", "dagar")


# What the subject says of a section, for its count.
_SUBJECT: dict[str, dict[str, Callable[[int], str]]] = {
    "en": {
        CHASE: lambda n: f"{count(n, 'user')} to chase",
        CONFIRM_RETURN: lambda n: f"{count(n, 'return')} to confirm",
        RELEASE: lambda n: f"{count(n, 'device')} to release",
        FAILED_NOTICES: lambda n: count(n, "failed notice"),
        MDM: lambda n: f"{count(n, 'discrepancy')} with MDM",
    },
    "sv": {
        CHASE: lambda n: f"{_sv_count(n, 'användare', 'användare')} att påminna",
        CONFIRM_RETURN: lambda n: f"{_sv_count(n, 'retur', 'returer')} att bekräfta",
        RELEASE: lambda n: f"{_sv_count(n, 'enhet', 'enheter')} att släppa",
        FAILED_NOTICES: lambda n: _sv_count(n, "misslyckat utskick", "misslyckade utskick"),
        MDM: lambda n: _sv_count(n, "avvikelse mot MDM", "avvikelser mot MDM"),
    },
}

_DAYS: dict[str, Callable[[int], str]] = {"en": _en_days, "sv": _sv_days}

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "all_clear_subject": "all clear",
        "intro": "What waits for the admins on {day}.",
        "all_clear": (
            "All clear: nothing waits for the admins on {day}. No users to chase, no returns "
            "to confirm, no devices to release, no failed notices{mdm}."
        ),
        "all_clear_mdm": ", and the MDM agrees with the register",
        "all_clear_why": "This mail comes every time the digest runs, so its silence means the "
        "job did not run.",
        "no_user": "no user",
        "more": "and {n} more: {command}",
        "signature": "velory",
        "signature_company": "velory for {company}",
        f"title_{CHASE}": "Users to chase",
        f"about_{CHASE}": "The renewal date has passed and the user has not started the "
        "process: remind them to start it in Velory.",
        f"since_{CHASE}": "{days} since the renewal date, {date}",
        f"title_{CONFIRM_RETURN}": "Returns to confirm",
        f"about_{CONFIRM_RETURN}": "The replacement has arrived: confirm the return of the old "
        "device (velory confirm-return SERIAL) once it is back or bought out.",
        f"since_{CONFIRM_RETURN}": "{days} since the replacement arrived, {date}",
        f"title_{RELEASE}": "Devices to release",
        f"about_{RELEASE}": "The return is confirmed: release the device (velory release SERIAL).",
        f"since_{RELEASE}": "{days} since the return was confirmed, {date}",
        f"title_{FAILED_NOTICES}": "Failed notices",
        f"about_{FAILED_NOTICES}": "The mail server refused these notices for good: correct "
        "the user's email, or velory notices retry SERIAL once the cause is gone.",
        f"since_{FAILED_NOTICES}": "{days} since it failed, {date}",
        f"title_{MDM}": "MDM check",
        f"about_{MDM}": "What the register and the MDM snapshots disagree about.",
        f"since_{MDM}": "last check-in {date}, {days} ago",
        "kind_released_but_enrolled": "released in velory, still enrolled in the MDM",
        "kind_missing_from_mdm": "a company asset no MDM snapshot lists",
        "kind_unknown_to_velory": "enrolled in the MDM, not in the register",
        "kind_user_mismatch": "the MDM's primary user is not the device's user",
        "kind_stale": "no check-in for more than the stale days",
        "months": "January February March April May June July August September October "
        "November December",
    },
    "sv": {
        "all_clear_subject": "allt klart",
        "intro": "Det här väntar på administratörerna den {day}.",
        "all_clear": (
            "Allt klart: inget väntar på administratörerna den {day}. Inga användare att påminna, "
            "inga returer att bekräfta, inga enheter att släppa, inga misslyckade utskick{mdm}."
        ),
        "all_clear_mdm": ", och MDM stämmer med registret",
        "all_clear_why": "Det här mejlet kommer varje gång sammanfattningen körs, så om det "
        "uteblir har jobbet inte körts.",
        "no_user": "ingen användare",
        "more": "och {n} till: {command}",
        "signature": "velory",
        "signature_company": "velory för {company}",
        f"title_{CHASE}": "Användare att påminna",
        f"about_{CHASE}": "Förnyelsedatumet har passerat och användaren har inte startat "
        "processen: påminn dem om att starta den i Velory.",
        f"since_{CHASE}": "{days} sedan förnyelsedatumet, {date}",
        f"title_{CONFIRM_RETURN}": "Returer att bekräfta",
        f"about_{CONFIRM_RETURN}": "Den nya enheten har kommit: bekräfta returen av den gamla "
        "enheten (velory confirm-return SERIAL) när den är tillbaka eller utköpt.",
        f"since_{CONFIRM_RETURN}": "{days} sedan den nya enheten kom, {date}",
        f"title_{RELEASE}": "Enheter att släppa",
        f"about_{RELEASE}": "Returen är bekräftad: släpp enheten (velory release SERIAL).",
        f"since_{RELEASE}": "{days} sedan returen bekräftades, {date}",
        f"title_{FAILED_NOTICES}": "Misslyckade utskick",
        f"about_{FAILED_NOTICES}": "E-postservern avvisade de här utskicken för gott: rätta "
        "användarens e-postadress, eller velory notices retry SERIAL när orsaken är borta.",
        f"since_{FAILED_NOTICES}": "{days} sedan det misslyckades, {date}",
        f"title_{MDM}": "MDM-kontroll",
        f"about_{MDM}": "Det registret och MDM-ögonblicksbilderna inte är överens om.",
        f"since_{MDM}": "senaste incheckning {date}, för {days} sedan",
        "kind_released_but_enrolled": "släppt i velory, fortfarande registrerad i MDM",
        "kind_missing_from_mdm": "en tillgång som ingen MDM-ögonblicksbild har",
        "kind_unknown_to_velory": "registrerad i MDM, inte i registret",
        "kind_user_mismatch": "MDM:s primära användare är inte enhetens användare",
        "kind_stale": "ingen incheckning på längre tid än gränsen",
        "months": "januari februari mars april maj juni juli augusti september oktober "
        "november december",
    },
}


@dataclass(frozen=True)
class DigestMail:
    """The digest as it reads, before it is addressed: its subject and its two parts."""

    subject: str
    text: str
    html: str
    language: str
    company_name: str = ""

    @property
    def content_key(self) -> str:
        """What the mail says, in a few characters: a mail sent again keeps its Message-ID
        only when it says the same."""
        digest = hashlib.sha256("\x00".join((self.subject, self.text, self.html)).encode())
        return digest.hexdigest()[:32]


def digest_subject(digest: Digest, language: str) -> str:
    """The counts in a line: "velory: 3 users to chase, 1 return to confirm"."""
    words = _SUBJECT[language]
    parts = [words[section.name](section.total) for section in digest.sections if section.total]
    return "velory: " + (", ".join(parts) if parts else PHRASES[language]["all_clear_subject"])


def compose_digest(digest: Digest, style: MailStyle, *, cap: int = DEFAULT_CAP) -> DigestMail:
    """The digest's subject, text and HTML in ``style.language``; each section lists at most
    ``cap`` devices and says how many more there are and where to see them."""
    from velory_cli.mails import check_language

    language = check_language(style.language)
    if cap < 1:
        raise UsageError(f"a digest section lists at least one device, not {cap}")
    phrases = PHRASES[language]
    day = _long_date(digest.day, phrases)
    company = one_line(style.company_name)
    signature = (
        phrases["signature_company"].format(company=company) if company else phrases["signature"]
    )
    text: list[str] = []
    html: list[str] = []
    if digest.all_clear:
        mdm = phrases["all_clear_mdm"] if digest.section(MDM) is not None else ""
        for paragraph in (phrases["all_clear"].format(day=day, mdm=mdm), phrases["all_clear_why"]):
            text += [paragraph, ""]
            html.append(f"<p>{_escape(paragraph)}</p>")
    else:
        intro = phrases["intro"].format(day=day)
        text += [intro, ""]
        html.append(f"<p>{_escape(intro)}</p>")
        for section in digest.sections:
            if section.total:
                _section_text(section, language, phrases, cap, text, html)
    text.append(signature)
    html.append(f"<p>{_escape(signature)}</p>")
    body = "\n".join(text) + "\n"
    page = (
        f'<!DOCTYPE html>\n<html lang="{language}">\n<head><meta charset="utf-8"></head>\n<body>\n'
        + "\n".join(html)
        + "\n</body>\n</html>\n"
    )
    return DigestMail(digest_subject(digest, language), body, page, language, company)


def _section_text(
    section: Section,
    language: str,
    phrases: dict[str, str],
    cap: int,
    text: list[str],
    html: list[str],
) -> None:
    days = _DAYS[language]
    title = f"{phrases['title_' + section.name]} ({_number(section.total, language)})"
    about = phrases["about_" + section.name]
    text += [title, about]
    html.append(f"<h2>{_escape(title)}</h2>\n<p>{_escape(about)}</p>\n<ul>")
    for item in section.items[:cap]:
        line = _item_line(item, section.name, phrases, days)
        text.append(f"- {line}")
        html.append(f"<li>{_escape(line)}</li>")
    html.append("</ul>")
    more = section.total - cap
    if more > 0:
        tail = phrases["more"].format(
            n=_number(more, language), command=SECTION_COMMANDS[section.name]
        )
        text.append(tail)
        html.append(f"<p>{_escape(tail)}</p>")
    text.append("")


def _item_line(
    item: DigestItem, section: str, phrases: dict[str, str], days: Callable[[int], str]
) -> str:
    """ "PF1K2X9Z, Anna Berg <anna@example.com>: 12 days since the renewal date, 2026-11-20"."""
    name, email = one_line(item.user_name), one_line(item.user_email)
    user = f"{name} <{email}>" if name and email else name or email or phrases["no_user"]
    parts = []
    if section == MDM and item.note:
        parts.append(phrases.get("kind_" + item.note, item.note))
    if item.since and item.waited_days is not None:
        parts.append(
            phrases["since_" + section].format(days=days(item.waited_days), date=item.since)
        )
    if section != MDM and item.note:
        parts.append(one_line(item.note))
    return f"{one_line(item.serial)}, {user}: " + "; ".join(parts)


def _long_date(day: date, phrases: dict[str, str]) -> str:
    months = phrases["months"].split()
    return f"{day.day} {months[day.month - 1]} {day.year}"


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# ---- recipients ------------------------------------------------------------------------------

NO_RECIPIENT = (
    "no recipient for the digest: give --to ADDRESS, or set VELORY_ADMIN_EMAIL "
    '(or admin_email = "it-admins@example.com" in config.toml)'
)


def digest_recipients(given: Sequence[str], configured: Any) -> list[str]:
    """Whom the digest goes to: the ``--to`` addresses, else ``admin_email`` (one address,
    several separated by commas, or a TOML list). ConfigError (78) when there is none; a
    ``--to`` that is no address is a usage error (2), an ``admin_email`` one a setting (78)."""
    if given:
        return _unique(_checked(given, lambda bad: UsageError(f"--to: {bad}")))
    if configured is None or configured == "":
        raise ConfigError(NO_RECIPIENT)
    items: list[str]
    if isinstance(configured, list | tuple):
        items = [str(item) for item in configured]
    else:
        items = [part for part in re.split(r"[,;]", str(configured))]
    found = _unique(_checked(items, lambda bad: ConfigError(f"admin_email: {bad}")))
    if not found:
        raise ConfigError(NO_RECIPIENT)
    return found


def _checked(items: Iterable[str], error: Callable[[str], Exception]) -> list[str]:
    checked = []
    for item in items:
        if not item.strip():
            continue
        try:
            checked.append(check_recipient(item))
        except InvalidRecipient as exc:
            raise error(exc.message) from None
    return checked


def _unique(addresses: Iterable[str]) -> list[str]:
    """Each address once, as folded serials compare (``IT@x.se`` is ``it@x.se``)."""
    seen: set[str] = set()
    unique = []
    for address in addresses:
        if fold(address) not in seen:
            seen.add(fold(address))
            unique.append(address)
    return unique


# ---- the mail --------------------------------------------------------------------------------


def build_message(
    mail: DigestMail,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    now: datetime,
    company_name: str = "",
) -> Outgoing:
    """The digest as one MIME message to one recipient: plain text with an HTML alternative,
    from the sender's name, else the company's."""
    from email.message import EmailMessage
    from email.policy import default
    from email.utils import format_datetime, formataddr

    from velory_cli.mailer import Outgoing, parse_sender

    display, address = parse_sender(sender)
    name = one_line(display or company_name)
    message = EmailMessage(policy=default)
    message["Subject"] = mail.subject
    message["From"] = formataddr((name, address)) if address.isascii() else address
    if recipient.isascii():
        message["To"] = recipient
    else:
        message.set_raw("To", recipient)  # sent with SMTPUTF8, as the notices are
    message["Date"] = format_datetime(now if now.tzinfo else now.astimezone())
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    message["Content-Language"] = mail.language  # after the parts: set_content drops it
    return Outgoing(message=message, sender=address, recipient=recipient, message_id=message_id)


def digest_message_id(recipient: str, day: date, sender: str, attempt: int) -> str:
    """The Message-ID of a recipient's digest of ``day``: stable, so a digest sent again is
    recognisably the same mail; ``attempt`` sets apart one that says something else."""
    from velory_cli.notices import message_id_domain

    who = hashlib.sha256(fold(recipient).encode()).hexdigest()[:12]
    return f"<velory.digest.{day:%Y%m%d}.{who}.{attempt}@{message_id_domain(sender)}>"


# ---- sending, once per recipient and day --------------------------------------------------------


@dataclass(frozen=True)
class RecipientOutcome:
    """How the digest fared for one recipient: ``sent``, ``skipped`` (sent already today, or
    another run is sending it), ``failed`` (refused for good), ``pending`` (not sent: the next
    run sends it) or, in a dry run, ``would_send``."""

    recipient: str
    status: str
    error: str | None = None
    message_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "status": self.status,
            "error": self.error,
            "message_id": self.message_id,
        }


@dataclass
class DigestReport:
    """One run of ``velory digest``."""

    digest: Digest
    mail: DigestMail
    dry_run: bool
    outcomes: list[RecipientOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exit_code: int = 0

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.digest.day.isoformat(),
            "dry_run": self.dry_run,
            "sent": self.count(NoticeState.SENT),
            "skipped": self.count(SKIPPED),
            "failed": self.count(NoticeState.FAILED),
            "pending": self.count(NoticeState.PENDING),
            "subject": self.mail.subject,
            # The mail's text part, as a mail program shows it: what a dry run would send.
            "text": self.mail.text,
            "all_clear": self.digest.all_clear,
            "sections": self.digest.counts(),
            "recipients": [outcome.to_dict() for outcome in self.outcomes],
        }


@dataclass(frozen=True)
class _Claim:
    recipient: str
    digest_id: int
    message_id: str


def send_digest(
    store: Store,
    digest: Digest,
    mail: DigestMail,
    recipients: Sequence[str],
    *,
    sender: str,
    transport: Transport | None,
    clock: Callable[[], str],
    owner: str,
    claim_is_live: Callable[[str | None], bool] | None = None,
) -> DigestReport:
    """Send ``mail`` to each recipient that has not had the digest of ``digest.day`` yet;
    ``transport`` None is a dry run, which reads the ledger and writes nothing."""
    from velory_cli.notices import claim_is_live as process_lives

    run = _DigestRun(
        store,
        digest,
        mail,
        sender=sender,
        transport=transport,
        clock=clock,
        owner=owner,
        claim_is_live=claim_is_live or process_lives,
    )
    for recipient in recipients:
        run.send_to(recipient)
    run.finish()
    return run.report


@dataclass
class _DigestRun:
    store: Store
    digest: Digest
    mail: DigestMail
    sender: str
    transport: Transport | None
    clock: Callable[[], str]
    owner: str
    claim_is_live: Callable[[str | None], bool]
    report: DigestReport = field(init=False)
    codes: list[int] = field(default_factory=list)
    opened: bool = False
    # Why the run stopped sending (the server unreachable, a setting to fix): the digests
    # not sent yet stay for the next run.
    stopped: str | None = None

    def __post_init__(self) -> None:
        self.report = DigestReport(self.digest, self.mail, dry_run=self.transport is None)

    @property
    def day(self) -> str:
        return self.digest.day.isoformat()

    def finish(self) -> None:
        if self.opened and self.transport is not None:
            self.transport.close()
        self.report.exit_code = worst(*self.codes)

    def _outcome(
        self, recipient: str, status: str, error: str | None = None, mid: str | None = None
    ) -> None:
        self.report.outcomes.append(RecipientOutcome(recipient, status, error, mid))

    def send_to(self, recipient: str) -> None:
        if self.stopped is not None:
            self._outcome(recipient, NoticeState.PENDING, f"not sent: {self.stopped}")
            return
        if self.transport is None:
            self._dry_run(recipient)
            return
        try:
            claim = self._claim(recipient)
        except TemporaryFailure as exc:  # the store stayed busy: like a server that is down
            self._stop(exc.message, ExitCode.TEMPORARY)
            self._outcome(recipient, NoticeState.PENDING, exc.message)
            return
        except Exception as exc:
            raise self._store_stopped(exc) from None
        if claim is None:
            return
        self._deliver(claim)

    def _store_stopped(self, exc: Exception) -> Exception:
        """The store refused a claim (a full disk, a file size limit): what the run did, as
        the error says it; never "nothing was changed" after a digest went out."""
        import sqlite3

        from velory_cli.errors import VeloryError
        from velory_cli.store import describe_sqlite_error

        if isinstance(exc, sqlite3.Error):
            broken: VeloryError = describe_sqlite_error(exc, self.store.path)
        elif isinstance(exc, VeloryError):
            broken = exc
        else:
            return exc
        sent = [o.recipient for o in self.report.outcomes if o.status == NoticeState.SENT]
        if not sent:
            return broken
        reason = broken.message.split("; nothing was changed")[0]
        return type(broken)(
            f"{reason}; the digest was sent to {', '.join(sent)} and recorded; the next run "
            "sends it to the others"
        )

    def _dry_run(self, recipient: str) -> None:
        row = self.store.digest_row(fold(recipient), self.day)
        reason = self._skip_reason(row) if row is not None else None
        if reason is not None:
            self._outcome(recipient, SKIPPED, reason, row.message_id if row else None)
        else:
            self._outcome(recipient, WOULD_SEND)

    def _skip_reason(self, row: DigestRow) -> str | None:
        """Why this run leaves a digest alone: sent already, or another run sends it now."""
        if row.status == NoticeState.SENT:
            return f"already sent today ({row.sent_at})"
        if row.status == NoticeState.SENDING and self._claim_held(row):
            return f"being sent by another run ({row.claimed_by}, since {row.claimed_at})"
        return None

    def _claim_held(self, row: DigestRow) -> bool:
        from velory_cli.notices import claim_held

        try:
            now = datetime.fromisoformat(self.clock())
        except ValueError:
            return False
        return claim_held(row.claimed_by, row.claimed_at, now, self.claim_is_live)

    def _claim(self, recipient: str) -> _Claim | None:
        """Take this recipient's digest of the day for this run, in one short transaction,
        before the server sees anything; None when it is not this run's to send."""
        key = self.mail.content_key
        at = self.clock()
        with self.store.transaction():
            row = self.store.digest_row(fold(recipient), self.day)
            if row is None:
                message_id = digest_message_id(recipient, self.digest.day, self.sender, 1)
                self.store.claim_new_digest(
                    recipient,
                    self.day,
                    owner=self.owner,
                    at=at,
                    message_id=message_id,
                    content_key=key,
                )
                row = self.store.digest_row(fold(recipient), self.day)
                assert row is not None
                return _Claim(recipient, row.id, message_id)
            reason = self._skip_reason(row)
            if reason is not None:
                self._outcome(recipient, SKIPPED, reason, row.message_id)
                return None
            # The same digest again keeps its Message-ID; one that says something else (the
            # store changed since) gets its own.
            if row.content_key == key:
                message_id = row.message_id
            else:
                message_id = digest_message_id(
                    recipient, self.digest.day, self.sender, row.attempts + 1
                )
            if not self.store.claim_digest(
                row, owner=self.owner, at=at, message_id=message_id, content_key=key
            ):
                self._outcome(recipient, SKIPPED, "being sent by another run", row.message_id)
                return None
        if row.status == NoticeState.SENDING:
            again = (
                f"with the same Message-ID {message_id}: it may arrive twice"
                if message_id == row.message_id
                else f"with a new Message-ID {message_id}, as the store changed since"
            )
            self.report.warnings.append(
                f"the digest to {recipient} was being sent by a run that stopped "
                f"({row.claimed_by}, {row.claimed_at}); sending it again {again}"
            )
        return _Claim(recipient, row.id, message_id)

    def _deliver(self, claim: _Claim) -> None:
        from velory_cli.mailer import DeliveryError, PermanentDelivery, TemporaryDelivery

        assert self.transport is not None
        try:
            outgoing = build_message(
                self.mail,
                sender=self.sender,
                recipient=claim.recipient,
                message_id=claim.message_id,
                now=datetime.fromisoformat(self.clock()),
                company_name=self.mail.company_name,
            )
            if not self.opened:
                self.opened = True
                self.transport.open()
            self.transport.send(outgoing)
        except PermanentDelivery as exc:
            self._record(claim, NoticeState.FAILED, exc.message)
            self.codes.append(ExitCode.REFUSED)
            self.report.errors.append(f"the digest to {claim.recipient} failed: {exc.message}")
        except TemporaryDelivery as exc:
            self._record(claim, NoticeState.PENDING, exc.message)
            if exc.connection:
                self._stop(exc.message, ExitCode.TEMPORARY)
            else:
                self.codes.append(ExitCode.TEMPORARY)
                self.report.warnings.append(
                    f"the digest to {claim.recipient} stays for the next run: {exc.message}"
                )
        except DeliveryError as exc:
            self._record(claim, NoticeState.PENDING, exc.message)
            self._stop(exc.message, ExitCode.TEMPORARY)
        except (ConfigError, OutputUnwritable) as exc:
            self._record(claim, NoticeState.PENDING, exc.message)
            self._stop(exc.message, exc.exit_code)
        else:
            self._record(claim, NoticeState.SENT)

    def _stop(self, reason: str, code: int) -> None:
        self.stopped = reason
        self.codes.append(code)
        self.report.errors.append(reason)

    def _record(self, claim: _Claim, status: str, error: str | None = None) -> None:
        """How the mail fared, in its own transaction; the store waits longer for this one."""
        import sqlite3

        from velory_cli.errors import VeloryError
        from velory_cli.notices import RECORD_WAIT
        from velory_cli.store import describe_sqlite_error

        try:
            with self.store.transaction(wait=RECORD_WAIT):
                self.store.finish_digest(
                    claim.digest_id, owner=self.owner, status=status, at=self.clock(), error=error
                )
        except (VeloryError, sqlite3.Error) as exc:
            broken = (
                exc if isinstance(exc, VeloryError) else describe_sqlite_error(exc, self.store.path)
            )
            if status != NoticeState.SENT:
                raise broken from None
            # Accepted by the server, not recorded: the next run finds the claim of a run that
            # is gone and sends it again, with the same Message-ID. Never "nothing was changed"
            # after a mail went out.
            reason = broken.message.split("; nothing was changed")[0]
            sent = [o.recipient for o in self.report.outcomes if o.status == NoticeState.SENT]
            before = f" (it was sent to {', '.join(sent)} and recorded)" if sent else ""
            raise type(broken)(
                f"{reason}: the digest to {claim.recipient} was sent but could not be recorded"
                f"{before}; the next run sends it again with the same Message-ID "
                f"{claim.message_id}"
            ) from None
        self._outcome(claim.recipient, status, error, claim.message_id)
