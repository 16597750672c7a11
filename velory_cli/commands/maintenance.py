"""velory db backup, velory db check: looking after the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from velory_cli.commands.common import FILE, JsonOption, examples, group, state

db_app = group(
    "db", "Look after the store: create an empty one (db init), back it up, check its health."
)


@db_app.command(
    "init",
    epilog=examples(
        "velory db init",
        "VELORY_HOME=/var/lib/velory velory db init   # before the first cron run",
    ),
)
def init(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Create an empty store where --db, VELORY_DB or VELORY_HOME say (the first import creates
    one too). A velory store that is there already is left as it is."""
    from velory_cli import render
    from velory_cli.maintenance import init_store

    st = state(ctx)
    with st.new_or_existing_store() as store:
        report = init_store(store)
    if json_out:
        render.emit_json(report.to_dict())
    elif report.created:
        render.info(f"Created an empty store at {report.path}.")
    else:
        render.info(f"{report.path} is a velory store already: unchanged.")


@db_app.command(
    "backup",
    epilog=examples(
        "velory db backup /var/backups/velory/velory-2026-12-01.db",
        "velory db backup nightly.db --force     # replace last night's copy",
    ),
)
def backup(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(metavar=FILE, help="The backup file to write.", show_default=False)
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Copy the store to FILE, consistent even while other commands write to it."""
    from velory_cli import render
    from velory_cli.maintenance import backup_store

    with state(ctx).store() as store:
        written = backup_store(store, file, force=force)
    if json_out:
        render.emit_json({"backup": str(written), "bytes": written.stat().st_size})
    else:
        render.info(f"Backed up the store to {written}.")


@db_app.command(
    "check",
    epilog=examples(
        "velory db check",
        "velory --db /var/backups/velory/velory-2026-12-01.db db check   # check a backup",
    ),
)
def check(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Check the store: integrity, foreign keys, schema version, orphans, stuck notices."""
    from velory_cli import render
    from velory_cli.maintenance import check_store

    with state(ctx).store() as store:
        report = check_store(store, now=datetime.now(UTC))
    if json_out:
        render.emit_json(report.to_dict())
    else:
        for item in report.checks:
            render.line(f"{'ok  ' if item.ok else 'FAIL'}  {item.name}", None if item.ok else "red")
            for problem in item.problems:
                render.line(f"      {problem}")
        render.line(
            f"{report.path}: schema {report.schema_version}, "
            + ("all checks passed." if report.ok else "problems found.")
        )
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
