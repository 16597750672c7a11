"""Extreme and odd values of every numeric and date option and setting: a usage error (2) or a
configuration error (78) in one line, never a traceback."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from tests.factory import add_device
from velory_cli.cli import app
from velory_cli.store import Store


@pytest.fixture
def fleet(home: Path) -> Path:
    """A store with a device at each step a numeric option reads: due, started and ordered."""
    db = home / "velory.db"
    with Store.open(db) as store:
        add_device(store, "DUE1", renewal_date="2026-12-01")
        add_device(
            store,
            "ORD1",
            status="renewal_started",
            ordered_model="MacBook Air",
            ordered_at="2026-05-01T00:00:00Z",
        )
    return db


def velory(
    env: Mapping[str, str], args: Sequence[str], extra_env: Mapping[str, str] | None = None
) -> Result:
    clean = {key: None for key in os.environ if key.startswith("VELORY_")}
    return CliRunner(env={**clean, **env, **(extra_env or {})}).invoke(app, list(args))


def assert_clean(result: Result, codes: set[int]) -> None:
    """An exit code of ``codes``, no traceback, and an error (if any) in one line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in codes, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) <= 1, result.stderr


CASES: list[tuple[str, list[str], dict[str, str], int, str]] = [
    ("renewals far as-of", ["renewals", "--as-of", "9999-12-31"], {}, 2, "--as-of 9999-12-31"),
    ("renewals early as-of", ["renewals", "--as-of", "0001-01-01"], {}, 2, "out of range"),
    ("stats far as-of", ["stats", "--as-of", "9999-12-31"], {}, 2, "years 1970 to 2199"),
    ("renewals within", ["renewals", "--within", "99999999999"], {}, 2, "'--within'"),
    ("renewals within 3651", ["renewals", "--within", "3651"], {}, 2, "0<=x<=3650"),
    ("renewals within -1", ["renewals", "--within", "-1"], {}, 2, "'--within'"),
    (
        "lead-days option",
        ["notices", "send", "--dry-run", "--lead-days", "99999999999"],
        {},
        2,
        "'--lead-days'",
    ),
    (
        "lead-days env",
        ["notices", "send", "--dry-run"],
        {"VELORY_LEAD_DAYS": "999999999"},
        78,
        "lead_days must be a whole number from 0 to 3650",
    ),
    (
        "notices far as-of",
        ["notices", "send", "--dry-run", "--as-of", "9999-12-31"],
        {},
        2,
        "out of range",
    ),
    *[
        (
            f"smtp timeout {value}",
            ["notices", "send"],
            {
                "VELORY_SMTP_HOST": "127.0.0.1",
                "VELORY_MAIL_FROM": "it@example.com",
                "VELORY_SMTP_TIMEOUT": value,
            },
            78,
            "smtp_timeout must be a number of seconds",
        )
        for value in ("nan", "inf", "-inf", "0", "1e300")
    ],
    *[
        (
            f"busy timeout {value}",
            ["devices"],
            {"VELORY_BUSY_TIMEOUT": value},
            78,
            "busy_timeout must be a number of seconds",
        )
        for value in ("nan", "inf", "0", "-5")
    ],
    (
        "term months env",
        ["deliver", "ORD1", "--new-serial", "NEW1"],
        {"VELORY_TERM_MONTHS": "99999999"},
        78,
        "term_months must be a whole number from 1 to 240",
    ),
]


@pytest.mark.parametrize(
    ("args", "extra_env", "code", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_an_extreme_value_is_a_clean_error(
    env: dict[str, str],
    fleet: Path,
    args: list[str],
    extra_env: dict[str, str],
    code: int,
    message: str,
) -> None:
    result = velory(env, args, extra_env)
    assert_clean(result, {code})
    assert message in result.stderr
    assert result.stdout == ""


def test_the_edges_of_the_ranges_are_accepted(env: dict[str, str], fleet: Path) -> None:
    for args in (
        ["renewals", "--as-of", "2199-12-31", "--within", "3650", "--json"],
        ["renewals", "--as-of", "1970-01-01", "--within", "0", "--json"],
        ["stats", "--as-of", "2199-12-31", "--json"],
        ["notices", "send", "--dry-run", "--as-of", "2199-12-31", "--lead-days", "3650"],
    ):
        result = velory(env, args)
        assert_clean(result, {0})


def test_a_timeout_in_config_toml_is_checked_too(
    env: dict[str, str], fleet: Path, home: Path
) -> None:
    (home / "config.toml").write_text("busy_timeout = inf\n")
    result = velory(env, ["devices"])
    assert_clean(result, {78})
    assert "busy_timeout must be a number of seconds" in result.stderr


# ---- anything at all -----------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 3650, 3651, 2**31, 2**63, 10**20]),
).map(str)
TIMEOUTS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0", "-0", "", "soon", "0x10", "1_0"]),
)
DATES = st.one_of(
    st.dates().map(str),
    st.sampled_from(["9999-12-31", "0001-01-01", "1969-12-31", "2200-01-01", "2026-02-30"]),
    st.text(max_size=12),
)
ODD_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=12,
)


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[list[str], dict[str, str]]:
    """A command that reads a number, a date or a timeout, given any value for it."""
    kind = draw(st.sampled_from(["renewals", "stats", "notices", "import", "deliver", "env"]))
    if kind == "renewals":
        return ["renewals", "--as-of", draw(DATES), "--within", draw(NUMBERS), "--json"], {}
    if kind == "stats":
        return ["stats", "--as-of", draw(DATES), "--json"], {}
    if kind == "notices":
        args = ["notices", "send", "--dry-run", "--as-of", draw(DATES)]
        return [*args, "--lead-days", draw(NUMBERS), "--json"], {}
    if kind == "import":
        return ["import", "-", "--dry-run", "--term-months", draw(NUMBERS)], {}
    if kind == "deliver":
        return ["deliver", "ORD1", "--new-serial", "NEW1"], {
            "VELORY_TERM_MONTHS": draw(st.one_of(NUMBERS, ODD_TEXT))
        }
    variable = draw(
        st.sampled_from(
            ["VELORY_LEAD_DAYS", "VELORY_SMTP_TIMEOUT", "VELORY_BUSY_TIMEOUT", "VELORY_SMTP_PORT"]
        )
    )
    value = draw(st.one_of(NUMBERS, TIMEOUTS, ODD_TEXT))
    mail = {"VELORY_SMTP_HOST": "127.0.0.1", "VELORY_MAIL_FROM": "it@example.com"}
    # A run that got past its settings would try the mail server: none listens on port 9 of
    # the test machine, so a mailing run ends as a temporary failure, at once.
    return ["notices", "send", "--lead-days", "0", "--as-of", "1970-01-01"], {
        **mail,
        "VELORY_SMTP_PORT": "9",
        variable: value.replace("\x00", ""),
    }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command_lines())
def test_no_value_of_any_numeric_or_date_option_makes_a_traceback(
    env: dict[str, str], fleet: Path, command: tuple[list[str], dict[str, str]]
) -> None:
    args, extra_env = command
    result = velory(env, args, extra_env)
    assert_clean(result, {0, 1, 2, 65, 75, 78})
