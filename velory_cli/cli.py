"""The Typer app: the root callback (global options) and the commands' registration.

Errors are translated here, once: a ``VeloryError`` raised anywhere below becomes its message on
stderr and its exit code; a SQLite error becomes the store error it stands for.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from velory_cli import __version__
from velory_cli.commands import common
from velory_cli.errors import VeloryError


class VeloryGroup(TyperGroup):
    """The root group: turns expected failures into a one-line message and the exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except VeloryError as exc:
            _fail(exc)
        except sqlite3.Error as exc:
            from velory_cli.store import describe_sqlite_error

            st = common.state(ctx)
            _fail(describe_sqlite_error(exc, st.settings.db_path))
        except BrokenPipeError:
            # `velory devices --json | head`: the reader has all it wanted.
            sys.stderr.close()
            raise typer.Exit(0) from None


def _fail(exc: VeloryError) -> None:
    from velory_cli import render

    render.error(exc.message)
    raise typer.Exit(int(exc.exit_code))


app = typer.Typer(
    cls=VeloryGroup,
    name="velory",
    help="Run the renewal of company devices bought outside Velory: import, notices, returns.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
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
            "--db", envvar="VELORY_DB", metavar="PATH", help="The store file.", show_default=False
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
    st = common.state(ctx)
    st.db = db
    st.actor = actor


def _register() -> None:
    from velory_cli.commands import admin, demo, flow, importing, notices, views

    for module in (importing, views, flow, notices, admin, demo):
        module.register(app)


_register()


def main() -> None:
    app()
