"""The mails: how they read, the templates a company may override, and the MIME messages.

A mail goes to one recipient about one or more of their notices: plain text with an HTML
alternative, built from the templates in the language the settings name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from velory_cli.config import Settings
from velory_cli.errors import ConfigError
from velory_cli.folding import fold
from velory_cli.models import OUTCOME_BOUGHT_OUT, Device, Notice, NoticeKind

if TYPE_CHECKING:
    from email.message import EmailMessage
    from string import Template

    from velory_cli.mailer import Outgoing

# ---- settings ----------------------------------------------------------------------------

LANGUAGES = ("en", "sv")
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class MailStyle:
    """How the mails read: language, the company's name, the link, the sender, overrides."""

    sender: str
    language: str = DEFAULT_LANGUAGE
    company_name: str = ""
    portal_url: str | None = None
    templates_dir: Path | None = None


def check_language(raw: Any) -> str:
    language = str(raw or DEFAULT_LANGUAGE).strip().lower()
    if language not in LANGUAGES:
        raise ConfigError(f"language must be one of {', '.join(LANGUAGES)}, not {raw!r}")
    return language


def check_portal_url(raw: Any) -> str | None:
    if raw is None or not str(raw).strip():
        return None
    url = str(raw).strip()
    if not re.match(r"https?://[^\s<>\"']+$", url, re.IGNORECASE):
        raise ConfigError(f"portal_url must be an http or https address, not {url!r}")
    return url


def mail_style(settings: Settings, sender: str) -> MailStyle:
    """How the mails read: ``language``, ``company_name``, ``portal_url``, ``templates_dir``
    (default: a ``templates`` folder in the app directory, when there is one)."""
    raw_dir = settings.value("templates_dir")
    templates_dir: Path | None = None
    if raw_dir is not None and str(raw_dir).strip():
        templates_dir = Path(str(raw_dir).strip()).expanduser()
        if not templates_dir.is_absolute():
            base = settings.config_path.parent if settings.config_path else settings.app_dir
            templates_dir = base / templates_dir
        if not templates_dir.is_dir():
            raise ConfigError(f"templates_dir {templates_dir} is not a folder")
    elif (settings.app_dir / "templates").is_dir():
        templates_dir = settings.app_dir / "templates"
    return MailStyle(
        sender=sender,
        language=check_language(settings.value("language", DEFAULT_LANGUAGE)),
        company_name=one_line(settings.value("company_name", "")),
        portal_url=check_portal_url(settings.value("portal_url")),
        templates_dir=templates_dir,
    )


# ---- the mails ---------------------------------------------------------------------------


class InvalidRecipient(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# The templates a company may override, as <name>.<language>.txt and <name>.<language>.html.
# The .txt's first line is "Subject: ...". Mail templates get MAIL_FIELDS; the device lines
# of renewal and reminder mails get DEVICE_FIELDS; those of personal-data mails get
# REPLACEMENT_FIELDS.
MAIL_TEMPLATES = ("renewal", "reminder", "personal_data")
ITEM_TEMPLATES = {"renewal": "device", "reminder": "device", "personal_data": "replacement"}
# Each mail has wordings for one device and for several (NAME_many); the personal-data
# reminder has its own for old devices the user bought out and keeps (personal_data_kept).
MANY = "_many"
KEPT = "_kept"
WORDINGS = {
    "renewal": ("renewal", "renewal_many"),
    "reminder": ("reminder", "reminder_many"),
    "personal_data": (
        "personal_data",
        "personal_data_many",
        "personal_data_kept",
        "personal_data_kept_many",
    ),
}
MAIL_FIELDS = (
    "greeting",
    "name",
    "company",
    "headline",
    "devices",
    "count",
    "start_step",
    "portal_url",
    "distributor",
    "signature",
)
DEVICE_FIELDS = ("device", "model", "serial", "category", "renewal_date", "when", "days_left")
REPLACEMENT_FIELDS = (
    "old_device",
    "old_model",
    "old_serial",
    "new_device",
    "new_model",
    "new_serial",
    "renewal_date",
)
# Fields that hold HTML velory built itself (from escaped data); every other field is escaped.
_HTML_FIELDS = ("devices", "start_step")

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "greeting_named": "Hi {name},",
        "greeting": "Hi,",
        "in_days": "in {n} days",
        "tomorrow": "tomorrow",
        "today": "today",
        "overdue_one": "overdue by 1 day",
        "overdue_days": "overdue by {n} days",
        "headline_one": "Your device is up for renewal",
        "headline_many": "Your devices are up for renewal",
        "headline_overdue_one": "The renewal of your device is overdue",
        "headline_overdue_many": "The renewal of your devices is overdue",
        "headline_overdue_some": "The renewal of {n} of your devices is overdue",
        "one_of": "one",
        "headline_personal_data": "Move or delete your personal data on your old device",
        "headline_personal_data_many": "Move or delete your personal data on your old devices",
        "headline_kept": "Move what you need for work to your new device",
        "headline_kept_many": "Move what you need for work to your new devices",
        "device": "{model}, serial number {serial}",
        "no_model": "Device",
        "unknown_new_device": "your new device",
        "start_link": 'Open {url} and click "Start the process" on the device.',
        "start_link_html": (
            "Open {link} and click <strong>Start the process</strong> on the device."
        ),
        "start": 'Sign in to Velory, open the device and click "Start the process".',
        "start_html": (
            "Sign in to Velory, open the device and click <strong>Start the process</strong>."
        ),
        "start_link_many": 'Open {url} and click "Start the process" on each device.',
        "start_link_many_html": (
            "Open {link} and click <strong>Start the process</strong> on each device."
        ),
        "start_many": 'Sign in to Velory and click "Start the process" on each device.',
        "start_many_html": (
            "Sign in to Velory and click <strong>Start the process</strong> on each device."
        ),
        "distributor": "the distributor",
        "and": "and",
        "signature_company": "{company} IT",
        "signature": "Your IT department",
        "months": "January February March April May June July August September October "
        "November December",
    },
    "sv": {
        "greeting_named": "Hej {name}!",
        "greeting": "Hej!",
        "in_days": "om {n} dagar",
        "tomorrow": "i morgon",
        "today": "i dag",
        "overdue_one": "försenad med 1 dag",
        "overdue_days": "försenad med {n} dagar",
        "headline_one": "Din enhet ska förnyas",
        "headline_many": "Dina enheter ska förnyas",
        "headline_overdue_one": "Förnyelsen av din enhet är försenad",
        "headline_overdue_many": "Förnyelsen av dina enheter är försenad",
        "headline_overdue_some": "Förnyelsen av {n} av dina enheter är försenad",
        "one_of": "en",
        "headline_personal_data": (
            "Flytta eller radera dina personliga uppgifter på din gamla enhet"
        ),
        "headline_personal_data_many": (
            "Flytta eller radera dina personliga uppgifter på dina gamla enheter"
        ),
        "headline_kept": "Flytta över det du behöver i arbetet till din nya enhet",
        "headline_kept_many": "Flytta över det du behöver i arbetet till dina nya enheter",
        "device": "{model}, serienummer {serial}",
        "no_model": "Enhet",
        "unknown_new_device": "din nya enhet",
        "start_link": 'Öppna {url} och klicka på "Starta processen" på enheten.',
        "start_link_html": (
            "Öppna {link} och klicka på <strong>Starta processen</strong> på enheten."
        ),
        "start": 'Logga in i Velory, öppna enheten och klicka på "Starta processen".',
        "start_html": (
            "Logga in i Velory, öppna enheten och klicka på <strong>Starta processen</strong>."
        ),
        "start_link_many": (
            'Öppna {url} och klicka på "Starta processen" på var och en av enheterna.'
        ),
        "start_link_many_html": (
            "Öppna {link} och klicka på <strong>Starta processen</strong> på var och en av "
            "enheterna."
        ),
        "start_many": (
            'Logga in i Velory, öppna enheterna och klicka på "Starta processen" på var och en.'
        ),
        "start_many_html": (
            "Logga in i Velory, öppna enheterna och klicka på <strong>Starta processen</strong> "
            "på var och en."
        ),
        "distributor": "distributören",
        "and": "och",
        "signature_company": "IT på {company}",
        "signature": "Din IT-avdelning",
        "months": "januari februari mars april maj juni juli augusti september oktober "
        "november december",
    },
}


def one_line(value: Any) -> str:
    """Data made safe for a header or a line of text: no control characters, one line."""
    text = "" if value is None else str(value)
    return " ".join(re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]", " ", text).split())


class MailComposer:
    """Builds the mails from the templates: plain text plus an HTML alternative."""

    def __init__(self, style: MailStyle) -> None:
        from velory_cli.mailer import parse_sender

        self.style = style
        self.language = check_language(style.language)
        self.phrases = PHRASES[self.language]
        display, self.sender_address = parse_sender(style.sender)
        self.sender_display = one_line(display or style.company_name)
        self._cache: dict[str, tuple[Template, str]] = {}
        self._chosen: dict[tuple[str, ...], tuple[str, bool]] = {}

    # ---- templates ---------------------------------------------------------------------

    def _template(self, name: str, ext: str) -> tuple[Template, str]:
        from string import Template

        file_name = f"{name}.{self.language}.{ext}"
        if file_name not in self._cache:
            text, origin = self._read(file_name)
            self._cache[file_name] = (Template(text), origin)
        return self._cache[file_name]

    def _read(self, file_name: str) -> tuple[str, str]:
        folder = self.style.templates_dir
        if folder is not None:
            path = folder / file_name
            if path.is_file():
                try:
                    return path.read_text(encoding="utf-8"), str(path)
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"cannot read the template {path}: {exc}") from None
        from importlib.resources import files

        resource = files("velory_cli").joinpath("templates", file_name)
        return resource.read_text(encoding="utf-8"), f"velory's own {file_name}"

    def _own(self, name: str, ext: str) -> bool:
        """Whether the company has its own file for this template."""
        folder = self.style.templates_dir
        return folder is not None and (folder / f"{name}.{self.language}.{ext}").is_file()

    def choose(self, mail: str, *, many: bool, kept: bool = False) -> tuple[str, bool]:
        """The template a mail is written from, and whether it has an HTML part.

        The wordings are tried from the most particular (several devices, bought out) to the
        plain one: the company's own file for any of them wins over velory's, so a company's
        ``renewal`` is used for several devices too. A company's text without its HTML
        sibling makes a text-only mail: velory's HTML would hide the company's words."""
        names = [
            name
            for name in reversed(WORDINGS[mail])
            if (many or not name.endswith(MANY)) and (kept or KEPT not in name)
        ]
        key = tuple(names)
        if key not in self._chosen:
            chosen = (names[0], True)
            for name in names:
                own_text, own_html = self._own(name, "txt"), self._own(name, "html")
                if own_text or own_html:
                    chosen = (name, own_html or not own_text)
                    break
            self._chosen[key] = chosen
        return self._chosen[key]

    def _fill(self, name: str, ext: str, values: Mapping[str, Any]) -> str:
        template, origin = self._template(name, ext)
        try:
            return template.substitute(values)
        except KeyError as exc:
            known = ", ".join("$" + key for key in values)
            raise ConfigError(
                f"the template {origin} uses ${exc.args[0]}, which velory does not fill in "
                f"(it fills {known})"
            ) from None
        except ValueError as exc:
            raise ConfigError(
                f"the template {origin} has a $ velory cannot read ({exc}); "
                "write $$ for a dollar sign"
            ) from None

    def check(self) -> None:
        """Fill every template once with sample values: a broken override fails the run before
        any notice is claimed (exit 78), not half way."""
        samples = {
            "device": dict.fromkeys(DEVICE_FIELDS, "x"),
            "replacement": dict.fromkeys(REPLACEMENT_FIELDS, "x"),
        }
        for mail in MAIL_TEMPLATES:
            item = ITEM_TEMPLATES[mail]
            for ext in ("txt", "html"):
                self._fill(item, ext, samples[item])
            for many in (False, True):
                for kept in (False, True) if mail == NoticeKind.PERSONAL_DATA else (False,):
                    name, has_html = self.choose(mail, many=many, kept=kept)
                    filled = self._fill(name, "txt", dict.fromkeys(MAIL_FIELDS, "x"))
                    self._split_subject(filled, name)
                    if has_html:
                        self._fill(name, "html", dict.fromkeys(MAIL_FIELDS, "x"))

    def _split_subject(self, text: str, mail: str) -> tuple[str, str]:
        first, _, body = text.partition("\n")
        if not first.lower().startswith("subject:"):
            _template, origin = self._template(mail, "txt")
            raise ConfigError(
                f"the template {origin} must start with a line 'Subject: ...', then the text"
            )
        return one_line(first[len("subject:") :]), body.lstrip("\n")

    # ---- wording -----------------------------------------------------------------------

    def long_date(self, iso: str) -> str:
        try:
            day = date.fromisoformat(iso)
        except ValueError:
            return iso
        months = self.phrases["months"].split()
        return f"{day.day} {months[day.month - 1]} {day.year}"

    def when(self, days_left: int) -> str:
        p = self.phrases
        if days_left > 1:
            return p["in_days"].format(n=days_left)
        if days_left == 1:
            return p["tomorrow"]
        if days_left == 0:
            return p["today"]
        if days_left == -1:
            return p["overdue_one"]
        return p["overdue_days"].format(n=-days_left)

    def _device_text(self, device: Device | None) -> str:
        if device is None:
            return self.phrases["unknown_new_device"]
        return self.phrases["device"].format(
            model=one_line(device.model) or self.phrases["no_model"], serial=one_line(device.serial)
        )

    # ---- composing ---------------------------------------------------------------------

    def compose(
        self,
        items: Sequence[tuple[Notice, Device]],
        *,
        message_id: str,
        now: datetime,
        today: date,
        related: Mapping[str, Device],
    ) -> Outgoing:
        """One mail to the recipient of ``items`` about all of them."""
        from email.message import EmailMessage
        from email.utils import format_datetime

        from velory_cli.mailer import Outgoing

        kinds = {notice.kind for notice, _ in items}
        if NoticeKind.PERSONAL_DATA in kinds:
            mail = NoticeKind.PERSONAL_DATA
        elif NoticeKind.RENEWAL in kinds:
            mail = NoticeKind.RENEWAL
        else:
            mail = "reminder"
        rows, overdue = self._item_values(mail, items, today, related)
        # The devices the mail is about: for a personal-data reminder, the old ones.
        about = [
            _old_and_new(device, related)[0] if mail == NoticeKind.PERSONAL_DATA else device
            for _, device in items
        ]
        many = len(items) > 1
        kept = mail == NoticeKind.PERSONAL_DATA and all(
            device is not None and device.outcome == OUTCOME_BOUGHT_OUT for device in about
        )
        template, has_html = self.choose(mail, many=many, kept=kept)
        item_name = ITEM_TEMPLATES[mail]
        devices_text = "\n".join(self._fill(item_name, "txt", row).rstrip("\n") for row in rows)
        lead_notice, lead_device = items[0]
        name = one_line(lead_device.user_name)
        values = self._mail_values(mail, name, len(items), overdue, kept=kept)
        values["distributor"] = self._distributor(about)
        text = self._fill(template, "txt", {**values, "devices": devices_text})
        subject, body = self._split_subject(text, template)
        html_body = None
        if has_html:
            html_values = _escaped(values)
            html_values["devices"] = "\n".join(
                self._fill(item_name, "html", _escaped(row)).rstrip("\n") for row in rows
            )
            html_values["start_step"] = self._start_step_html(many)
            html_body = self._fill(template, "html", html_values)

        recipient = check_recipient(lead_notice.recipient or "")
        # Built as the generator will write it, rather than through EmailMessage's header
        # objects and set_content: the same mail at a third of the cost (a run mails
        # thousands). Every value is one line (one_line, a checked address).
        message = EmailMessage()
        _set_header(message, "Subject", subject)
        _set_address(message, "From", self.sender_display, self.sender_address)
        _set_address(message, "To", name, recipient)
        _set_header(message, "Date", format_datetime(now if now.tzinfo else now.astimezone()))
        _set_header(message, "Message-ID", message_id)
        _set_header(message, "Auto-Submitted", "auto-generated")
        _set_header(message, "MIME-Version", "1.0")
        # Through the header objects: the generator reads the content types again and
        # again, and a parsed one is not parsed each time. It picks a boundary that appears
        # in neither part.
        if html_body is None:
            _set_text(message, body, "plain")
            _set_header(message, "Content-Language", self.language)
        else:
            message["Content-Type"] = "multipart/alternative"
            _set_header(message, "Content-Language", self.language)
            message.set_payload([_text_part(body, "plain"), _text_part(html_body, "html")])
        return Outgoing(
            message=message,
            sender=self.sender_address,
            recipient=recipient,
            message_id=message_id,
        )

    def _item_values(
        self,
        mail: str,
        items: Sequence[tuple[Notice, Device]],
        today: date,
        related: Mapping[str, Device],
    ) -> tuple[list[dict[str, str]], int]:
        rows: list[dict[str, str]] = []
        overdue = 0
        for notice, device in items:
            if mail == NoticeKind.PERSONAL_DATA:
                old, new = _old_and_new(device, related)
                rows.append(
                    {
                        "old_device": self._device_text(old),
                        "old_model": one_line(old.model if old else ""),
                        "old_serial": one_line(old.serial if old else ""),
                        "new_device": self._device_text(new),
                        "new_model": one_line(new.model if new else ""),
                        "new_serial": one_line(new.serial if new else ""),
                        "renewal_date": self.long_date(notice.renewal_date),
                    }
                )
                continue
            try:
                days_left = (date.fromisoformat(notice.renewal_date) - today).days
            except ValueError:
                days_left = 0
            overdue += days_left < 0
            rows.append(
                {
                    "device": self._device_text(device),
                    "model": one_line(device.model) or self.phrases["no_model"],
                    "serial": one_line(device.serial),
                    "category": one_line(device.category),
                    "renewal_date": self.long_date(notice.renewal_date),
                    "when": self.when(days_left),
                    "days_left": str(days_left),
                }
            )
        return rows, overdue

    def _mail_values(
        self, mail: str, name: str, count: int, overdue: int, *, kept: bool = False
    ) -> dict[str, str]:
        """The fields of a mail about ``count`` devices, ``overdue`` of them overdue."""
        p = self.phrases
        many = "_many" if count > 1 else ""
        if mail == NoticeKind.PERSONAL_DATA:
            headline = p[("headline_kept" if kept else "headline_personal_data") + many]
        elif 0 < overdue < count:  # not "your devices are overdue" when only some are
            headline = p["headline_overdue_some"].format(
                n=p["one_of"] if overdue == 1 else str(overdue)
            )
        else:
            headline = p[
                ("headline_overdue_" if overdue else "headline_")
                + ("one" if count == 1 else "many")
            ]
        company = one_line(self.style.company_name)
        url = self.style.portal_url
        return {
            "greeting": p["greeting_named"].format(name=name) if name else p["greeting"],
            "name": name,
            "company": company,
            "headline": headline,
            "count": str(count),
            "start_step": p["start_link" + many].format(url=url) if url else p["start" + many],
            "portal_url": url or "",
            "signature": p["signature_company"].format(company=company)
            if company
            else p["signature"],
        }

    def _start_step_html(self, many: bool) -> str:
        import html

        url = self.style.portal_url
        number = "_many" if many else ""
        if not url:
            return self.phrases[f"start{number}_html"]
        link = f'<a href="{html.escape(url, quote=True)}">{html.escape(url)}</a>'
        return self.phrases[f"start_link{number}_html"].format(link=link)

    def _distributor(self, devices: Sequence[Device | None]) -> str:
        """Who contacts the user about the old devices: the distributors the store knows, by
        name ("Inetum", "Atea and Inetum"); "the distributor" when it does not know them all."""
        names: list[str] = []
        for device in devices:
            known = one_line(device.distributor if device else "")
            if not known:
                return self.phrases["distributor"]
            if fold(known) not in {fold(name) for name in names}:
                names.append(known)
        if len(names) == 1:
            return names[0]
        return f"{', '.join(names[:-1])} {self.phrases['and']} {names[-1]}"


# A header written as it is when it is ASCII and fits the line; a longer subject, or one beyond
# ASCII, folded here between words, with the words beyond ASCII as RFC 2047 encoded words.
_HEADER_LINE = 78


def _set_header(message: EmailMessage, name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"a {name} header must be one line")
    if value.isascii() and len(name) + 2 + len(value) <= _HEADER_LINE:
        message.set_raw(name, value)
    elif name == "Subject":  # the one header of free text, the one that is ever long
        message.set_raw(name, fold_header(name, value))
    else:  # a Message-ID is never made an encoded word: the header objects write it
        message[name] = value


def fold_header(name: str, value: str) -> str:
    """An unstructured header's value as it is written: folded between words so that every
    line fits 78 characters, the first line never empty (the email package folds a long
    header before its first word, and mail programs show that as a leading space). Runs of
    words beyond ASCII become one encoded word each, so the spaces between them stay."""
    # An encoded word must fit the first line too, or the generator folds the header again.
    words = _header_words(value, min(_ENCODED_WORD, _HEADER_LINE - len(name) - 2))
    lines: list[str] = []
    line = ""
    room = _HEADER_LINE - len(name) - 2
    for word in words:
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line, room = word, _HEADER_LINE - 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


# What an encoded word may hold at most (RFC 2047: 75 characters with its delimiters), and the
# longest word written as it is (a longer one could not fit a line of its own).
_ENCODED_WORD = 75
_PLAIN_WORD = 60


def _header_words(value: str, limit: int) -> list[str]:
    """The words of a header as written: ASCII words as they are; each run of words beyond
    ASCII (or that would read as an encoded word, or too long for a line) as encoded words,
    split between its words where it is too long for one (each part but the last ends in its
    encoded space), and within a word only where the word alone is."""

    def plain(word: str) -> bool:
        return word.isascii() and "=?" not in word and len(word) <= _PLAIN_WORD

    words = value.split(" ")
    written: list[str] = []
    index = 0
    while index < len(words):
        if plain(words[index]):
            written.append(words[index])
            index += 1
            continue
        run: list[str] = []
        while index < len(words) and not plain(words[index]):
            run.append(words[index])
            index += 1
        written.extend(_encoded_words(" ".join(run), limit))
    return written


def _encoded_words(text: str, limit: int) -> list[str]:
    from email import quoprimime

    def encoded(part: str) -> str:
        return quoprimime.header_encode(part.encode(), "utf-8")

    pieces: list[str] = []
    for word in re.findall(r"[^ ]+ ?| ", text):
        if len(encoded(word)) <= limit:
            pieces.append(word)
        else:
            pieces.extend(word)  # one character at a time: never a character cut in two
    words: list[str] = []
    part = ""
    for piece in pieces:
        if part and len(encoded(part + piece)) > limit:
            words.append(encoded(part))
            part = piece
        else:
            part += piece
    words.append(encoded(part))
    return words


def check_recipient(text: str) -> str:
    """The one address a mail goes to, checked so that it can only ever be one recipient: no
    line break, comma, angle bracket or second address. Letters beyond ASCII are allowed
    (``åsa@exempel.se``, ``bob@exämple.se``: sent with SMTPUTF8); InvalidRecipient otherwise."""
    import unicodedata
    from email.headerregistry import Address

    address = text.strip()
    invalid = InvalidRecipient(f"{address!r} is not an email address velory can send to")
    if not address or any(unicodedata.category(ch)[0] in "CZ" for ch in address):
        raise invalid  # control and format characters, and every kind of space
    # The email package reads only ASCII local parts; a letter beyond ASCII stands in the
    # grammar where any letter does, so the address is checked with ASCII in its place.
    ascii_form = "".join(ch if ch.isascii() else "a" for ch in address)
    try:
        parsed = Address(addr_spec=ascii_form)
    except Exception:
        raise invalid from None
    if parsed.addr_spec != ascii_form or not parsed.username or not parsed.domain:
        raise invalid
    return address


def _set_address(message: EmailMessage, name: str, display_name: str, address: str) -> None:
    """A From or To header; a display name that is not ASCII as an encoded word."""
    from email.headerregistry import Address
    from email.utils import formataddr

    if not address.isascii():
        # formataddr and the header objects take ASCII addresses only; the name is encoded
        # (or quoted) as formataddr does it, the address written as it is (SMTPUTF8).
        placeholder = "velory@localhost"
        named = formataddr((display_name, placeholder))
        value = address if named == placeholder else f"{named[: -len(placeholder) - 1]}{address}>"
        message.set_raw(name, value)
        return
    value = formataddr((display_name, address))
    if len(name) + 2 + len(value) <= _HEADER_LINE:
        message.set_raw(name, value)
    else:  # a long name: the header objects fold it
        message[name] = Address(display_name=display_name, addr_spec=address)


def _text_part(text: str, subtype: str) -> EmailMessage:
    from email.message import EmailMessage

    part = EmailMessage()
    _set_text(part, text, subtype)
    return part


def _set_text(part: EmailMessage, text: str, subtype: str) -> None:
    """A text in UTF-8, quoted-printable (encoded in C: the email package's own encoder works
    a character at a time), lines ended as set_content ends them. A paragraph stays one line
    however long: quoted-printable carries it in lines of 76 with soft breaks, and the mail
    program wraps it to its window."""
    import binascii

    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part.set_raw("Content-Transfer-Encoding", "quoted-printable")
    data = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    part.set_payload(binascii.b2a_qp(data).decode("ascii"))


def _escaped(values: Mapping[str, str]) -> dict[str, str]:
    import html

    return {
        key: value if key in _HTML_FIELDS else html.escape(value, quote=True)
        for key, value in values.items()
    }


def _old_and_new(
    device: Device, related: Mapping[str, Device]
) -> tuple[Device | None, Device | None]:
    """The old and the new device a personal-data reminder is about: the reminder hangs on
    the old device, which names its replacement (or, on the new one, the device it replaces)."""
    if device.replacement_serial:
        return device, related.get(fold(device.replacement_serial))
    if device.replaces_serial:
        return related.get(fold(device.replaces_serial)), device
    return device, None
