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
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from velory_cli.errors import (
    ConfigError,
    UsageError,
)
from velory_cli.folding import fold
from velory_cli.mails import InvalidRecipient, MailStyle, check_recipient, one_line
from velory_cli.models import Device, NoticeState
from velory_cli.wording import count

if TYPE_CHECKING:
    from velory_cli.store import Store

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


def users_to_chase(store: Store, *, today: date) -> list[Device]:
    """Active, imported devices (not Dustin's) whose renewal date is before ``today``: the
    renewal is overdue and the user has not started the process. The longest overdue first."""
    yesterday = (today - timedelta(days=1)).isoformat()
    return [device for device in store.renewal_candidates(yesterday) if not device.dustin]


def gather_digest(store: Store, *, today: date, stale_days: int | None = None) -> Digest:
    """Every section of the digest for ``today``."""
    from velory_cli.mdm.check import DEFAULT_STALE_DAYS
    from velory_cli.renewals import CONFIRM_RETURN as TODO_CONFIRM
    from velory_cli.renewals import RELEASE as TODO_RELEASE
    from velory_cli.renewals import todo_list

    chase = [
        _item(device, device.renewal_date, today) for device in users_to_chase(store, today=today)
    ]
    todo = todo_list(store)
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


def _sv_count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


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
        "see": "See them all: {command}",
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
        "intro": "Det här väntar på administratörerna {day}.",
        "all_clear": (
            "Allt klart: inget väntar på administratörerna {day}. Inga användare att påminna, "
            "inga returer att bekräfta, inga enheter att släppa, inga misslyckade utskick{mdm}."
        ),
        "all_clear_mdm": ", och MDM stämmer med registret",
        "all_clear_why": "Det här mejlet kommer varje gång sammanfattningen körs, så om det "
        "uteblir har jobbet inte körts.",
        "no_user": "ingen användare",
        "more": "och {n} till: {command}",
        "see": "Se alla: {command}",
        "signature": "velory",
        "signature_company": "velory för {company}",
        f"title_{CHASE}": "Användare att påminna",
        f"about_{CHASE}": "Förnyelsedatumet har passerat och användaren har inte startat "
        "processen: påminn dem om att starta den i Velory.",
        f"since_{CHASE}": "{days} sedan förnyelsedatumet, {date}",
        f"title_{CONFIRM_RETURN}": "Returer att bekräfta",
        f"about_{CONFIRM_RETURN}": "Ersättaren har kommit: bekräfta returen av den gamla "
        "enheten (velory confirm-return SERIAL) när den är tillbaka eller utköpt.",
        f"since_{CONFIRM_RETURN}": "{days} sedan ersättaren kom, {date}",
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
                _section_text(section, phrases, _DAYS[language], cap, text, html)
    text.append(signature)
    html.append(f"<p>{_escape(signature)}</p>")
    body = "\n".join(text) + "\n"
    page = (
        f'<!DOCTYPE html>\n<html lang="{language}">\n<head><meta charset="utf-8"></head>\n<body>\n'
        + "\n".join(html)
        + "\n</body>\n</html>\n"
    )
    return DigestMail(digest_subject(digest, language), body, page, language)


def _section_text(
    section: Section,
    phrases: dict[str, str],
    days: Callable[[int], str],
    cap: int,
    text: list[str],
    html: list[str],
) -> None:
    title = f"{phrases['title_' + section.name]} ({section.total})"
    about = phrases["about_" + section.name]
    text += [title, about]
    html.append(f"<h2>{_escape(title)}</h2>\n<p>{_escape(about)}</p>\n<ul>")
    for item in section.items[:cap]:
        line = _item_line(item, section.name, phrases, days)
        text.append(f"- {line}")
        html.append(f"<li>{_escape(line)}</li>")
    html.append("</ul>")
    command = SECTION_COMMANDS[section.name]
    more = section.total - cap
    if more > 0:
        tail = phrases["more"].format(n=more, command=command)
    else:
        tail = phrases["see"].format(command=command)
    text += [tail, ""]
    html.append(f"<p>{_escape(tail)}</p>")


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
