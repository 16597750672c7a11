"""The disk and the file system against velory: a disk that fills up mid-write (a file size
limit, RLIMIT_FSIZE, with SIGXFSZ ignored so the write fails as on a full disk), a read-only
store, an unreadable one, a folder that cannot be created, a store from a newer velory, a
corrupt one. Each is one line on stderr with its exit code (74 for the store, 73 for an output
file), never a traceback, and the store exactly as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import velory_command
from tests.factory import device_values
from tests.faultkit import (
    assert_clean_failure,
    assert_no_traceback,
    assert_store_sound,
    file_size_limit,
    fingerprint,
    run,
    seed,
    velory_env,
    write_import_csv,
)
from velory_cli import migrations

pytestmark = [pytest.mark.faults, pytest.mark.subprocess]

# No file may grow past this: far more than a command that only reads needs, far less than a
# large import, a bulk release or an export writes.
LIMIT = 256 << 10


@pytest.fixture
def venv(env: dict[str, str]) -> dict[str, str]:
    return velory_env(env)


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """A store of 3,000 devices, 2,000 of them confirmed returned: larger than LIMIT."""
    db = tmp_path / "fleet" / "velory.db"
    seed(
        db,
        [
            *(device_values(f"RC{n:05d}", status="return_confirmed") for n in range(2_000)),
            *(device_values(f"AC{n:05d}") for n in range(1_000)),
        ],
    )
    assert db.stat().st_size > LIMIT
    return db


def leftovers(folder: Path, before: set[str]) -> set[str]:
    """Files that appeared in ``folder``, SQLite's -wal and -shm aside."""
    now = {p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm"))}
    return now - before


# ---- a disk that fills up mid-write ----------------------------------------------------------


def test_an_import_that_fills_the_disk_changes_nothing(
    fleet: Path, tmp_path: Path, venv: dict[str, str]
) -> None:
    source = write_import_csv(tmp_path / "fleet.csv", 20_000)
    before = fingerprint(fleet)

    for extra in ([], ["--json"]):
        result = run(
            ["--db", str(fleet), "import", str(source), *extra],
            venv,
            tmp_path,
            preexec_fn=file_size_limit(LIMIT),
        )
        assert_clean_failure(result, 74, str(fleet), "nothing was changed")
        assert fingerprint(fleet) == before
    assert_store_sound(fleet, venv, tmp_path)
    fine = run(["--db", str(fleet), "import", str(source), "--json"], venv, tmp_path)
    assert fine.returncode == 0, str(fine)


def test_a_bulk_release_that_fills_the_disk_changes_nothing(
    fleet: Path, tmp_path: Path, venv: dict[str, str]
) -> None:
    listing = tmp_path / "released.txt"
    listing.write_text("\n".join(f"RC{n:05d}" for n in range(2_000)) + "\n", encoding="utf-8")
    before = fingerprint(fleet)

    result = run(
        ["--db", str(fleet), "release", "--file", str(listing), "--yes", "--json"],
        venv,
        tmp_path,
        preexec_fn=file_size_limit(LIMIT),
    )

    assert_clean_failure(result, 74, "cannot write the store", "nothing was changed")
    assert fingerprint(fleet) == before
    assert_store_sound(fleet, venv, tmp_path)


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["csv", "json"])
def test_an_export_that_fills_the_disk_leaves_no_file(
    fleet: Path, tmp_path: Path, venv: dict[str, str], extra: list[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / "devices.csv"
    before = fingerprint(fleet)

    result = run(
        ["--db", str(fleet), "export", *extra, "--output", str(target)],
        venv,
        tmp_path,
        preexec_fn=file_size_limit(LIMIT),
    )

    assert_clean_failure(result, 73, str(target))
    assert list(out.iterdir()) == []  # neither the file nor its temporary half
    assert fingerprint(fleet) == before


def test_an_existing_export_survives_a_disk_that_fills_up(
    fleet: Path, tmp_path: Path, venv: dict[str, str]
) -> None:
    target = tmp_path / "devices.csv"
    target.write_text("yesterday's export\n", encoding="utf-8")

    result = run(
        ["--db", str(fleet), "export", "--output", str(target), "--force"],
        venv,
        tmp_path,
        preexec_fn=file_size_limit(LIMIT),
    )

    assert_clean_failure(result, 73, str(target))
    assert target.read_text(encoding="utf-8") == "yesterday's export\n"


@pytest.mark.parametrize(
    "args",
    [
        ["export"],
        ["export", "--json"],
        ["devices", "--csv"],
        ["devices", "--json"],
        ["devices"],
        ["show", "AC00001"],
        ["stats"],
    ],
    ids=lambda args: "-".join(args),
)
def test_results_on_a_stdout_that_fills_up_are_a_clean_73(
    fleet: Path, tmp_path: Path, venv: dict[str, str], args: list[str]
) -> None:
    """`velory export > /full/disk/devices.csv`: the shell's file, not velory's --output.
    /dev/full answers every write as a full disk does."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as stdout:
        proc = subprocess.run(
            [*velory_command(), "--db", str(fleet), *args],
            env=venv,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 73, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: cannot write the output: No space left on device"
    ]


def test_a_backup_that_fills_the_disk_leaves_no_file(
    fleet: Path, tmp_path: Path, venv: dict[str, str]
) -> None:
    out = tmp_path / "backups"
    out.mkdir()

    result = run(
        ["--db", str(fleet), "db", "backup", str(out / "nightly.db")],
        venv,
        tmp_path,
        preexec_fn=file_size_limit(LIMIT),
    )

    assert_clean_failure(result, 73, "nightly.db")
    assert list(out.iterdir()) == []
    assert_store_sound(fleet, venv, tmp_path)


# ---- read-only, unreadable, uncreatable ------------------------------------------------------

# Root ignores file modes; without these capabilities it is held to them like anyone else.
DROP_PRIVILEGES = (
    "setpriv",
    "--inh-caps=-all",
    "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable",
)


@pytest.fixture(scope="module")
def as_file_modes_say() -> tuple[str, ...]:
    """The prefix that runs velory bound by file modes: nothing for an ordinary user, root
    without its capability to override them. Skips when that cannot be had."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: root ignores file modes")
    probe_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    probe = probe_dir / f".velory-probe-{os.getpid()}"
    probe.write_text("")
    probe.chmod(0o444)
    try:
        attempt = subprocess.run(
            [*DROP_PRIVILEGES, "sh", "-c", 'echo x >> "$0"', str(probe)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        probe.unlink()
    if attempt.returncode == 0:
        pytest.skip(f"cannot drop root's power over file modes here: {attempt.stderr.strip()}")
    return DROP_PRIVILEGES


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Path]:
    db = tmp_path / "ro" / "velory.db"
    seed(db, [device_values("RC1", status="return_confirmed"), device_values("AC1")])
    yield db
    for path in (db.parent, *db.parent.iterdir()):  # let pytest clean up
        path.chmod(0o700 if path.is_dir() else 0o600)


WRITES = [
    ["note", "AC1", "a note"],
    ["start", "AC1"],
    ["release", "RC1", "--yes"],
    ["import", "{csv}"],
    ["notices", "send", "--outbox", "{outbox}", "--as-of", "2026-11-15"],
]


def _fill(args: list[str], tmp_path: Path) -> list[str]:
    csv = write_import_csv(tmp_path / "small.csv", 3)
    return [a.format(csv=csv, outbox=tmp_path / "outbox") for a in args]


def test_a_read_only_store_is_read_but_never_written(
    small_store: Path, tmp_path: Path, venv: dict[str, str], as_file_modes_say: tuple[str, ...]
) -> None:
    small_store.chmod(0o444)
    data = small_store.read_bytes()
    db = ["--db", str(small_store)]

    listed = run([*db, "devices", "--json"], venv, tmp_path, prefix=as_file_modes_say)
    assert listed.returncode == 0, str(listed)
    assert "AC1" in listed.stdout
    for args in (  # what only reads works on a read-only store
        ["db", "check"],
        ["db", "backup", str(tmp_path / "copy.db")],
        ["import", "{csv}", "--dry-run"],
        ["notices", "send", "--dry-run", "--as-of", "2026-11-15"],
    ):
        reading = run([*db, *_fill(args, tmp_path)], venv, tmp_path, prefix=as_file_modes_say)
        assert reading.returncode == 0, str(reading)
    for args in WRITES:
        result = run([*db, *_fill(args, tmp_path)], venv, tmp_path, prefix=as_file_modes_say)
        assert_clean_failure(result, 74, "read-only")
        assert small_store.read_bytes() == data, args


def test_a_store_in_a_read_only_folder_is_a_clean_74(
    small_store: Path, tmp_path: Path, venv: dict[str, str], as_file_modes_say: tuple[str, ...]
) -> None:
    small_store.chmod(0o444)
    small_store.parent.chmod(0o555)
    data = small_store.read_bytes()

    for args in (["devices"], *WRITES):
        result = run(
            ["--db", str(small_store), *_fill(args, tmp_path)],
            venv,
            tmp_path,
            prefix=as_file_modes_say,
        )
        assert_clean_failure(result, 74, str(small_store), "read-only")
    assert small_store.read_bytes() == data


def test_an_unreadable_store_is_a_clean_74(
    small_store: Path, tmp_path: Path, venv: dict[str, str], as_file_modes_say: tuple[str, ...]
) -> None:
    small_store.chmod(0o000)

    result = run(["--db", str(small_store), "devices"], venv, tmp_path, prefix=as_file_modes_say)

    assert_clean_failure(result, 74, "cannot read the store", "Permission denied")


def test_a_store_folder_that_cannot_be_created_is_a_clean_74(
    tmp_path: Path, venv: dict[str, str], as_file_modes_say: tuple[str, ...]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run(["--db", str(blocker / "sub" / "velory.db"), "db", "init"], venv, tmp_path)
    assert_clean_failure(result, 74, "cannot create the store")

    # The first import, which creates the store, likewise.
    source = tmp_path / "one.csv"
    source.write_text("Serial,Renewal Date\nA1,2027-01-01\n", encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = run(
        ["--db", str(locked / "velory" / "velory.db"), "import", str(source)],
        venv,
        tmp_path,
        prefix=as_file_modes_say,
    )
    assert_clean_failure(result, 74, "cannot create the store", "Permission denied")
    assert list(locked.iterdir()) == []


# ---- a store from a newer velory, a corrupt store --------------------------------------------


def test_a_store_from_a_newer_velory_is_refused_and_left_byte_for_byte(
    small_store: Path, tmp_path: Path, venv: dict[str, str]
) -> None:
    import sqlite3

    conn = sqlite3.connect(small_store)
    conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")
    conn.close()
    data = small_store.read_bytes()
    mtime = small_store.stat().st_mtime_ns

    for args in (
        ["devices"],
        ["db", "check"],
        ["db", "backup", str(tmp_path / "copy.db")],
        *WRITES,
    ):
        result = run(["--db", str(small_store), *_fill(args, tmp_path)], venv, tmp_path)
        assert_clean_failure(result, 74, "newer velory", "untouched")
    assert small_store.read_bytes() == data
    assert small_store.stat().st_mtime_ns == mtime
    assert not (tmp_path / "copy.db").exists()


def test_a_corrupt_store_is_reported_and_left_byte_for_byte(
    fleet: Path, tmp_path: Path, venv: dict[str, str]
) -> None:
    with fleet.open("r+b") as handle:  # scribble over a page in the middle
        handle.seek(fleet.stat().st_size // 2)
        handle.write(b"\xde\xad\xbe\xef" * 1024)
    data = fleet.read_bytes()

    check = run(["--db", str(fleet), "db", "check", "--json"], venv, tmp_path)
    assert_no_traceback(check)
    if check.returncode == 1:
        assert '"ok": false' in check.stdout
    else:
        assert_clean_failure(check, 74, "corrupt")
    for args in (["devices", "--include-removed"], ["export"], ["show", "RC00001"]):
        result = run(["--db", str(fleet), *args], venv, tmp_path)
        if result.returncode != 0:  # a command may not read the broken page at all
            assert_clean_failure(result, 74, "corrupt")
    assert fleet.read_bytes() == data
