"""Settings: where they come from, and the values no setting may take."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from velory_cli.config import MAX_TIMEOUT, Settings, load_settings
from velory_cli.errors import ConfigError


def settings(env: dict[str, str] | None = None, **file_values: object) -> Settings:
    return Settings(
        app_dir=Path("/nowhere"),
        db_path=Path("/nowhere/velory.db"),
        actor="tester",
        env=env or {},
        file_values=file_values,
    )


@pytest.mark.parametrize("raw", ["30", " 30 ", 30, "+30"])
def test_a_whole_number_reads_from_text_or_toml(raw: object) -> None:
    assert settings(lead_days=raw).integer("lead_days", 7, minimum=0, maximum=3650) == 30


@pytest.mark.parametrize(
    "raw",
    [
        "999999999",
        "99999999999999999999",
        "-1",
        "3651",
        "3.5",
        "nan",
        "inf",
        "",
        "x",
        "٣",
        3.0,
        math.inf,
        math.nan,
        True,
        [30],
    ],
)
def test_a_whole_number_out_of_range_or_not_whole_is_a_configuration_error(raw: object) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(lead_days=raw).integer("lead_days", 7, minimum=0, maximum=3650)
    assert raised.value.message.startswith("lead_days must be a whole number from 0 to 3650")


def test_the_environment_wins_and_is_checked_the_same() -> None:
    with pytest.raises(ConfigError):
        settings({"VELORY_LEAD_DAYS": "999999999"}, lead_days=30).integer(
            "lead_days", 7, minimum=0, maximum=3650
        )


@pytest.mark.parametrize("raw", ["0.05", "10", 30, 2.5, "86400"])
def test_a_timeout_is_a_positive_finite_number_of_seconds(raw: object) -> None:
    assert settings(smtp_timeout=raw).seconds("smtp_timeout", 30.0) == float(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        "nan",
        "inf",
        "-inf",
        "0",
        "-1",
        "1e300",
        "86401",
        "soon",
        "",
        math.nan,
        math.inf,
        0,
        True,
        None,
    ],
)
def test_any_other_timeout_is_a_configuration_error(raw: object) -> None:
    values = {} if raw is None else {"smtp_timeout": raw}
    env = {"VELORY_SMTP_TIMEOUT": raw} if isinstance(raw, str) and raw else {}
    if raw is None:
        # No value at all is the default, not an error.
        assert settings(env, **values).seconds("smtp_timeout", 30.0) == 30.0
        return
    with pytest.raises(ConfigError) as raised:
        settings(env, **values).seconds("smtp_timeout", 30.0)
    assert raised.value.message.startswith(
        f"smtp_timeout must be a number of seconds above 0 and up to {MAX_TIMEOUT:.0f}"
    )


@pytest.mark.parametrize("text", ["busy_timeout = inf", "busy_timeout = nan", "busy_timeout = 0"])
def test_busy_timeout_in_config_toml_is_checked(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.toml").write_text(text + "\n")
    loaded = load_settings({"VELORY_HOME": str(tmp_path)})
    with pytest.raises(ConfigError) as raised:
        loaded.busy_timeout  # noqa: B018
    assert "busy_timeout must be a number of seconds" in raised.value.message
