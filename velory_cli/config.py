"""Where settings come from: command-line options, VELORY_* environment, config.toml, defaults.

Only the CLI reads the real environment; it hands ``os.environ`` (or a test's own mapping) to
``load_settings``, so tests configure instead of patching.
"""

from __future__ import annotations

import getpass
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from velory_cli.errors import ConfigError

APP_NAME = "velory"
CONFIG_FILE = "config.toml"
DB_FILE = "velory.db"
DEFAULT_BUSY_TIMEOUT = 10.0
DEFAULT_TERM_MONTHS = 36
DEFAULT_LEAD_DAYS = 30
# The furthest ahead a listing or a notice run looks (--within, --lead-days, lead_days): ten
# years, beyond any device's term; more is a typo, and days that far out are no dates at all.
MAX_DAYS_AHEAD = 3650
# The longest term a delivered device gets (term_months), as --term-months takes it: 20 years.
MAX_TERM_MONTHS = 240
# The longest wait for the store or the mail server: a day. A longer one is a typo, and one
# past what the system's clock can count makes SQLite wait not at all.
MAX_TIMEOUT = 86_400.0

# config.toml keys that the environment may also set, as VELORY_<KEY upper-cased>.
MAIL_KEYS = ("smtp_host", "smtp_port", "smtp_user", "smtp_password", "smtp_tls", "mail_from")


def app_dir(env: Mapping[str, str]) -> Path:
    """The app directory: VELORY_HOME, else the platform's folder for an app's settings, where
    Click's ``get_app_dir`` puts it (``$XDG_CONFIG_HOME/velory``, else ``~/.config/velory``, on
    Linux). Written out here, reading ``env``, so that tests configure instead of patching and no
    run pays for importing Click beside Typer's own copy of it."""
    if env.get("VELORY_HOME"):
        return Path(env["VELORY_HOME"]).expanduser()
    if sys.platform == "win32":
        return Path(env.get("APPDATA") or Path.home()) / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / APP_NAME


def default_actor(env: Mapping[str, str]) -> str:
    if env.get("VELORY_ACTOR", "").strip():
        return env["VELORY_ACTOR"].strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name: a container or cron without a passwd entry
        return "unknown"


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about where and as whom it runs."""

    app_dir: Path
    db_path: Path
    actor: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    file_values: Mapping[str, Any] = field(default_factory=dict, repr=False)
    config_path: Path | None = None

    def value(self, key: str, default: Any = None) -> Any:
        """A setting by its config.toml key; VELORY_<KEY> in the environment wins."""
        env_key = "VELORY_" + key.upper()
        if env_key in self.env and self.env[env_key] != "":
            return self.env[env_key]
        return self.file_values.get(key, default)

    def flag(self, key: str, default: bool) -> bool:
        raw = self.value(key, default)
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{key} must be true or false, not {raw!r}")

    def integer(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        """A whole number from ``minimum`` to ``maximum``: anything else is a configuration
        error naming the setting, never an overflow further on."""
        raw = self.value(key, default)
        number: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            number = raw
        elif isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d{1,9}\s*", raw, re.ASCII):
            number = int(raw)
        if number is None or not minimum <= number <= maximum:
            raise ConfigError(
                f"{key} must be a whole number from {minimum} to {maximum}, not {raw!r}"
            )
        return number

    def seconds(self, key: str, default: float) -> float:
        """A timeout: a positive, finite number of seconds up to a day (``nan`` and ``inf``
        are numbers to ``float()``, not timeouts)."""
        import math

        raw = self.value(key, default)
        try:
            number = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and 0 < number <= MAX_TIMEOUT):
            raise ConfigError(
                f"{key} must be a number of seconds above 0 and up to {MAX_TIMEOUT:.0f}, "
                f"not {raw!r}"
            )
        return number

    @property
    def busy_timeout(self) -> float:
        return self.seconds("busy_timeout", DEFAULT_BUSY_TIMEOUT)


def read_config_file(path: Path) -> dict[str, Any]:
    """The values of config.toml, or none when there is no such file."""
    import tomllib

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class StoreLocation:
    """Where the store is, and what chose that path: ``--db``, ``VELORY_DB``, ``VELORY_HOME``
    or the default. An admin whose cron job finds no store needs to know which to fix."""

    path: Path
    chosen_by: str

    def describe(self) -> str:
        if self.chosen_by == "--db":
            return "given with --db"
        if self.chosen_by == "VELORY_DB":
            return "from VELORY_DB"
        if self.chosen_by == "VELORY_HOME":
            return f"{DB_FILE} in VELORY_HOME"
        return f"the default, {DB_FILE} in the app directory; VELORY_HOME or --db names another"


def store_location(
    env: Mapping[str, str], db: str | None = None, *, db_from_command_line: bool = True
) -> StoreLocation:
    """The store's path from ``--db`` (``db``; from VELORY_DB when not given on the command
    line), VELORY_DB, VELORY_HOME or the default. It needs no config file: a store that is
    missing is found before a broken config.toml."""
    if db:
        return StoreLocation(Path(db).expanduser(), "--db" if db_from_command_line else "VELORY_DB")
    if env.get("VELORY_DB"):
        return StoreLocation(Path(env["VELORY_DB"]).expanduser(), "VELORY_DB")
    chosen_by = "VELORY_HOME" if env.get("VELORY_HOME") else "default"
    return StoreLocation(app_dir(env) / DB_FILE, chosen_by)


def load_settings(
    env: Mapping[str, str], *, db: str | None = None, actor: str | None = None
) -> Settings:
    home = app_dir(env)
    config_path = home / CONFIG_FILE
    if env.get("VELORY_CONFIG"):
        config_path = Path(env["VELORY_CONFIG"]).expanduser()
    return Settings(
        app_dir=home,
        db_path=store_location(env, db).path,
        actor=(actor or "").strip() or default_actor(env),
        env=dict(env),
        file_values=read_config_file(config_path),
        config_path=config_path,
    )


def config_is_private(path: Path) -> bool:
    """False when a config file is readable by group or others."""
    try:
        return (path.stat().st_mode & 0o077) == 0
    except OSError:
        return True


__all__ = [
    "DEFAULT_LEAD_DAYS",
    "DEFAULT_TERM_MONTHS",
    "MAIL_KEYS",
    "MAX_DAYS_AHEAD",
    "MAX_TERM_MONTHS",
    "MAX_TIMEOUT",
    "Settings",
    "StoreLocation",
    "app_dir",
    "config_is_private",
    "load_settings",
    "store_location",
]
