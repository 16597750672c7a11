"""Delivery: the mail settings, SMTP against a real server on 127.0.0.1, and the outbox."""

from __future__ import annotations

import os
import shutil
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.smtp_server import (
    RawConnection,
    RawSmtpServer,
    SmtpServer,
    endless_lines,
    free_port,
    make_test_certificate,
    trickle,
)
from velory_cli.config import Settings
from velory_cli.errors import ConfigError, OutputUnwritable
from velory_cli.mailer import (
    FALLBACK_SENDER,
    OutboxTransport,
    Outgoing,
    PermanentDelivery,
    ServerRefusal,
    SmtpSettings,
    SmtpTransport,
    TemporaryDelivery,
    resolve_delivery,
)

StartServer = Callable[..., SmtpServer]


def settings(
    tmp_path: Path, env: dict[str, str] | None = None, file: dict[str, Any] | None = None
) -> Settings:
    return Settings(
        app_dir=tmp_path,
        db_path=tmp_path / "velory.db",
        actor="tester",
        env=env or {},
        file_values=file or {},
        config_path=tmp_path / "config.toml",
    )


def mail(
    to: str = "anna@example.com", message_id: str = "<velory.1.a.20261201@example.com>"
) -> Outgoing:
    message = EmailMessage()
    message["Subject"] = "Action required"
    message["From"] = "it@example.com"
    message["To"] = to
    message["Message-ID"] = message_id
    message.set_content("Your device is up for renewal.\n.\nA line with a lone dot above.\n")
    return Outgoing(message=message, sender="it@example.com", recipient=to, message_id=message_id)


def plain(server: SmtpServer, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {"host": server.host, "port": server.port, "tls": "none", "timeout": 5}
    values.update(overrides)
    return SmtpSettings(**values)


# ---- settings ----------------------------------------------------------------------------


def test_no_mail_settings_is_a_configuration_error_naming_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_delivery(settings(tmp_path), outbox=None, dry_run=False)
    assert "VELORY_SMTP_HOST" in caught.value.message
    assert "VELORY_MAIL_FROM" in caught.value.message
    assert "--outbox" in caught.value.message


def test_a_dry_run_needs_no_mail_settings(tmp_path: Path) -> None:
    delivery = resolve_delivery(settings(tmp_path), outbox=None, dry_run=True)
    assert delivery.smtp is None and delivery.outbox is None
    assert delivery.sender == FALLBACK_SENDER


def test_the_outbox_wins_over_smtp_settings(tmp_path: Path) -> None:
    env = {
        "VELORY_SMTP_HOST": "mail.example.com",
        "VELORY_SMTP_USER": "u",
        "VELORY_SMTP_TLS": "none",
    }
    delivery = resolve_delivery(settings(tmp_path, env), outbox=tmp_path / "out", dry_run=False)
    assert delivery.smtp is None
    assert isinstance(delivery.transport(), OutboxTransport)


def test_credentials_without_tls_are_refused(tmp_path: Path) -> None:
    env = {
        "VELORY_SMTP_HOST": "mail.example.com",
        "VELORY_SMTP_USER": "velory",
        "VELORY_SMTP_PASSWORD": "secret",
        "VELORY_SMTP_TLS": "none",
        "VELORY_MAIL_FROM": "it@example.com",
    }
    with pytest.raises(ConfigError, match="credentials without TLS"):
        resolve_delivery(settings(tmp_path, env), outbox=None, dry_run=False)


@pytest.mark.parametrize(
    ("env", "tls", "port"),
    [
        ({}, "none", 25),
        ({"VELORY_SMTP_USER": "u", "VELORY_SMTP_PASSWORD": "p"}, "starttls", 587),
        ({"VELORY_SMTP_PORT": "465"}, "ssl", 465),
        ({"VELORY_SMTP_TLS": "SSL"}, "ssl", 465),
        ({"VELORY_SMTP_TLS": "starttls", "VELORY_SMTP_PORT": "2525"}, "starttls", 2525),
    ],
)
def test_tls_and_port_defaults(tmp_path: Path, env: dict[str, str], tls: str, port: int) -> None:
    base = {"VELORY_SMTP_HOST": "mail.example.com", "VELORY_MAIL_FROM": "it@example.com"}
    delivery = resolve_delivery(settings(tmp_path, {**base, **env}), outbox=None, dry_run=False)
    assert delivery.smtp is not None
    assert (delivery.smtp.tls, delivery.smtp.port) == (tls, port)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VELORY_SMTP_TLS": "yes"}, "smtp_tls must be one of"),
        ({"VELORY_SMTP_PORT": "smtp"}, "smtp_port must be a port number"),
        ({"VELORY_SMTP_PORT": "70000"}, "smtp_port must be a port number"),
        ({"VELORY_MAIL_FROM": ""}, "VELORY_MAIL_FROM is not set"),
        ({"VELORY_MAIL_FROM": "IT department"}, "mail_from is not an email address"),
        ({"VELORY_SMTP_USER": "u", "VELORY_SMTP_TLS": "ssl"}, "SMTP_PASSWORD is not"),
        ({"VELORY_SMTP_PASSWORD": "p"}, "SMTP_USER is not"),
        ({"VELORY_SMTP_TIMEOUT": "soon"}, "smtp_timeout"),
    ],
)
def test_wrong_mail_settings_are_configuration_errors(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    base = {"VELORY_SMTP_HOST": "mail.example.com", "VELORY_MAIL_FROM": "it@example.com"}
    with pytest.raises(ConfigError, match=message):
        resolve_delivery(settings(tmp_path, {**base, **env}), outbox=None, dry_run=False)


def test_the_environment_wins_over_config_toml(tmp_path: Path) -> None:
    file = {"smtp_host": "file.example.com", "mail_from": "file@example.com", "smtp_port": 26}
    env = {"VELORY_SMTP_HOST": "env.example.com"}
    delivery = resolve_delivery(settings(tmp_path, env, file), outbox=None, dry_run=False)
    assert delivery.smtp is not None
    assert (delivery.smtp.host, delivery.smtp.port) == ("env.example.com", 26)
    assert delivery.sender == "file@example.com"


def _file_with_password(tmp_path: Path, mode: int) -> dict[str, Any]:
    config = tmp_path / "config.toml"
    config.write_text('smtp_password = "secret"\n', encoding="utf-8")
    os.chmod(config, mode)
    return {
        "smtp_host": "mail.example.com",
        "smtp_user": "velory",
        "smtp_password": "secret",
        "smtp_tls": "starttls",
        "mail_from": "it@example.com",
    }


def test_a_password_in_a_config_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    file = _file_with_password(tmp_path, 0o644)
    delivery = resolve_delivery(settings(tmp_path, {}, file), outbox=None, dry_run=False)
    assert len(delivery.warnings) == 1
    assert "can be read by other users" in delivery.warnings[0]
    assert "chmod 600" in delivery.warnings[0]


def test_a_password_in_a_private_config_file_is_fine(tmp_path: Path) -> None:
    file = _file_with_password(tmp_path, 0o600)
    delivery = resolve_delivery(settings(tmp_path, {}, file), outbox=None, dry_run=False)
    assert delivery.warnings == ()


def test_a_password_from_the_environment_is_not_warned_about(tmp_path: Path) -> None:
    file = _file_with_password(tmp_path, 0o644)
    env = {"VELORY_SMTP_PASSWORD": "from-env"}
    delivery = resolve_delivery(settings(tmp_path, env, file), outbox=None, dry_run=False)
    assert delivery.warnings == ()
    assert delivery.smtp is not None and delivery.smtp.password == "from-env"


# ---- SMTP --------------------------------------------------------------------------------


def test_a_mail_reaches_the_server_for_its_one_recipient(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(plain(smtp_server))
    transport.open()
    transport.send(mail("anna@example.com"))
    transport.send(mail("bo@example.com", "<velory.2.b.20261201@example.com>"))
    transport.close()

    received = smtp_server.messages()
    assert [m.rcpt_tos for m in received] == [("anna@example.com",), ("bo@example.com",)]
    assert received[0].mail_from == "it@example.com"
    assert received[0].message_id == "<velory.1.a.20261201@example.com>"
    assert ".\nA line with a lone dot above." in received[0].text()


def test_one_connection_serves_the_whole_run(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(plain(smtp_server))
    transport.open()
    sock = transport._conn.sock if transport._conn else None
    for number in range(3):
        transport.send(mail(message_id=f"<velory.{number}.a.20261201@example.com>"))
    assert transport._conn is not None and transport._conn.sock is sock
    transport.close()
    assert len(smtp_server.messages()) == 3


def test_a_recipient_refused_for_good_is_a_permanent_failure(smtp_factory: StartServer) -> None:
    server = smtp_factory(refuse={"gone@example.com"})
    transport = SmtpTransport(plain(server))
    transport.open()

    with pytest.raises(PermanentDelivery, match=r"550 5\.1\.1 <gone@example\.com>"):
        transport.send(mail("gone@example.com"))
    transport.send(mail("anna@example.com"))  # the connection goes on serving the others
    transport.close()

    assert server.recipients() == ["anna@example.com"]


def test_a_4xx_answer_is_temporary_and_the_run_goes_on(smtp_factory: StartServer) -> None:
    server = smtp_factory(defer={"busy@example.com"})
    transport = SmtpTransport(plain(server))
    transport.open()

    with pytest.raises(TemporaryDelivery) as caught:
        transport.send(mail("busy@example.com"))
    transport.send(mail("anna@example.com"))
    transport.close()

    assert "451" in caught.value.message
    assert not caught.value.connection
    assert server.recipients() == ["anna@example.com"]


def test_an_unreachable_server_is_a_temporary_failure_of_the_connection() -> None:
    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=free_port(), tls="none"))
    with pytest.raises(TemporaryDelivery) as caught:
        transport.open()
    assert caught.value.connection
    assert "cannot reach the mail server 127.0.0.1" in caught.value.message


def test_a_dropped_connection_is_reopened_once(smtp_factory: StartServer) -> None:
    first = smtp_factory()
    transport = SmtpTransport(plain(first))
    transport.open()
    transport.send(mail(message_id="<velory.1.a.20261201@example.com>"))
    first.stop()  # the server goes away with the connection open, and comes back
    second = smtp_factory(port=first.port)

    transport.send(mail(message_id="<velory.2.a.20261201@example.com>"))
    transport.close()

    assert [m.message_id for m in second.messages()] == ["<velory.2.a.20261201@example.com>"]


def test_a_server_that_stays_away_is_reported_after_one_reconnect(
    smtp_factory: StartServer,
) -> None:
    server = smtp_factory()
    transport = SmtpTransport(plain(server))
    transport.open()
    server.stop()

    with pytest.raises(TemporaryDelivery) as caught:
        transport.send(mail())
    assert caught.value.connection


def test_starttls_without_server_support_never_sends_the_password(
    smtp_factory: StartServer,
) -> None:
    server = smtp_factory()
    settings_ = plain(server, tls="starttls", user="velory", password="secret")

    with pytest.raises(ConfigError, match="does not offer STARTTLS"):
        SmtpTransport(settings_).open()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    return make_test_certificate(tmp_path_factory.mktemp("tls"))


def _trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def test_starttls_and_a_login(smtp_factory: StartServer, certificate: tuple[Path, Path]) -> None:
    server = smtp_factory(tls_cert=certificate, logins={"velory": "secret"})
    settings_ = plain(server, tls="starttls", user="velory", password="secret")
    transport = SmtpTransport(settings_, ssl_context=_trusting(certificate))

    transport.open()
    transport.send(mail())
    transport.close()

    assert server.recipients() == ["anna@example.com"]


def test_a_refused_login_is_a_configuration_error(
    smtp_factory: StartServer, certificate: tuple[Path, Path]
) -> None:
    server = smtp_factory(tls_cert=certificate, logins={"velory": "secret"})
    settings_ = plain(server, tls="starttls", user="velory", password="wrong")

    with pytest.raises(ConfigError, match="refused the login for velory: 535"):
        SmtpTransport(settings_, ssl_context=_trusting(certificate)).open()
    assert server.messages() == []


def test_an_untrusted_certificate_is_a_configuration_error(
    smtp_factory: StartServer, certificate: tuple[Path, Path]
) -> None:
    server = smtp_factory(tls_cert=certificate)
    settings_ = plain(server, tls="starttls")

    with pytest.raises(ConfigError, match="cannot be trusted"):
        SmtpTransport(settings_, ssl_context=ssl.create_default_context()).open()


# ---- outbox ------------------------------------------------------------------------------


def test_the_outbox_holds_one_eml_per_mail_named_by_its_message_id(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "out")
    outbox.open()
    outbox.send(mail("anna@example.com", "<velory.1.a.20261201@example.com>"))
    outbox.send(mail("anna@example.com", "<velory.1.a.20261201@example.com>"))  # sent again
    outbox.send(mail("bo@example.com", "<velory.2.b.20261201@example.com>"))

    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["velory.1.a.20261201_example.com.eml", "velory.2.b.20261201_example.com.eml"]
    text = (tmp_path / "out" / files[0]).read_text(encoding="utf-8")
    assert "To: anna@example.com" in text
    assert "Message-ID: <velory.1.a.20261201@example.com>" in text


def test_an_outbox_that_cannot_be_written_is_exit_73(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(OutputUnwritable) as caught:
        OutboxTransport(blocker).open()
    assert caught.value.exit_code == 73
    with pytest.raises(OutputUnwritable):
        OutboxTransport(blocker / "below").open()


@pytest.mark.parametrize("kind", ["fifo", "folder", "link to /dev/null"])
def test_an_outbox_never_replaces_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    outbox = OutboxTransport(tmp_path / "out")
    outbox.open()
    target = outbox.path_for("<velory.1.a.20261201@example.com>")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        target.symlink_to(os.devnull)
    before = os.lstat(target)
    with pytest.raises(OutputUnwritable) as caught:
        outbox.send(mail())
    assert caught.value.exit_code == 73
    assert "\n" not in caught.value.message
    assert os.lstat(target).st_ino == before.st_ino
    assert [p.name for p in (tmp_path / "out").iterdir()] == [target.name]


def test_an_outbox_mail_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        outbox = OutboxTransport(tmp_path / "out")
        outbox.open()
        outbox.send(mail())
    finally:
        os.umask(old)
    (written,) = (tmp_path / "out").iterdir()
    assert oct(written.stat().st_mode & 0o777) == oct(0o600)


# ---- a TLS setting that does not match the server ------------------------------------------


def test_ssl_against_a_plain_server_is_a_configuration_error(smtp_server: SmtpServer) -> None:
    with pytest.raises(ConfigError) as caught:
        SmtpTransport(plain(smtp_server, tls="ssl")).open()
    assert "does not speak TLS on connect" in caught.value.message
    assert "VELORY_SMTP_TLS" in caught.value.message


def test_ssl_with_an_untrusted_certificate_is_a_configuration_error(
    smtp_factory: StartServer, certificate: tuple[Path, Path]
) -> None:
    server = smtp_factory(tls_cert=certificate, implicit_tls=True)
    with pytest.raises(ConfigError, match="cannot be trusted"):
        SmtpTransport(plain(server, tls="ssl"), ssl_context=ssl.create_default_context()).open()


def test_ssl_with_a_trusted_certificate_sends(
    smtp_factory: StartServer, certificate: tuple[Path, Path]
) -> None:
    server = smtp_factory(tls_cert=certificate, implicit_tls=True)
    transport = SmtpTransport(plain(server, tls="ssl"), ssl_context=_trusting(certificate))
    transport.open()
    transport.send(mail())
    transport.close()
    assert server.recipients() == ["anna@example.com"]


# ---- addresses beyond ASCII: SMTPUTF8 ------------------------------------------------------


def _utf8_mail(to: str) -> Outgoing:
    message = EmailMessage()
    message["Subject"] = "Action required"
    message["From"] = "it@example.com"
    message.set_raw("To", f"Åsa <{to}>")
    message["Message-ID"] = "<velory.1.a.20261201@example.com>"
    message.set_content("Your device is up for renewal.\n")
    return Outgoing(message, "it@example.com", to, "<velory.1.a.20261201@example.com>")


@pytest.mark.parametrize("address", ["åsa@exempel.se", "bob@exämple.se"])
def test_an_address_beyond_ascii_goes_with_smtputf8(
    smtp_factory: StartServer, address: str
) -> None:
    server = smtp_factory(smtputf8=True)
    transport = SmtpTransport(plain(server))
    transport.open()
    transport.send(_utf8_mail(address))
    transport.send(mail("anna@example.com"))
    transport.close()
    received = server.messages()
    assert [m.rcpt_tos for m in received] == [(address,), ("anna@example.com",)]
    assert f"<{address}>".encode() in received[0].data


def test_a_server_without_smtputf8_refuses_only_that_mail_and_says_why(
    smtp_server: SmtpServer,
) -> None:
    transport = SmtpTransport(plain(smtp_server))
    transport.open()
    with pytest.raises(PermanentDelivery) as caught:
        transport.send(_utf8_mail("åsa@exempel.se"))
    transport.send(mail("anna@example.com"))
    transport.close()
    assert "SMTPUTF8" in caught.value.message and "åsa@exempel.se" in caught.value.message
    assert smtp_server.recipients() == ["anna@example.com"]


def test_the_outbox_writes_an_address_beyond_ascii(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "out")
    outbox.open()
    outbox.send(_utf8_mail("åsa@exempel.se"))
    (written,) = (tmp_path / "out").iterdir()
    assert "To: Åsa <åsa@exempel.se>" in written.read_text(encoding="utf-8")


# ---- answers bounded in time and size --------------------------------------------------------


def _bounded(port: int, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 1}
    values.update(overrides)
    return SmtpSettings(**values)


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return context


def _greet_then(answer: Callable[[RawConnection], None]) -> Callable[[RawConnection, int], None]:
    def script(conn: RawConnection, number: int) -> None:
        conn.send(b"220 raw.example ESMTP\r\n")
        if conn.line() is not None:  # EHLO
            answer(conn)

    return script


def _open_fails_in_time(transport: SmtpTransport, seconds: float) -> TemporaryDelivery:
    started = time.monotonic()
    with pytest.raises(TemporaryDelivery) as caught:
        transport.open()
    assert time.monotonic() - started < seconds
    assert caught.value.connection
    return caught.value


def test_a_greeting_trickled_one_byte_at_a_time_is_bounded_by_the_timeout() -> None:
    def script(conn: RawConnection, number: int) -> None:
        trickle(conn, b"220 " + b"x" * 200, every=0.1)

    with RawSmtpServer(script) as server:
        failure = _open_fails_in_time(SmtpTransport(_bounded(server.port)), 2.5)
    assert "within 1 s" in failure.message


def test_an_endless_answer_ends_the_connection_at_64_kib() -> None:
    script = _greet_then(lambda conn: endless_lines(conn, b"250-XXXX\r\n", seconds=15))
    with RawSmtpServer(script) as server:
        failure = _open_fails_in_time(SmtpTransport(_bounded(server.port, timeout=30)), 5)
    assert "64 KiB" in failure.message


def test_one_long_line_ends_the_connection_at_64_kib() -> None:
    script = _greet_then(lambda conn: endless_lines(conn, b"250-" + b"X" * 1000, seconds=15))
    with RawSmtpServer(script) as server:
        failure = _open_fails_in_time(SmtpTransport(_bounded(server.port, timeout=30)), 5)
    assert "64 KiB" in failure.message


def test_an_answer_trickled_after_starttls_is_bounded_too(
    certificate: tuple[Path, Path],
) -> None:
    def script(conn: RawConnection, number: int) -> None:
        conn.send(b"220 raw.example ESMTP\r\n")
        conn.line()
        conn.send(b"250-raw.example\r\n250 STARTTLS\r\n")
        conn.line()
        conn.send(b"220 go ahead\r\n")
        conn.sock.settimeout(5)
        conn.start_tls()
        conn.sock.settimeout(0.1)
        conn.line()
        trickle(conn, b"250-" + b"x" * 200, every=0.1)

    with RawSmtpServer(script, tls=_server_context(certificate)) as server:
        settings_ = _bounded(server.port, tls="starttls")
        transport = SmtpTransport(settings_, ssl_context=_trusting(certificate))
        failure = _open_fails_in_time(transport, 3)
    assert "within 1 s" in failure.message


def test_a_greeting_trickled_over_tls_is_bounded_too(certificate: tuple[Path, Path]) -> None:
    def script(conn: RawConnection, number: int) -> None:
        trickle(conn, b"220 " + b"x" * 200, every=0.1)

    context = _server_context(certificate)
    with RawSmtpServer(script, tls=context, implicit_tls=True) as server:
        settings_ = _bounded(server.port, tls="ssl")
        transport = SmtpTransport(settings_, ssl_context=_trusting(certificate))
        failure = _open_fails_in_time(transport, 3)
    assert "within 1 s" in failure.message


def test_a_final_answer_trickled_after_the_message_leaves_it_to_the_next_run() -> None:
    def script(conn: RawConnection, number: int) -> None:
        conn.send(b"220 raw.example ESMTP\r\n")
        while (line := conn.line()) is not None:
            if line.upper().startswith(b"DATA"):
                conn.send(b"354 go ahead\r\n")
                conn.message()
                trickle(conn, b"250 " + b"x" * 200, every=0.1)
                return
            conn.send(b"250 OK\r\n")

    with RawSmtpServer(script) as server:
        transport = SmtpTransport(_bounded(server.port))
        transport.open()
        started = time.monotonic()
        with pytest.raises(TemporaryDelivery) as caught:
            transport.send(mail())
        transport.close()
    assert time.monotonic() - started < 2.5
    assert "same Message-ID" in caught.value.message


# ---- refusals that are the server's ----------------------------------------------------------


def test_a_5xx_to_the_data_command_is_the_servers_refusal() -> None:
    def script(conn: RawConnection, number: int) -> None:
        conn.send(b"220 raw.example ESMTP\r\n")
        while (line := conn.line()) is not None:
            if line.upper().startswith(b"DATA"):
                conn.send(b"554 5.7.1 Transaction failed: policy\r\n")
            elif line.upper().startswith(b"QUIT"):
                conn.send(b"221 bye\r\n")
                return
            else:
                conn.send(b"250 OK\r\n")

    with RawSmtpServer(script) as server:
        transport = SmtpTransport(_bounded(server.port, timeout=5))
        transport.open()
        with pytest.raises(ServerRefusal) as caught:
            transport.send(mail())
        transport.close()
    assert caught.value.exit_code == 78
    assert "554 5.7.1 Transaction failed: policy" in caught.value.message


def test_a_recipient_refusal_carries_the_answer_without_the_address(
    smtp_factory: StartServer,
) -> None:
    server = smtp_factory(refuse={"gone@example.com"})
    transport = SmtpTransport(plain(server))
    transport.open()
    with pytest.raises(PermanentDelivery) as caught:
        transport.send(mail("gone@example.com"))
    transport.close()
    assert caught.value.refusal is not None
    assert "gone@example.com" not in caught.value.refusal
    assert caught.value.refusal.startswith("550 5.1.1")
