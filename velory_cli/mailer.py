"""Delivering composed mails: over SMTP, or as ``.eml`` files in an outbox folder.

The settings come from ``VELORY_SMTP_*`` / ``VELORY_MAIL_FROM`` or the same keys in config.toml
(the environment wins). A password is only ever sent over an encrypted connection: a user with
``smtp_tls = "none"`` is refused before anything connects.

A transport tells its caller how a mail fared by raising:

- ``TemporaryDelivery``: not delivered, try again later (unreachable, dropped, a 4xx answer).
  ``connection`` is True when the server cannot be reached at all, so the run stops trying.
- ``PermanentDelivery``: the server refused this mail for good (a 5xx answer).
- ``ConfigError``: nothing can be sent with these settings (login refused, no STARTTLS, the
  sender refused, an untrusted certificate).
- ``OutputUnwritable``: the outbox cannot be written.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol

from velory_cli import outputs
from velory_cli.config import Settings, config_is_private
from velory_cli.errors import ConfigError, OutputUnwritable

if TYPE_CHECKING:
    import smtplib
    import ssl
    from email.message import EmailMessage

TLS_MODES = ("none", "starttls", "ssl")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
DEFAULT_TIMEOUT = 30.0
# Used in From: and Message-ID: when an outbox run has no mail_from.
FALLBACK_SENDER = "velory@localhost"


class DeliveryError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemporaryDelivery(DeliveryError):
    """Not delivered this time; the notice stays pending and the next run tries again."""

    def __init__(self, message: str, *, connection: bool = False) -> None:
        super().__init__(message)
        self.connection = connection


class PermanentDelivery(DeliveryError):
    """Refused for good by the mail server (a 5xx answer).

    ``refusal``: for a recipient refused at RCPT, the server's answer without the address in
    it, so that a run can tell one answer given to every recipient (the server refuses them
    all: its setting, not theirs) from recipients refused one by one."""

    def __init__(self, message: str, *, refusal: str | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal


class ServerRefusal(ConfigError):
    """The server refused what every mail of the run needs (the sender, the message itself):
    a setting to fix; the notices stay pending."""


@dataclass(frozen=True)
class Outgoing:
    """One composed mail and its envelope: exactly one recipient, whatever the headers say."""

    message: EmailMessage
    sender: str
    recipient: str
    message_id: str


class Transport(Protocol):
    def open(self) -> None: ...

    def send(self, mail: Outgoing) -> None: ...

    def close(self) -> None: ...


# ---- settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Delivery:
    """How this run delivers: an outbox folder, an SMTP server, or (dry run) neither."""

    sender: str
    smtp: SmtpSettings | None = None
    outbox: Path | None = None
    warnings: tuple[str, ...] = ()

    def check(self) -> None:
        """Fail before anything is claimed when the outbox cannot be written (exit 73)."""
        if self.outbox is not None:
            OutboxTransport(self.outbox).open()

    def transport(self, ssl_context: ssl.SSLContext | None = None) -> Transport:
        if self.outbox is not None:
            return OutboxTransport(self.outbox)
        if self.smtp is not None:
            return SmtpTransport(self.smtp, ssl_context=ssl_context)
        raise ConfigError(_NOTHING_SET)


_NOTHING_SET = (
    "no mail server is set: set VELORY_SMTP_HOST and VELORY_MAIL_FROM (and VELORY_SMTP_PORT, "
    "VELORY_SMTP_TLS, VELORY_SMTP_USER, VELORY_SMTP_PASSWORD as your server needs), or the same "
    "keys in lower case without VELORY_ (smtp_host, mail_from, ...) in config.toml; "
    "or give --outbox DIR to write the mails as files"
)


def _text(settings: Settings, key: str) -> str | None:
    raw = settings.value(key)
    if raw is None:
        return None
    text = str(raw).strip()
    return text or None


def parse_sender(text: str) -> tuple[str, str]:
    """``mail_from`` as (display name, address); ConfigError when it is not one address."""
    from email.headerregistry import Address
    from email.utils import parseaddr

    if any(ch in text for ch in "\r\n\x00"):
        raise ConfigError("mail_from must be one line")
    display, address = parseaddr(text)
    if not address or "@" not in address:
        raise ConfigError(f"mail_from is not an email address: {text!r}")
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        raise ConfigError(f"mail_from is not an email address: {text!r}") from None
    return display, address


def resolve_delivery(settings: Settings, *, outbox: Path | None, dry_run: bool) -> Delivery:
    """The delivery this run uses; ConfigError (exit 78) when there is none and it needs one."""
    sender = _text(settings, "mail_from")
    if sender is not None:
        parse_sender(sender)
    if outbox is not None:
        return Delivery(sender=sender or FALLBACK_SENDER, outbox=outbox)
    host = _text(settings, "smtp_host")
    if host is None:
        if dry_run:
            return Delivery(sender=sender or FALLBACK_SENDER)
        raise ConfigError(_NOTHING_SET)
    smtp, warnings = _smtp_settings(settings, host)
    if sender is None:
        raise ConfigError(
            "VELORY_MAIL_FROM is not set: the address notices are sent from "
            "(or mail_from in config.toml)"
        )
    return Delivery(sender=sender, smtp=smtp, warnings=tuple(warnings))


def _smtp_settings(settings: Settings, host: str) -> tuple[SmtpSettings, list[str]]:
    warnings: list[str] = []
    user = _text(settings, "smtp_user")
    password_raw = settings.value("smtp_password")
    password = None if password_raw in (None, "") else str(password_raw)
    tls_text = _text(settings, "smtp_tls")
    port_text = _text(settings, "smtp_port")
    port: int | None = None
    if port_text is not None:
        try:
            port = int(port_text)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise ConfigError(f"smtp_port must be a port number (1-65535), not {port_text!r}")
    if tls_text is None:
        tls = "ssl" if port == 465 else "starttls" if user else "none"
    else:
        tls = tls_text.lower()
        if tls not in TLS_MODES:
            raise ConfigError(f"smtp_tls must be one of none, starttls, ssl; not {tls_text!r}")
    if user and tls == "none":
        raise ConfigError(
            "credentials without TLS: VELORY_SMTP_USER is set and VELORY_SMTP_TLS is none; "
            "a password is never sent over an unencrypted connection: set VELORY_SMTP_TLS to "
            "starttls or ssl"
        )
    if user and password is None:
        raise ConfigError("VELORY_SMTP_USER is set but VELORY_SMTP_PASSWORD is not")
    if password is not None and not user:
        raise ConfigError("VELORY_SMTP_PASSWORD is set but VELORY_SMTP_USER is not")
    timeout = settings.seconds("smtp_timeout", DEFAULT_TIMEOUT)
    password_in_file = (
        password is not None
        and not settings.env.get("VELORY_SMTP_PASSWORD")
        and settings.config_path is not None
        and "smtp_password" in settings.file_values
    )
    if password_in_file and settings.config_path and not config_is_private(settings.config_path):
        warnings.append(
            f"{settings.config_path} holds the SMTP password and can be read by other users; "
            f"make it private: chmod 600 {settings.config_path}"
        )
    smtp = SmtpSettings(
        host=host,
        port=port or DEFAULT_PORTS[tls],
        tls=tls,
        user=user,
        password=password,
        timeout=timeout,
    )
    return smtp, warnings


# ---- SMTP --------------------------------------------------------------------------------


class _DroppedBeforeData(Exception):
    """The connection was gone before the server saw any of the message: safe to retry."""


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


def _answer(code: int, reply: bytes | str) -> str:
    return f"{code} {_reply_text(reply)}".strip()


def _without_address(answer: str, address: str) -> str:
    """A server's answer with the recipient's address (and the brackets around it) taken out."""
    text = re.sub(rf"<?{re.escape(address)}>?", "", answer, flags=re.IGNORECASE)
    return " ".join(text.split())


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason).replace("_", " ").lower() if reason else _os_reason(exc)


class SmtpTransport:
    """One SMTP connection for the whole run, opened once and reopened once if it drops."""

    def __init__(self, settings: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None):
        self.settings = settings
        self._ssl_context = ssl_context
        self._conn: smtplib.SMTP | None = None

    def open(self) -> None:
        if self._conn is None:
            self._conn = self._connect()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                conn.quit()
            with suppress(Exception):
                conn.close()

    def _context(self) -> ssl.SSLContext:
        import ssl

        return self._ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        import smtplib
        import ssl

        from velory_cli.smtpclient import AnswerTooLong, AnswerTooSlow, BoundedSMTP, BoundedSMTPSSL

        s = self.settings
        try:
            if s.tls == "ssl":
                conn: smtplib.SMTP = BoundedSMTPSSL(
                    s.host, s.port, timeout=s.timeout, context=self._context()
                )
            else:
                conn = BoundedSMTP(s.host, s.port, timeout=s.timeout)
        except (AnswerTooSlow, AnswerTooLong) as exc:
            raise TemporaryDelivery(
                f"the mail server {s.where} did not greet as a mail server does: {exc}",
                connection=True,
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"the TLS certificate of the mail server {s.where} cannot be trusted: "
                f"{exc.verify_message or exc}"
            ) from None
        except ssl.SSLError as exc:
            # A server that is not speaking TLS from the first byte answers the handshake with
            # its plain greeting: no later run can do better with these settings.
            raise ConfigError(
                f"the mail server {s.where} does not speak TLS on connect ({_ssl_reason(exc)}), "
                "but VELORY_SMTP_TLS is ssl: set VELORY_SMTP_TLS to starttls (or to none, "
                "without a user) as the server needs, or use its TLS port (usually 465)"
            ) from None
        except smtplib.SMTPConnectError as exc:
            raise TemporaryDelivery(
                f"the mail server {s.where} refused the connection: "
                f"{_answer(exc.smtp_code, exc.smtp_error)}",
                connection=True,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryDelivery(
                f"cannot reach the mail server {s.where}: {_os_reason(exc)}", connection=True
            ) from None
        try:
            self._greet(conn)
        except BaseException:
            with suppress(Exception):
                conn.close()
            raise
        return conn

    def _greet(self, conn: smtplib.SMTP) -> None:
        import smtplib
        import ssl

        s = self.settings
        try:
            conn.ehlo_or_helo_if_needed()
            if s.tls == "starttls":
                if not conn.has_extn("starttls"):
                    raise ConfigError(
                        f"the mail server {s.where} does not offer STARTTLS; set "
                        "VELORY_SMTP_TLS to ssl (or to none, without a user) as the server needs"
                    )
                conn.starttls(context=self._context())
                conn.ehlo()
            if s.user:
                if not conn.has_extn("auth"):
                    raise ConfigError(
                        f"the mail server {s.where} does not offer a login (AUTH); "
                        "unset VELORY_SMTP_USER or use the server's submission port"
                    )
                conn.login(s.user, s.password or "")
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"the TLS certificate of the mail server {s.where} cannot be trusted: "
                f"{exc.verify_message or exc}"
            ) from None
        except ssl.SSLError as exc:
            raise ConfigError(
                f"the TLS handshake with the mail server {s.where} failed after STARTTLS "
                f"({_ssl_reason(exc)}): check VELORY_SMTP_TLS and VELORY_SMTP_PORT against "
                "what the server offers"
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            answer = _answer(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise TemporaryDelivery(
                    f"the mail server {s.where} could not check the login now: {answer}",
                    connection=True,
                ) from None
            raise ConfigError(
                f"the mail server {s.where} refused the login for {s.user}: {answer}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            answer = _answer(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise TemporaryDelivery(
                    f"the mail server {s.where} is not ready: {answer}", connection=True
                ) from None
            raise ConfigError(f"the mail server {s.where} refused to start: {answer}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryDelivery(
                f"the mail server {s.where} dropped the connection: {_os_reason(exc)}",
                connection=True,
            ) from None

    def send(self, mail: Outgoing) -> None:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._transaction(self._conn, mail)
                return
            except _DroppedBeforeData as exc:
                self._forget()
                if attempt == 2:
                    raise TemporaryDelivery(
                        f"the mail server {self.settings.where} dropped the connection "
                        f"twice: {exc}",
                        connection=True,
                    ) from None

    def _forget(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    def _transaction(self, conn: smtplib.SMTP, mail: Outgoing) -> None:
        import smtplib
        from email import policy

        recipient_ascii = mail.recipient.isascii() and mail.sender.isascii()
        options: list[str] = []
        if not recipient_ascii:
            if not conn.has_extn("smtputf8"):
                raise PermanentDelivery(
                    f"the mail server does not accept the non-ASCII address {mail.recipient} "
                    "(no SMTPUTF8)"
                )
            options.append("SMTPUTF8")
        data = mail.message.as_bytes(policy=policy.SMTPUTF8 if not recipient_ascii else policy.SMTP)
        stage = "sender"
        try:
            code, reply = conn.mail(mail.sender, options)
            if code == 250:
                stage = "recipient"
                code, reply = conn.rcpt(mail.recipient)
                if code in (250, 251):
                    stage = "data"
                    conn.putcmd("data")
                    code, reply = conn.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise _DroppedBeforeData(_os_reason(exc)) from None
        if code != 354:
            self._reset(conn)
            self._refused(code, reply, mail, stage)
        # From here the server has seen the start of the message: a lost connection can no
        # longer be retried at once; the notice goes back to pending for the next run.
        body = re.sub(rb"(?m)^\.", b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        try:
            conn.send(body + b".\r\n")
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._forget()
            raise TemporaryDelivery(
                f"the connection to the mail server dropped while sending: {_os_reason(exc)}"
            ) from None
        try:
            code, reply = conn.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._forget()
            raise TemporaryDelivery(
                "the connection to the mail server dropped before it confirmed the mail "
                f"({_os_reason(exc)}); it may have arrived: the next run sends it again with "
                f"the same Message-ID {mail.message_id}"
            ) from None
        if code != 250:
            self._refused(code, reply, mail, "message")

    def _reset(self, conn: smtplib.SMTP) -> None:
        if self._conn is None:
            return
        try:
            conn.rset()
        except Exception:
            self._forget()

    def _refused(self, code: int, reply: bytes, mail: Outgoing, stage: str) -> NoReturn:
        answer = _answer(code, reply)
        if code == 421 or code < 0:
            self._forget()
        if 400 <= code < 500 or code < 0:
            raise TemporaryDelivery(f"the mail server answered {answer}")
        if stage == "sender":
            # Every mail of the run would be refused the same way: the settings need fixing.
            raise ServerRefusal(
                f"the mail server refused the sender {mail.sender}: {answer}; check "
                "VELORY_MAIL_FROM and what the server lets this login send as; the notices "
                "stay pending"
            )
        if stage == "recipient":
            raise PermanentDelivery(
                f"the mail server refused {mail.recipient}: {answer}",
                refusal=_without_address(answer, mail.recipient),
            )
        # A refusal of the message itself (to DATA, or once it has been sent) is not about
        # one recipient: every mail of the run is built the same way and would be refused too.
        raise ServerRefusal(
            f"the mail server refused the mail at DATA: {answer}; this is the server's setting "
            "(relaying, the sender's domain, a policy), not the recipient's: fix it and run "
            "again; the notices stay pending"
        )


# ---- outbox ------------------------------------------------------------------------------


class OutboxTransport:
    """One ``.eml`` file per mail, named after its Message-ID, written whole or not at all.

    A mail sent again (the same Message-ID) overwrites its own file, so the outbox never holds
    a notice twice.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def open(self) -> None:
        """Check, before any notice is claimed, that the folder exists or can be made, and
        takes files."""
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputUnwritable(f"the outbox {self.folder} is a file, not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".velory-", suffix=".tmp", dir=self.folder)
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise OutputUnwritable(
                f"cannot write to the outbox {self.folder}: {exc.strerror or exc}"
            ) from None

    def close(self) -> None:
        return None

    def path_for(self, message_id: str) -> Path:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", message_id.strip("<>")).strip("._") or "mail"
        return self.folder / f"{stem}.eml"

    def send(self, mail: Outgoing) -> None:
        from email import policy

        target = self.path_for(mail.message_id)
        outputs.is_existing_file(target)  # a folder or a pipe by that name is never replaced
        data = mail.message.as_bytes(policy=policy.SMTPUTF8)
        try:
            fd, name = tempfile.mkstemp(prefix=".velory-", suffix=".tmp", dir=self.folder)
        except OSError as exc:
            raise OutputUnwritable(
                f"cannot write to the outbox {self.folder}: {exc.strerror}"
            ) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(name, 0o600)
            os.replace(name, target)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(name)
            raise OutputUnwritable(f"cannot write {target}: {exc.strerror}") from None
