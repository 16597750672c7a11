"""An SMTP connection whose every answer from the server is bounded, in time and in size.

smtplib reads an answer a line at a time, each read waiting up to the socket's timeout: a
server that trickles one byte a second never times out, and one that sends endless
continuation lines (``250-XXXX``) is read, and kept, for ever. Here the whole of each answer
must arrive within ``timeout`` seconds, however it trickles in, and an answer longer than any
real server sends (``MAX_ANSWER``) ends the connection. Both are ``SMTPServerDisconnected``,
which the mailer already treats as a connection lost: nothing is sent, the notices stay
pending.

The answers are read straight from the socket (plain, after STARTTLS, or TLS from the start):
smtplib's own buffered reader gives no way to bound a line that never ends.
"""

from __future__ import annotations

import smtplib
import socket
import time

# Longer than any real server's answer (an EHLO lists a few dozen short lines).
MAX_ANSWER = 64 * 1024
_CHUNK = 4096


class AnswerTooSlow(smtplib.SMTPServerDisconnected):
    """The server did not finish an answer within the timeout."""


class AnswerTooLong(smtplib.SMTPServerDisconnected):
    """The server's answer ran past MAX_ANSWER."""


class _Answers:
    """The bytes one socket has delivered and no answer has used yet."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def readline(self, deadline: float, limit: int, timeout: float) -> bytes:
        """One line (up to and with its LF), or what is left when the server closed."""
        while True:
            end = self.buffer.find(b"\n", 0, limit)
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) >= limit:
                raise AnswerTooLong(
                    f"the server's answer ran past {MAX_ANSWER // 1024} KiB; velory ended the "
                    "connection"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AnswerTooSlow(
                    f"the server did not finish its answer within {timeout:g} s (smtp_timeout)"
                )
            try:
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(_CHUNK)
            except TimeoutError:
                continue  # the deadline above says so
            finally:
                self.sock.settimeout(timeout)
            if not chunk:
                line = bytes(self.buffer)
                self.buffer.clear()
                return line
            self.buffer += chunk


class BoundedSMTP(smtplib.SMTP):
    """smtplib.SMTP, with each answer bounded by ``timeout`` seconds and MAX_ANSWER bytes."""

    _answers: _Answers | None = None

    def getreply(self) -> tuple[int, bytes]:
        sock = self.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        if self._answers is None or self._answers.sock is not sock:
            # A new socket (after STARTTLS): nothing read before it may count as its answer.
            self._answers = _Answers(sock)
        timeout = float(self.timeout)
        deadline = time.monotonic() + timeout
        lines: list[bytes] = []
        size = 0
        code = -1
        while True:
            try:
                line = self._answers.readline(deadline, MAX_ANSWER - size, timeout)
            except smtplib.SMTPServerDisconnected:
                self.close()
                raise
            except OSError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(
                    f"Connection unexpectedly closed: {exc}"
                ) from None
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            size += len(line)
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        return code, b"\n".join(lines)

    def close(self) -> None:
        self._answers = None
        super().close()


class BoundedSMTPSSL(BoundedSMTP, smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL (TLS from the first byte), with each answer bounded the same way."""
