"""What an import did, and every problem by the row and column an admin finds it at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# How many rows of errors a table for people shows; --json and --rejects have them all.
SHOWN_ERRORS = 200


@dataclass(frozen=True)
class RowError:
    """One problem: the row it is on (None for the whole file), the column as the file spells
    it (None when it is not about one column), and what is wrong."""

    row: int | None
    column: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class ImportReport:
    """What an import did (or, dry run, would do), row by row where something is wrong."""

    source: str
    dry_run: bool
    skip_invalid: bool
    format: str | None = None
    encoding: str | None = None
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # A problem with the whole file (not a table, no serial column, invalid JSON): nothing read.
    file_error: RowError | None = None
    written: bool = False

    @property
    def failed(self) -> bool:
        """True when nothing was (or would be) written because the data is invalid."""
        return self.file_error is not None or (self.rejected > 0 and not self.skip_invalid)

    @property
    def exit_code(self) -> int:
        from velory_cli.errors import ExitCode

        return int(ExitCode.DATA_INVALID) if self.failed else int(ExitCode.OK)

    @property
    def valid(self) -> int:
        return self.rows - self.rejected

    def to_dict(self) -> dict[str, Any]:
        errors = [e.to_dict() for e in self.errors]
        if self.file_error is not None:
            errors.append(self.file_error.to_dict())
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "dry_run": self.dry_run,
            "errors": errors,
            "file": self.source,
            "format": self.format,
            "encoding": self.encoding,
            "rows": self.rows,
            "valid": self.valid,
            "written": self.written,
            "warnings": list(self.warnings),
        }


def add_error(
    errors: list[RowError] | None, row: int, column: str | None, message: str
) -> list[RowError]:
    """``errors`` with one more; most rows have none, so a row's list is made with its first."""
    if errors is None:
        errors = []
    errors.append(RowError(row, column, message))
    return errors
