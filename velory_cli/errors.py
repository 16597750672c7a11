"""Errors the domain raises, each with the exit code the CLI turns it into.

The codes are BSD's sysexits where one fits (65 bad data, 66 no input, 73 cannot create,
74 the store unusable, 75 try again later, 78 configuration), 1 for a refusal, 2 for usage.
Scripts and cron jobs branch on them, so a code never changes its meaning. The CLI catches
``VeloryError`` in one place, prints ``message`` on stderr and exits with ``exit_code``:
nothing below the CLI layer prints or exits.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    REFUSED = 1
    USAGE = 2
    DATA_INVALID = 65
    NO_INPUT = 66
    CANT_CREATE = 73
    STORE_UNUSABLE = 74
    TEMPORARY = 75
    CONFIG = 78


# What each code means, in a few words: the root --help lists them.
MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.REFUSED: "a device or a notice was refused",
    ExitCode.USAGE: "wrong usage",
    ExitCode.DATA_INVALID: "the input data is invalid: nothing was written",
    ExitCode.NO_INPUT: "the input file is missing or unreadable",
    ExitCode.CANT_CREATE: "an output file cannot be written",
    ExitCode.STORE_UNUSABLE: "the store cannot be opened",
    ExitCode.TEMPORARY: "a temporary failure: nothing lost, run again later",
    ExitCode.CONFIG: "configuration missing or wrong",
}


def worst(*codes: int) -> int:
    """The exit code of a run where several apply: the highest wins (78 over 75 over 1)."""
    return max((int(code) for code in codes), default=0)


class VeloryError(Exception):
    """An expected failure: a one-line message and an exit code, never a traceback."""

    exit_code: ExitCode = ExitCode.REFUSED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Refused(VeloryError):
    """A device cannot do what was asked: unknown serial, wrong status, Dustin."""

    exit_code = ExitCode.REFUSED


class UsageError(VeloryError):
    """Options that contradict each other, found after Click's own checks."""

    exit_code = ExitCode.USAGE


class InvalidInput(VeloryError):
    """The input data is invalid; nothing was written."""

    exit_code = ExitCode.DATA_INVALID


class InputUnreadable(VeloryError):
    """The input file is missing or unreadable."""

    exit_code = ExitCode.NO_INPUT


class OutputUnwritable(VeloryError):
    """An output file cannot be written."""

    exit_code = ExitCode.CANT_CREATE


class StoreUnusable(VeloryError):
    """The store cannot be opened: unreadable, corrupt, not velory's, or from a newer velory."""

    exit_code = ExitCode.STORE_UNUSABLE


class TemporaryFailure(VeloryError):
    """Try again later: the store is busy or the mail server is unreachable."""

    exit_code = ExitCode.TEMPORARY


class ConfigError(VeloryError):
    """Configuration is missing or wrong."""

    exit_code = ExitCode.CONFIG
