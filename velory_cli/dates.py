"""Strict dates for the importer, and calendar-month arithmetic.

Spreadsheets write dates in many ways. velory reads the forms admins' exports use and never
guesses: ``03/04/2026`` is 3 April in Stockholm and 4 March in Chicago, so it is an error unless
the admin says which order the file uses. An impossible date (``31.02.2026``) is an error, not
the nearest real day. Every parsed date comes back as ISO ``YYYY-MM-DD`` text, the form the store
keeps.
"""

from __future__ import annotations

import calendar
import re
from datetime import date
from functools import lru_cache
from typing import Literal

DateOrder = Literal["dayfirst", "monthfirst"]
DAY_FIRST: DateOrder = "dayfirst"
MONTH_FIRST: DateOrder = "monthfirst"

# Years outside this range are typos ("0226", "2206"), not devices' purchase or renewal dates.
FIRST_YEAR = 1970
LAST_YEAR = 2199

# A time of day after the date, as Excel and databases write it: " 00:00", "T12:30:00Z",
# " 4:15:00 PM", "T10:00:00.000+02:00". The date is read as written; the time is ignored.
_TIME = (
    r"(?:(?:T|\s+)(?:[01]?\d|2[0-4]):[0-5]\d(?::[0-5]\d(?:[.,]\d+)?)?(?:\s*[AaPp]\.?[Mm]\.?)?"
    r"(?:\s*(?:Z|[+-]\d{2}(?::?\d{2})?))?)?"
)
# 2026-12-01, 2026/12/01, 2026.12.01: year first is always year, month, day.
_YEAR_FIRST = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})" + _TIME, re.ASCII)
# 01.12.2026, 1.12.26: dots are day first (the Nordic and German way).
_DOTTED = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4}|\d{2})\.?" + _TIME, re.ASCII)
# 12/1/2026, 1-12-26: day first or month first, only one reading possible or the order given.
_SLASHED = re.compile(r"(\d{1,2})([/-])(\d{1,2})\2(\d{4}|\d{2})" + _TIME, re.ASCII)
# 46357: a date as Excel stores it, a count of days, shown when a column lost its date format.
_EXCEL_DAY_NUMBER = re.compile(r"\d{5}(?:[.,]\d+)?", re.ASCII)

_MONTHS = (
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

FORMS = "2026-12-01, 01.12.2026, 2026/12/01 or 12/1/2026"


class DateError(ValueError):
    """A text that is not a date velory can read without guessing; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_date(text: str, order: DateOrder | None = None) -> str:
    """The ISO date ``text`` stands for, or ``DateError`` saying why it is not one.

    ``order`` says how to read a date like ``03/04/2026`` where day and month could swap; it
    never changes a year-first or a dotted date.
    """
    iso, problem = read_date(text.strip(), order)
    if iso is None:
        raise DateError(problem or f"{text!r} is not a date")
    return iso


def read_date(text: str, order: DateOrder | None = None) -> tuple[str | None, str | None]:
    """``(iso, None)`` for a date, ``(None, why not)`` for anything else; ``text`` stripped.

    The importer's form of ``parse_date``: no exception per bad cell in a file of thousands.
    """
    found = _parse(text, order)
    if isinstance(found, _Problem):
        return None, str(found)
    return found, None


class _Problem(str):
    """Why a text is not a date (a ``str`` so the cache below can hold it)."""


@lru_cache(maxsize=8192)
def _parse(text: str, order: DateOrder | None) -> str | _Problem:
    # Cached: an inventory holds the same few hundred dates many times over.
    match = _YEAR_FIRST.fullmatch(text)
    if match:
        return _checked(text, int(match[1]), int(match[3]), int(match[4]))
    match = _DOTTED.fullmatch(text)
    if match:
        return _checked(text, _year(match[3]), int(match[2]), int(match[1]))
    match = _SLASHED.fullmatch(text)
    if match:
        return _day_or_month_first(text, int(match[1]), int(match[3]), _year(match[4]), order)
    if _EXCEL_DAY_NUMBER.fullmatch(text):
        return _Problem(
            f"{text!r} is not a date but a day number as Excel keeps dates: "
            "format the column as a date and export the file again"
        )
    return _Problem(f"{text!r} is not a date; write it like {FORMS}")


def _year(digits: str) -> int:
    # A two-digit year is this century's: "16" is 2016.
    return 2000 + int(digits) if len(digits) == 2 else int(digits)


def _day_or_month_first(
    text: str, first: int, second: int, year: int, order: DateOrder | None
) -> str | _Problem:
    if order == DAY_FIRST:
        if second > 12 >= first:
            return _Problem(
                f"{text!r} cannot be read day first (there is no month {second}): "
                "check --dayfirst, the file may write the month first"
            )
        return _checked(text, year, second, first)
    if order == MONTH_FIRST:
        if first > 12 >= second:
            return _Problem(
                f"{text!r} cannot be read month first (there is no month {first}): "
                "check --monthfirst, the file may write the day first"
            )
        return _checked(text, year, first, second)
    if first > 12:
        return _checked(text, year, second, first)
    if second > 12 or first == second:
        return _checked(text, year, first, second)
    return _Problem(
        f"{text!r} is ambiguous: {first} {_MONTHS[second]} or {second} {_MONTHS[first]} {year}? "
        "say how the file writes dates with --dayfirst or --monthfirst"
    )


def _checked(text: str, year: int, month: int, day: int) -> str | _Problem:
    if not 1 <= month <= 12:
        return _Problem(f"{text!r} is not a date: there is no month {month}")
    last_day = calendar.monthrange(year, month)[1] if year >= 1 else 31
    if not 1 <= day <= last_day:
        return _Problem(
            f"{text!r} is not a date: {_MONTHS[month]} {year} has no day {day}"
            if day > last_day
            else f"{text!r} is not a date: there is no day {day}"
        )
    if not FIRST_YEAR <= year <= LAST_YEAR:
        return _Problem(f"{text!r} is out of range: velory takes years {FIRST_YEAR} to {LAST_YEAR}")
    return date(year, month, day).isoformat()


@lru_cache(maxsize=8192)
def add_months(iso_date: str, months: int) -> str:
    """``iso_date`` plus whole calendar months; the last day of a shorter month where the day
    does not exist in it (2024-02-29 + 36 months = 2027-02-28)."""
    from dateutil.relativedelta import relativedelta

    return (date.fromisoformat(iso_date) + relativedelta(months=months)).isoformat()
