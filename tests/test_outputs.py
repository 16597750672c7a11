"""Output files: whole or absent, only ever regular files, and private."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from velory_cli.errors import OutputUnwritable
from velory_cli.outputs import atomic_output, check_target, is_existing_file


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def folder(path: Path) -> Path:
    path.mkdir()
    return path


def link_to_null(path: Path) -> Path:
    path.symlink_to(os.devnull)
    return path


def link_to_fifo(path: Path) -> Path:
    path.symlink_to(fifo(path.with_name(path.name + ".pipe")))
    return path


SPECIAL: dict[str, tuple[Callable[[Path], Path], str]] = {
    "fifo": (fifo, "is a named pipe, not a regular file"),
    "folder": (folder, "is a folder"),
    "link to /dev/null": (link_to_null, "is a device, not a regular file"),
    "link to a fifo": (link_to_fifo, "is a named pipe, not a regular file"),
}


@pytest.fixture
def restore_umask() -> Iterator[None]:
    """The test may set any umask; the next test gets the one it had."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("kind", list(SPECIAL))
def test_a_target_that_is_not_a_regular_file_is_refused_force_or_not(
    tmp_path: Path, kind: str, force: bool
) -> None:
    make, message = SPECIAL[kind]
    target = make(tmp_path / "out.csv")
    before = os.lstat(target)
    with pytest.raises(OutputUnwritable) as raised, atomic_output(target, force=force) as handle:
        handle.write("names and emails\n")
    assert raised.value.exit_code == 73
    assert message in raised.value.message
    assert "\n" not in raised.value.message
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("mask", [0o022, 0o000, 0o077])
def test_an_output_file_is_private_whatever_the_umask(
    tmp_path: Path, restore_umask: None, mask: int
) -> None:
    os.umask(mask)
    target = tmp_path / "export.csv"
    with atomic_output(target) as handle:
        handle.write("serial\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # Replacing a file others could read leaves a private one in its place.
    target.chmod(0o644)
    with atomic_output(target, force=True) as handle:
        handle.write("serial\nA1\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "serial\nA1\n"


def test_a_dangling_link_is_no_file_and_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.symlink_to(tmp_path / "gone" / "elsewhere.csv")
    assert is_existing_file(target) is False
    with atomic_output(target) as handle:
        handle.write("x\n")
    assert not target.is_symlink() and target.read_text() == "x\n"


def test_a_regular_file_needs_force_and_a_store_is_allowed_only_to_a_backup(
    tmp_path: Path,
) -> None:
    from velory_cli.store import Store

    store_path = tmp_path / "velory.db"
    Store.open(store_path).close()
    with pytest.raises(OutputUnwritable, match="--force"):
        check_target(store_path, force=False, store_allowed=True)
    with pytest.raises(OutputUnwritable, match="is a velory store"):
        check_target(store_path, force=True)
    check_target(store_path, force=True, store_allowed=True)
    check_target(tmp_path / "new.csv", force=False)
