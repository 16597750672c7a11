"""Output files written whole or not at all: a temporary file beside the target, then a rename.

Only ever regular files, and private ones. A rename puts a new file in the target's place
whatever the target was, so one that is not a regular file is refused before anything is
written, ``--force`` or not: ``--output /dev/null --force`` would otherwise replace the device
node with a file of names and emails, and a named pipe or a socket some other program listens
on would silently stop being one. Everything velory writes from the store names people, so
every output file is readable by its owner only, whatever the umask.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from velory_cli.errors import OutputUnwritable

# The mode of every file velory writes that holds personal data.
PRIVATE_FILE = 0o600


@contextmanager
def atomic_output(path: Path, *, force: bool = False, newline: str = "") -> Iterator[IO[str]]:
    """Write ``path`` (UTF-8) through a temporary file; an existing file needs ``force``."""
    path = Path(path)
    check_target(path, force=force)
    temp_name = private_temp_file(path)
    try:
        with open(temp_name, "w", encoding="utf-8", newline=newline) as handle:
            yield handle
        os.replace(temp_name, path)
    except OSError as exc:
        discard(temp_name)
        raise OutputUnwritable(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        discard(temp_name)
        raise


def check_target(path: Path, *, force: bool, store_allowed: bool = False) -> None:
    """Refuse to write ``path`` when it exists and is not a regular file (whatever ``force``
    says), when it exists and ``force`` is not given, and when it is a velory store (unless
    ``store_allowed``: a backup replaces an older backup)."""
    if not is_existing_file(path):
        return
    if not force:
        raise OutputUnwritable(f"{path} already exists; use --force to overwrite it")
    if not store_allowed and is_velory_store(path):
        raise OutputUnwritable(
            f"{path} is a velory store; velory never writes over one, not even with --force"
        )


def is_existing_file(path: Path) -> bool:
    """True when a regular file is at ``path``, False when nothing is (a dangling link
    included); OutputUnwritable for a folder, a device, a named pipe or a socket, also behind a
    link (``ln -s /dev/null out.csv``)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputUnwritable(f"cannot write {path}: {exc.strerror}") from None
    if stat.S_ISREG(mode):
        return True
    if stat.S_ISDIR(mode):
        raise OutputUnwritable(f"{path} is a folder; name the file to write")
    raise OutputUnwritable(
        f"{path} is {_kind(mode)}, not a regular file; velory writes only regular files, "
        "not even with --force"
    )


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def private_temp_file(path: Path) -> str:
    """A new, empty temporary file beside ``path``, readable by its owner only (mkstemp makes
    it so; said again here, since the file is renamed into place as it is)."""
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    except OSError as exc:
        raise OutputUnwritable(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return temp_name


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
