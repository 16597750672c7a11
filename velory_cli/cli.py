"""The Typer app: the root callback (global options) and the commands' registration.

Errors are translated here, once: a ``VeloryError`` raised anywhere below becomes its message on
stderr and its exit code; a SQLite error becomes the store error it stands for.

Start-up stays fast: a run imports and builds only the command it runs. ``COMMANDS`` names
each command's module and the first line of its help, so ``velory --help`` lists them all and
``velory --version`` answers without building any (a test holds the lines to the commands).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from velory_cli import __version__
from velory_cli.errors import VeloryError

# Every command, in the order --help lists them: its module in velory_cli.commands (whose
# register(app) adds it) and the first paragraph of its help.
COMMANDS: dict[str, tuple[str, str]] = {
    "import": (
        "importer",
        "Add or update devices from CSV, JSON, JSON Lines, a workbook or Snipe-IT's API.",
    ),
    "devices": ("inventory", "Company assets: every device not removed."),
    "show": ("inventory", "One device with its notes, history and notices."),
    "hardware": ("inventory", "The user's hardware view: their devices not removed."),
    "export": (
        "inventory",
        "Every device, removed ones too, as CSV, JSON or a workbook (--output FILE.xlsx).",
    ),
    "start": ("lifecycle", "The user started the renewal process: status renewal_started."),
    "order": (
        "lifecycle",
        "The replacement the user requested in the store (one per renewing device).",
    ),
    "deliver": (
        "lifecycle",
        "The replacement arrived: it becomes an active store device of the same user.",
    ),
    "confirm-return": (
        "lifecycle",
        "The admin confirms the old devices were returned (or bought out).",
    ),
    "release": ("lifecycle", "Mark devices as released: status removed."),
    "retire": (
        "lifecycle",
        "Take lost, stolen or broken devices out of the assets: status removed, any status.",
    ),
    "note": ("lifecycle", "Add a note to a device."),
    "edit": (
        "lifecycle",
        "Change a device's user, model, distributor or dates, checked as an import checks them.",
    ),
    "reinstate": (
        "lifecycle",
        "Undo a release or a retirement: back to the status it had, the reason in the history.",
    ),
    "renewals": (
        "due",
        "Devices renewing within --within days of --as-of, overdue ones too, soonest first.",
    ),
    "todo": (
        "due",
        "What waits for an admin: returns, releases, deliveries awaited, users to chase.",
    ),
    "stats": (
        "due",
        "Devices by status and distributor, and renewals per month for the next 12 months.",
    ),
    "demo": (
        "demo",
        "A guided run of the whole renewal flow on the sample data, in a throwaway store.",
    ),
    "digest": (
        "digest",
        "Mail the admins what waits for them: users to chase, returns, releases, failures, MDM.",
    ),
    "notices": (
        "notices",
        "Mail the due notices (cron), list them, retry failed ones.",
    ),
    "db": (
        "maintenance",
        "Look after the store: create an empty one (db init), back it up, check its health.",
    ),
    "mdm": ("mdm", "Compare the register with MDM exports: import, check."),
}

# The commands that run where there is no store yet: the two that create one (an import that
# writes something, and db init) and the demo, which makes its own. Every other command first
# makes sure the store is there (exit 74 when not), before it reads any setting or file.
CREATE_STORE = frozenset({"import", "db init", "demo"})


class _Commands(MutableMapping[str, Any]):
    """The root group's commands, each built (its module imported, its options read by
    Typer) the first time it is looked up, with the others of its module."""

    def __init__(self, built: MutableMapping[str, Any]) -> None:
        self.built = dict(built)

    def __getitem__(self, name: str) -> Any:
        if name not in self.built and name in COMMANDS:
            self.built.update(_build(COMMANDS[name][0]))
        return self.built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self.built[name] = command

    def __delitem__(self, name: str) -> None:
        del self.built[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self.built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(1 for name in self.built if name not in COMMANDS)


def _build(module_name: str) -> dict[str, Any]:
    """The commands a module of velory_cli.commands registers, as Typer builds them."""
    from importlib import import_module

    from velory_cli.commands.common import group

    module = import_module(f"velory_cli.commands.{module_name}")
    commands = group()
    module.register(commands)
    _store_first(commands)
    return dict(typer.main.get_group(commands).commands)


def _store_first(commands: typer.Typer, prefix: str = "") -> None:
    """Make every command registered on ``commands`` (its groups' too) but those of
    ``CREATE_STORE`` a ``StoreCommand``."""
    from velory_cli.commands.common import StoreCommand, VeloryCommand

    for info in commands.registered_commands:
        if prefix + (info.name or "") not in CREATE_STORE and info.cls in (
            None,
            TyperCommand,
            VeloryCommand,
        ):
            info.cls = StoreCommand
    for group in commands.registered_groups:
        if group.typer_instance is not None:
            _store_first(group.typer_instance, f"{prefix}{group.name} ")


class VeloryGroup(TyperGroup):
    """The root group: turns expected failures into a one-line message and the exit code,
    and builds a command only when it is run (or its help shown)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The commands and their summaries, whole (wrapped, never cut short), without
        building any."""
        names = self.list_commands(ctx)
        rows = [
            (name, COMMANDS[name][1] if name in COMMANDS else self.commands[name].help or "")
            for name in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except VeloryError as exc:
            _fail(exc)
        except BrokenPipeError:
            # `velory devices --json | head`: the reader has all it wanted.
            if sys.stderr is not None:
                sys.stderr.close()
            raise typer.Exit(0) from None
        except Exception as exc:
            # A SQLite error (only a run that imported sqlite3 can have one): the store error
            # it stands for.
            sqlite3 = sys.modules.get("sqlite3")
            if sqlite3 is None or not isinstance(exc, sqlite3.Error):
                raise
            from velory_cli.commands import common
            from velory_cli.store import describe_sqlite_error

            st = common.state(ctx)
            _fail(describe_sqlite_error(exc, st.settings.db_path))


def _fail(exc: VeloryError) -> None:
    from velory_cli import render

    render.error(exc.message)
    raise typer.Exit(int(exc.exit_code))


def _exit_codes() -> str:
    from velory_cli.errors import MEANINGS

    return "\b\nExit codes:\n" + "\n".join(
        f"  {int(code):>2}  {meaning}" for code, meaning in MEANINGS.items()
    )


app = typer.Typer(
    cls=VeloryGroup,
    name="velory",
    help="Run the renewal of company devices bought outside Velory: import, notices, returns.",
    epilog=(
        "\b\nStart with:\n  velory demo                 a guided tour on sample data\n"
        "  velory import devices.csv   then: velory renewals, velory todo\n"
        "Each command's --help has examples.\n\n" + _exit_codes()
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    # `velory --install-completion` adds tab completion to the admin's shell.
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"velory {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="VELORY_DB",
            metavar="PATH",
            help="The store file (only import and db init create one).",
            show_default=False,
        ),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            metavar="NAME",
            help="Who makes the change, for the history (default VELORY_ACTOR, login).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """velory: the renewal of devices bought outside Velory, from import to removal."""
    from velory_cli.commands import common

    st = common.state(ctx)
    st.db = db
    source = ctx.get_parameter_source("db")
    st.db_from_command_line = source is None or source.name != "ENVIRONMENT"
    st.actor = actor


def main() -> None:
    app()
