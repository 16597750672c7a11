"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the notices tests, collecting what it gets.

Its behaviour is set per test: recipients it refuses for good (550) or for now (451), a delay
before it answers a message (a slow server), STARTTLS with a test certificate and a login.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Received:
    """One mail the server accepted: its envelope and its bytes as they came."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content()).replace("\r\n", "\n")

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return str(part.get_content()).replace("\r\n", "\n")


@dataclass
class SmtpServer:
    """The server's settings for one test; ``start`` runs it, ``env`` tells velory about it."""

    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    refuse: set[str] = field(default_factory=set)  # recipients answered 550
    defer: set[str] = field(default_factory=set)  # recipients answered 451
    delay: float = 0.0  # seconds before answering a message
    mail_answer: str | None = None  # the answer to every MAIL FROM, instead of 250
    rcpt_answer: str | None = None  # the answer to every RCPT TO, instead of 250
    data_answer: str | None = None  # the answer to every message, instead of 250
    tls_cert: tuple[Path, Path] | None = None  # (certificate, key): offer STARTTLS
    implicit_tls: bool = False  # with tls_cert: TLS from the first byte (as on port 465)
    smtputf8: bool = False  # offer SMTPUTF8 (addresses beyond ASCII)
    logins: dict[str, str] | None = None  # user -> password: require a login
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    _controller: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- aiosmtpd handler hooks ----------------------------------------------------------

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.mail_answer is not None:
            return self.mail_answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_answer is not None:
            return self.rcpt_answer
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.lower() in self.defer:
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.data_answer is not None:
            return self.data_answer
        with self._lock:
            self.received.append(
                Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 2.0.0 OK: queued"

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        logins = self.logins or {}
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            if logins.get(user) == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    # ---- running ---------------------------------------------------------------------------

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {}
        if self.tls_cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.tls_cert[0]), str(self.tls_cert[1]))
            kwargs["ssl_context" if self.implicit_tls else "tls_context"] = context
        # aiosmtpd's Controller offers SMTPUTF8 unless told otherwise; most servers do not.
        kwargs["enable_SMTPUTF8"] = self.smtputf8
        if self.logins is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = True
        self._controller = Controller(self, hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def env(self) -> dict[str, str]:
        """The VELORY_* settings that point velory at this server."""
        return {
            "VELORY_SMTP_HOST": self.host,
            "VELORY_SMTP_PORT": str(self.port),
            "VELORY_SMTP_TLS": "none",
            "VELORY_MAIL_FROM": "IT Support <it@example.com>",
        }

    # ---- what arrived ----------------------------------------------------------------------

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def recipients(self) -> list[str]:
        return [rcpt for mail in self.messages() for rcpt in mail.rcpt_tos]

    def to(self, address: str) -> list[Received]:
        return [mail for mail in self.messages() if address in mail.rcpt_tos]


def make_test_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


# ---- a hand-written server, for what no real server would do ---------------------------------


class RawConnection:
    """One client of a RawSmtpServer, as its script sees it: lines in, bytes out."""

    def __init__(self, sock: socket.socket, server: RawSmtpServer) -> None:
        self.sock = sock
        self.server = server
        self.buffer = b""

    @property
    def stopping(self) -> bool:
        return self.server.stopping.is_set()

    def send(self, data: bytes) -> bool:
        """False once the client has gone."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def line(self) -> bytes | None:
        """The client's next line, None when it has gone (or the server stops)."""
        while b"\n" not in self.buffer:
            if self.stopping:
                return None
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def message(self) -> bytes | None:
        """The message after DATA, up to the lone dot, unstuffed."""
        lines: list[bytes] = []
        while (line := self.line()) is not None:
            if line in (b".\r\n", b".\n"):
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b"..") else line)
        return None

    def start_tls(self) -> None:
        assert self.server.tls is not None
        self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
        self.buffer = b""

    def serve(self, *, drop_after_data: bool = False, ehlo: Sequence[bytes] = ()) -> None:
        """A plain SMTP dialogue that keeps each message; ``drop_after_data``: close the
        connection after the first message, before answering it."""
        while (line := self.line()) is not None:
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                extensions = [b"250-velory-test", *(b"250-" + e for e in ehlo), b"250 8BITMIME"]
                self.send(b"\r\n".join(extensions) + b"\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self.send(b"250 OK\r\n")
            elif verb == b"DATA":
                self.send(b"354 go ahead\r\n")
                data = self.message()
                if data is None:
                    return
                with self.server.lock:
                    self.server.received.append(data)
                if drop_after_data:
                    return
                self.send(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                self.send(b"221 bye\r\n")
                return
            else:
                self.send(b"500 what?\r\n")


class RawSmtpServer:
    """A server on 127.0.0.1 whose every connection is handed to ``script`` (in a thread of
    its own), with ``number`` counting connections from 1. Bounded in time: nothing it does
    outlives ``lifetime`` seconds or ``stop``."""

    def __init__(
        self,
        script: Callable[[RawConnection, int], None],
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        lifetime: float = 60.0,
    ) -> None:
        self.script = script
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.deadline = time.monotonic() + lifetime
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.received: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._run, args=(sock, self.connections), daemon=True)
            self.threads.append(thread)
            thread.start()
        self.stopping.set()

    def _run(self, sock: socket.socket, number: int) -> None:
        sock.settimeout(0.1)
        conn = RawConnection(sock, self)
        try:
            if self.implicit_tls:
                sock.settimeout(5)
                conn.start_tls()
                conn.sock.settimeout(0.1)
            self.script(conn, number)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.acceptor.join(timeout=5)
        for thread in self.threads:
            thread.join(timeout=5)

    def __enter__(self) -> RawSmtpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        return {
            "VELORY_SMTP_HOST": "127.0.0.1",
            "VELORY_SMTP_PORT": str(self.port),
            "VELORY_SMTP_TLS": "none",
            "VELORY_MAIL_FROM": "IT Support <it@example.com>",
        }

    def messages(self) -> list[Received]:
        with self.lock:
            return [Received("", (), data) for data in self.received]


def trickle(conn: RawConnection, data: bytes, *, every: float = 1.0, seconds: float = 60) -> None:
    """Send ``data`` one byte at a time, ``every`` seconds apart, then more of its last byte,
    for up to ``seconds``: an answer that never ends, one byte at a time."""
    started = time.monotonic()
    index = 0
    while not conn.stopping and time.monotonic() - started < seconds:
        byte = data[min(index, len(data) - 1) : min(index, len(data) - 1) + 1]
        if not conn.send(byte):
            return
        index += 1
        time.sleep(every)


def endless_lines(conn: RawConnection, line: bytes, *, seconds: float = 15) -> None:
    """Send ``line`` again and again, as fast as the client takes it, for up to ``seconds``."""
    block = line * (65536 // len(line))
    started = time.monotonic()
    while not conn.stopping and time.monotonic() - started < seconds:
        if not conn.send(block):
            return
