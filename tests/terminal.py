"""Run the installed velory under a real pseudo-terminal of a given size, as an admin sees it.

The child gets a pty as stdin, stdout and stderr, with the window size set (TIOCSWINSZ) before it
starts; what it writes comes back with the terminal's escape sequences taken out.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import termios
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass

from tests.conftest import velory_command

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@dataclass
class Screen:
    text: str
    returncode: int

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


def run_in_terminal(
    args: Sequence[str],
    *,
    columns: int,
    env: Mapping[str, str],
    rows: int = 50,
    answer: tuple[str, str] | None = None,
    timeout: float = 60,
) -> Screen:
    """velory ``args`` at a terminal ``columns`` wide. ``answer``: (prompt text, reply) types
    the reply once the prompt shows."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("VELORY_")}
    environment.update(env)
    environment.pop("COLUMNS", None)  # the terminal's own size, as an admin's shell has it
    environment.pop("LINES", None)
    environment["TERM"] = "xterm-256color"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    pid = os.fork()
    if pid == 0:  # the child: the pty is its terminal
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.close(slave)
        command = velory_command()
        os.execve(command[0], [*command, *args], environment)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            output += data
            if answer is not None and answer[0].encode() in output:
                os.write(master, answer[1].encode())
                answer = None
        else:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
    else:
        os.kill(pid, 9)
    with suppress(ChildProcessError):  # already reaped above
        _, status = os.waitpid(pid, 0)
    os.close(master)
    text = _ESCAPES.sub("", output.decode("utf-8", "replace")).replace("\r\n", "\n")
    return Screen(text=text, returncode=os.waitstatus_to_exitcode(status))
