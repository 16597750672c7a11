"""velory import: add or update devices from CSV, JSON or JSON Lines."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from velory_cli.commands.common import FILE, JsonOption, N, examples, now_utc, output_mode, state
from velory_cli.config import DEFAULT_TERM_MONTHS
from velory_cli.errors import UsageError

if TYPE_CHECKING:
    from velory_cli.importer import ImportReport, RejectsWriter


def import_devices(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar=f"{FILE}|-",
            help="CSV (, ; or tab), JSON, JSON Lines, a workbook (.xlsx .xls .ods) or "
            "Snipe-IT's API answer; '-' reads stdin.",
            show_default=False,
        ),
    ],
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Import the valid rows even when others are not."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file and report; write nothing.")
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            metavar=FILE,
            help="Write the rejected rows here, as the file had them plus a reason column.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing --rejects file.")
    ] = False,
    dayfirst: Annotated[
        bool, typer.Option("--dayfirst", help="Read dates like 03/04/2026 as 3 April.")
    ] = False,
    monthfirst: Annotated[
        bool, typer.Option("--monthfirst", help="Read dates like 03/04/2026 as 4 March.")
    ] = False,
    term_months: Annotated[
        int,
        typer.Option(
            "--term-months",
            metavar=N,
            min=1,
            max=240,
            help="Renewal date = purchase date + this many months, where a row has none.",
        ),
    ] = DEFAULT_TERM_MONTHS,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            metavar="NAME",
            help="The file's encoding (default: UTF-8, else Windows-1252).",
            show_default=False,
        ),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            metavar="FIELD=HEADER",
            help="The header that holds a field, where the aliases do not find it "
            '(--column serial="Computer Serial"); repeatable.',
            show_default=False,
        ),
    ] = None,
    sheet: Annotated[
        str | None,
        typer.Option(
            "--sheet",
            metavar="NAME",
            help="The sheet of a workbook to read (default: the first).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Add or update devices from CSV, JSON, JSON Lines, a workbook or Snipe-IT's API."""
    from velory_cli import dates, importer

    mode = output_mode(json_out)
    if dayfirst and monthfirst:
        raise UsageError("choose one of --dayfirst and --monthfirst")
    options = importer.ImportOptions(
        skip_invalid=skip_invalid,
        dry_run=dry_run,
        date_order=dates.DAY_FIRST if dayfirst else dates.MONTH_FIRST if monthfirst else None,
        term_months=term_months,
        encoding=importer.check_encoding(encoding),
        columns=importer.parse_column_options(column or []),
        sheet=sheet,
    )
    stdin = _stdin() if file == "-" else None
    st = state(ctx)
    with (
        _interrupted(file),
        importer.open_source(file, stdin) as source,
        _rejects_file(rejects, force) as rejects_writer,
        st.new_or_existing_store(scratch=dry_run) as store,
        _progress(source.size, source.name) as progress,
    ):
        report = importer.import_file(
            store,
            source,
            options,
            now=now_utc(),
            actor=st.settings.actor,
            rejects=rejects_writer,
            progress=progress,
        )
        if report.file_error is not None and rejects_writer is not None:
            rejects_writer.discard = True
        if report.written:
            # The first import that writes a device is the one that creates the store.
            store.publish()
    _show(report, mode, rejects)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@contextmanager
def _interrupted(file: str) -> Iterator[None]:
    """Ctrl-C: the import's one transaction is rolled back on the way out (the store is as it
    was, no rejects file is left), and the admin is told so, with the shell's exit code for
    an interrupt."""
    try:
        yield
    except KeyboardInterrupt:
        from velory_cli import render

        name = "stdin" if file == "-" else file
        render.error(f"{name}: the import was interrupted; nothing was written")
        raise typer.Exit(130) from None


def _stdin() -> BinaryIO:
    """Standard input, for ``-`` only: cron runs velory with stdin closed (``<&-``), and an
    import of a named file must not need it."""
    from velory_cli.errors import InputUnreadable

    if sys.stdin is None:
        raise InputUnreadable("cannot read the devices from stdin: it is closed")
    return sys.stdin.buffer


@contextmanager
def _rejects_file(path: Path | None, force: bool) -> Iterator[RejectsWriter | None]:
    """The rejects file, written whole when the import has read the file as a table, and not
    at all when it could not (its temporary file is then thrown away)."""
    if path is None:
        yield None
        return
    from velory_cli.importer import RejectsWriter, WorkbookRejectsWriter
    from velory_cli.outputs import atomic_output, atomic_path, is_workbook_path

    class _Discard(Exception):
        pass

    try:
        if is_workbook_path(path):
            with atomic_path(path, force=force) as temp_name:
                book = WorkbookRejectsWriter(temp_name)
                try:
                    yield book
                finally:
                    book.close()
                if book.discard:
                    raise _Discard
        else:
            with atomic_output(path, force=force) as handle:
                writer = RejectsWriter(handle)
                yield writer
                if writer.discard:
                    raise _Discard
    except _Discard:
        pass


@contextmanager
def _progress(size: int | None, name: str) -> Iterator[Callable[[int], None] | None]:
    from velory_cli.importer import PROGRESS_MIN_BYTES

    if size is None or size < PROGRESS_MIN_BYTES:
        yield None
        return
    from velory_cli import render

    with render.progress_bar(size, f"Importing {name}") as update:
        yield update


def _show(report: ImportReport, mode: str, rejects: Path | None) -> None:
    from velory_cli import render
    from velory_cli.importer import SHOWN_ERRORS
    from velory_cli.wording import count, is_are, was_were

    for warning in report.warnings:
        render.warn(warning)
    if mode == "json":
        render.emit_json(report.to_dict())
    elif report.file_error is None:
        _table(report, SHOWN_ERRORS)
    if report.file_error is not None:
        where = f"row {report.file_error.row}: " if report.file_error.row else ""
        render.error(f"{report.source}: {where}{report.file_error.message}; nothing was written")
    elif report.failed:
        render.error(
            f"{report.rejected} of {report.rows} rows {is_are(report.rejected)} invalid; nothing"
            " was written. Fix them, or import the valid rows with --skip-invalid"
        )
    elif report.rejected:
        render.warn(
            f"{count(report.rejected, 'invalid row')} {was_were(report.rejected)} not imported"
        )
    if report.dry_run:
        render.info("Dry run: nothing was written.")
    if rejects is not None and report.file_error is None:
        render.info(f"Rejected rows written to {rejects}")


def _table(report: ImportReport, shown: int) -> None:
    from velory_cli import render as out
    from velory_cli.render import Column

    verb = (
        "Nothing imported from"
        if report.failed
        else "Would import"
        if report.dry_run
        else "Imported"
    )
    details = ", ".join(x for x in (report.format or "", report.encoding or "") if x)
    out.heading(f"{verb} {report.source}" + (f" ({details})" if details else ""))
    out.key_values(
        [
            ("Inserted", report.inserted),
            ("Updated", report.updated),
            ("Unchanged", report.unchanged),
            ("Skipped (removed)", report.skipped),
            ("Rejected", report.rejected),
        ]
    )
    errors = [error.to_dict() for error in report.errors]
    if not errors:
        return
    out.table(
        [
            Column("Row", "row", justify="right", no_wrap=True, need=1),
            Column("Column", "column", need=2),
            Column("Problem", "message", need=1, min_width=20),
        ],
        errors[:shown],
        title="Problems",
        all_rows=True,
        also="--json",
    )
    if len(errors) > shown:
        out.line(f"… and {len(errors) - shown} more (--json or --rejects FILE lists them all)")


def register(app: typer.Typer) -> None:
    app.command(
        "import",
        epilog=examples(
            "velory import devices.csv",
            "velory import devices.csv --dry-run --json | jq .errors",
            "velory import export.csv --monthfirst --skip-invalid --rejects rejects.csv",
            "curl -s https://assets.example.com/export.json | velory import -",
        ),
    )(import_devices)
