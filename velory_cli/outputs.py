"""Output files written whole or not at all: a temporary file beside the target, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from velory_cli.errors import OutputUnwritable


@contextmanager
def atomic_output(path: Path, *, force: bool = False, newline: str = "") -> Iterator[IO[str]]:
    """Write ``path`` (UTF-8) through a temporary file; an existing file needs ``force``."""
    path = Path(path)
    if path.is_dir():
        raise OutputUnwritable(f"{path} is a folder; name the file to write")
    if path.exists() and not force:
        raise OutputUnwritable(f"{path} already exists; use --force to overwrite it")
    if is_velory_store(path):
        raise OutputUnwritable(
            f"{path} is a velory store; velory never writes over one, not even with --force"
        )
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    except OSError as exc:
        raise OutputUnwritable(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            yield handle
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except OSError as exc:
        discard(temp_name)
        raise OutputUnwritable(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        discard(temp_name)
        raise


def is_velory_store(path: Path) -> bool:
    """True for a file that starts as a velory store does (SQLite, application_id "VELY"):
    an export or a rejects file given the store's name by mistake must not replace it."""
    from velory_cli.store import APPLICATION_ID, SQLITE_HEADER

    try:
        with open(path, "rb") as handle:
            head = handle.read(72)
    except OSError:
        return False
    return head.startswith(SQLITE_HEADER) and head[68:72] == APPLICATION_ID.to_bytes(4, "big")


def discard(name: str) -> None:
    """Remove a temporary file that will not be used, if it is still there."""
    with suppress(OSError):
        os.unlink(name)
