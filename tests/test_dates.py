"""Strict dates: the forms spreadsheets write, never a guess, never an impossible day."""

from __future__ import annotations

import pytest

from velory_cli.dates import (
    DAY_FIRST,
    MONTH_FIRST,
    DateError,
    add_months,
    parse_date,
    read_date,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01", "2026-12-01"),
        (" 2026-12-01 ", "2026-12-01"),
        ("2026-12-01 00:00:00", "2026-12-01"),
        ("2026-12-01T23:59:59Z", "2026-12-01"),
        ("2026-12-01T10:00:00.000+02:00", "2026-12-01"),
        ("2026-12-01 4:15 PM", "2026-12-01"),
        ("2026-1-5", "2026-01-05"),
        ("2026/12/01", "2026-12-01"),
        ("2026.12.01", "2026-12-01"),
        ("01.12.2026", "2026-12-01"),
        ("1.12.2026", "2026-12-01"),
        ("01.12.26", "2026-12-01"),
        ("13/4/2026", "2026-04-13"),
        ("4/13/2026", "2026-04-13"),
        ("13-4-2026", "2026-04-13"),
        ("03/03/2026", "2026-03-03"),
        ("31/12/26", "2026-12-31"),
        ("29.02.2024", "2024-02-29"),
    ],
)
def test_dates_that_read_one_way_only(text: str, expected: str) -> None:
    assert parse_date(text) == expected
    # Neither order changes a date that has only one reading.
    if "/" not in text and "-" not in text[3:5]:
        assert parse_date(text, DAY_FIRST) == expected
        assert parse_date(text, MONTH_FIRST) == expected


def test_iso_and_dotted_dates_ignore_the_order_given() -> None:
    for order in (None, DAY_FIRST, MONTH_FIRST):
        assert parse_date("2026-03-04", order) == "2026-03-04"
        assert parse_date("2026/03/04", order) == "2026-03-04"
        assert parse_date("03.04.2026", order) == "2026-04-03"


def test_an_ambiguous_date_is_an_error_naming_both_options() -> None:
    with pytest.raises(DateError) as caught:
        parse_date("03/04/2026")
    assert "--dayfirst" in caught.value.message
    assert "--monthfirst" in caught.value.message
    assert "3 April or 4 March 2026" in caught.value.message


def test_the_order_given_settles_an_ambiguous_date() -> None:
    assert parse_date("03/04/2026", DAY_FIRST) == "2026-04-03"
    assert parse_date("03/04/2026", MONTH_FIRST) == "2026-03-04"


def test_two_digit_years_are_this_century() -> None:
    assert parse_date("4/5/16", MONTH_FIRST) == "2016-04-05"
    assert parse_date("4/5/16", DAY_FIRST) == "2016-05-04"
    assert parse_date("12/31/99") == "2099-12-31"


def test_a_date_that_contradicts_the_order_given_is_an_error() -> None:
    # With --dayfirst, 4/13/2026 would need a 13th month: the file is not day first.
    with pytest.raises(DateError, match="cannot be read day first"):
        parse_date("4/13/2026", DAY_FIRST)
    with pytest.raises(DateError, match="cannot be read month first"):
        parse_date("13/4/2026", MONTH_FIRST)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("31.02.2026", "February 2026 has no day 31"),
        ("2026-02-29", "February 2026 has no day 29"),
        ("2026-13-01", "no month 13"),
        ("00.12.2026", "no day 0"),
        ("31/13/2026", "not a date"),
        ("2026-12-01x", "not a date"),
        ("1st December 2026", "not a date"),
        ("Dec 1, 2026", "not a date"),
        ("20261201", "not a date"),
        ("2026-12", "not a date"),
        ("1/12", "not a date"),
        ("0026-12-01", "out of range"),
        ("2206-12-01", "out of range"),
        ("46357", "day number as Excel keeps dates"),
        ("2026-12-01 25:00", "not a date"),
        ("２０２６-12-01", "not a date"),
    ],
)
def test_what_is_not_a_date_says_why(text: str, why: str) -> None:
    with pytest.raises(DateError, match=why):
        parse_date(text)
    iso, problem = read_date(text)
    assert iso is None
    assert problem is not None and why in problem


def test_read_date_returns_instead_of_raising() -> None:
    assert read_date("2026-12-01") == ("2026-12-01", None)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2024-02-29", 36, "2027-02-28"),
        ("2024-02-29", 48, "2028-02-29"),
        ("2023-01-31", 1, "2023-02-28"),
        ("2023-08-31", 36, "2026-08-31"),
        ("2023-12-01", 36, "2026-12-01"),
        ("2023-11-30", 3, "2024-02-29"),
    ],
)
def test_calendar_months(start: str, months: int, expected: str) -> None:
    assert add_months(start, months) == expected
