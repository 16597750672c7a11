"""What every command shares: the global options, the store, the clock and the output mode."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from velory_cli.config import Settings, StoreLocation, load_settings, store_location
from velory_cli.errors import StoreUnusable, UsageError

if TYPE_CHECKING:
    from velory_cli.store import Store


@dataclass
class AppState:
    """The root callback's options; settings are read when a command first needs them."""

    db: str | None = None
    # False when Click read --db from VELORY_DB: an error names what chose the path.
    db_from_command_line: bool = True
    actor: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.env, db=self.db, actor=self.actor)
        return self._settings

    @property
    def store_location(self) -> StoreLocation:
        return store_location(self.env, self.db, db_from_command_line=self.db_from_command_line)

    def require_store(self) -> None:
        """A store must be where this run looks: a cron job pointed at the wrong place must fail
        loudly (74) every run, not find a new, empty store with nothing due. Checked before
        anything else a command reads (its settings, its files), so this is the error it
        gives."""
        location = self.store_location
        try:
            os.stat(location.path)
        except (FileNotFoundError, NotADirectoryError):
            raise StoreUnusable(
                f"no store at {location.path} ({location.describe()}); velory import FILE "
                "creates it, or velory db init an empty one"
            ) from None
        except OSError:
            return  # there, but not for this user to look at: opening it says so

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The store, which must exist: only ``velory import`` and ``velory db init`` create
        one (``new_or_existing_store``)."""
        from velory_cli.store import Store

        self.require_store()
        settings = self.settings
        with Store.open(
            settings.db_path, busy_timeout=settings.busy_timeout, create=False
        ) as store:
            yield store

    @contextmanager
    def new_or_existing_store(self, *, scratch: bool = False) -> Iterator[Store]:
        """The store, or where there is none a new one that comes into being only when the
        command calls ``publish()`` on it (see ``Store.open_or_create``); ``scratch``: a dry
        run's, never put in place."""
        from velory_cli.store import Store

        settings = self.settings
        with Store.open_or_create(
            settings.db_path, busy_timeout=settings.busy_timeout, scratch=scratch
        ) as store:
            yield store


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def now_utc() -> str:
    """The time of a change, as history records it: UTC, to the second, ISO 8601."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def today_local() -> date:
    return datetime.now().astimezone().date()


def parse_as_of(value: str | None) -> date:
    """--as-of: a date written as an import takes it (2026-12-01, 01.12.2026, 2026/12/01, or
    12/1/2026 where only one reading is possible), default today's local date. Every command's
    --as-of comes through here, so what it accepts is decided once: only the years an imported
    date may have, since a day near the calendar's end (9999-12-31) has no "30 days later" to
    count to."""
    if value is None:
        return today_local()
    from velory_cli.dates import FIRST_YEAR, LAST_YEAR, DateError, parse_date

    text = value.strip()
    try:
        return date.fromisoformat(parse_date(text))
    except DateError as exc:
        if exc.message.endswith(f"velory takes years {FIRST_YEAR} to {LAST_YEAR}"):
            raise UsageError(
                f"--as-of {text} is out of range: velory takes years {FIRST_YEAR} to {LAST_YEAR}"
            ) from None
        raise UsageError(f"--as-of: {exc.message}") from None


def output_mode(json_out: bool, csv_out: bool = False) -> str:
    if json_out and csv_out:
        raise UsageError("choose one of --json and --csv")
    return "json" if json_out else "csv" if csv_out else "table"


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of a table.")
]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV on stdout instead of a table.")]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Print nothing when all went well (for cron)."),
]


# Placeholders for --help, one word each, the same in every command: what goes there.
SERIAL = "SERIAL"
FILE = "FILE"
DATE = "DATE"
EMAIL = "EMAIL"
N = "N"
TEXT = "TEXT"
DIR = "DIR"
NAME = "NAME"

LimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit",
        metavar=N,
        min=1,
        help="Show at most N rows in the table (default 200 at a terminal; a pipe gets all).",
        show_default=False,
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Show every row in the table.")]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar=DATE,
        help="The day to count from (default today), written like 2026-12-01 or 01.12.2026.",
        show_default=False,
    ),
]

ExcludeDistributorOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude-distributor",
        metavar=TEXT,
        help="Leave out distributors whose name contains this, any case (repeatable).",
        show_default=False,
    ),
]


def check_limit(limit: int | None, all_rows: bool) -> None:
    if limit is not None and all_rows:
        raise UsageError("choose one of --limit and --all")


def examples(*lines: str) -> str:
    """A command's epilog: example command lines, shown as written (Click rewraps every
    paragraph of help text except one that starts with \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


class VeloryCommand(TyperCommand):
    """A command whose usage line reads ``velory show SERIAL``: Typer writes a required
    argument as ``{SERIAL}``, which reads like a shell brace, not a placeholder."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [
            piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
            for piece in super().collect_usage_pieces(ctx)
        ]


class StoreCommand(VeloryCommand):
    """A command that needs the store: once Click has read its options (a usage error and
    --help come first), a missing store is found before the command does anything else."""

    def invoke(self, ctx: Any) -> Any:
        state(ctx).require_store()
        return super().invoke(ctx)


class VeloryTyper(typer.Typer):
    """A Typer app whose commands are ``VeloryCommand``s, for velory's commands and groups."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", VeloryCommand)
        return super().command(*args, **kwargs)


def group(name: str | None = None, help: str | None = None) -> typer.Typer:
    """The app a module registers its commands on, or a group of commands (``notices``)."""
    return VeloryTyper(
        name=name,
        help=help,
        no_args_is_help=name is not None,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
