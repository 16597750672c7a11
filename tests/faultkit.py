"""What the fault tests share: the installed velory started in a subprocess, stores seeded in
one transaction, and a fingerprint of a store's contents to tell "before" from "after".

Every fault is inflicted on the real command (a SIGKILL, a file size limit, a read-only file,
another writer), never simulated inside the process.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import velory_command
from tests.factory import STAMP
from velory_cli.store import Store

# ---- running velory --------------------------------------------------------------------------


def velory_env(env: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a test's velory: this one without VELORY_*, then the test's own."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("VELORY_")}
    return {**base, **env, **(extra or {})}


def start(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    preexec_fn: Callable[[], None] | None = None,
    stdin_text: str | None = None,
    prefix: Sequence[str] = (),
) -> subprocess.Popen[str]:
    """Start the installed velory (after ``prefix``, a command that runs it: setpriv);
    stdin closed unless text is given."""
    proc = subprocess.Popen(
        [*prefix, *velory_command(), *args],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    if stdin_text is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin_text)
        proc.stdin.close()
    return proc


@dataclass(frozen=True)
class Finished:
    """How a started velory ended: its exit code (negative: killed by that signal) and output."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def __str__(self) -> str:
        return f"velory {' '.join(self.args)} -> {self.returncode}\n{self.stderr}"


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> Finished:
    stdout, stderr = proc.communicate(timeout=timeout)
    command = [str(arg) for arg in proc.args]  # type: ignore[union-attr]
    args = tuple(command[command.index(velory_command()[-1]) + 1 :])
    return Finished(args, proc.returncode, stdout, stderr)


def run(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    preexec_fn: Callable[[], None] | None = None,
    stdin_text: str | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 120,
) -> Finished:
    proc = start(args, env, cwd, preexec_fn=preexec_fn, stdin_text=stdin_text, prefix=prefix)
    return finish(proc, timeout=timeout)


def kill_after(proc: subprocess.Popen[str], seconds: float) -> Finished:
    """SIGKILL the process after ``seconds`` (unless it finished first), then reap it."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return finish(proc)


def kill_when(
    proc: subprocess.Popen[str], ready: Callable[[], bool], *, timeout: float = 60
) -> Finished:
    """SIGKILL the process the moment ``ready()`` is true (polled every millisecond or so)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    return finish(proc)


def wal_size(db: Path) -> int:
    """How far the store's write-ahead log has grown: a commit is being written into it."""
    try:
        return (db.parent / (db.name + "-wal")).stat().st_size
    except FileNotFoundError:
        return 0


def file_size_limit(limit: int) -> Callable[[], None]:
    """For ``preexec_fn``: no file may grow past ``limit`` bytes, as on a disk that is full.
    SIGXFSZ is ignored, so the write fails with EFBIG instead of killing the process."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def assert_clean_failure(result: Finished, code: int, *words: str) -> None:
    """A failure as velory promises it: the code, nothing on stdout, one line on stderr that
    says what went wrong, no traceback, no raw SQLite message."""
    assert result.returncode == code, str(result)
    assert result.stdout == "", str(result)
    assert_no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("error: "), str(result)
    for word in words:
        assert word in lines[0], str(result)


def assert_no_traceback(result: Finished) -> None:
    assert "Traceback" not in result.stderr, str(result)
    assert "database is locked" not in result.stderr, str(result)
    assert "sqlite3." not in result.stderr, str(result)


# ---- stores ----------------------------------------------------------------------------------


def seed(db: Path, devices: Iterable[Mapping[str, Any]]) -> None:
    """Many devices with their import history, in one transaction (tests/factory.py takes one
    per device, too slow for thousands)."""
    with Store.open(db) as store, store.transaction():
        for values in devices:
            device_id = store.insert_device(dict(values))
            store.record_history(
                device_id,
                at=STAMP,
                actor="tester",
                action="import",
                from_status=None,
                to_status=values["status"],
            )


def copy_store(template: Path, target: Path) -> Path:
    """A copy of a closed store (no WAL beside it) to inflict a fault on."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return target


def fingerprint(db: Path) -> dict[str, Any]:
    """What a store holds, without the times a run stamps: its tables and indexes, every
    device's fields, and how many history entries, notes and notices of each state there are.
    Two runs of the same command on copies of one store end with the same fingerprint."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        digest = hashlib.sha256()
        rows = conn.execute(
            "SELECT serial, model, category, user_email, user_name, distributor, source,"
            " purchase_date, renewal_date, status, outcome, replacement_serial, replaces_serial,"
            " import_notes FROM devices ORDER BY serial"
        )
        count = 0
        for row in rows:
            count += 1
            digest.update(repr(tuple(row)).encode())
        history = conn.execute(
            "SELECT action, count(*) FROM history GROUP BY action ORDER BY action"
        ).fetchall()
        notes = conn.execute("SELECT count(*) FROM notes").fetchone()[0]
        notices = conn.execute(
            "SELECT status, count(*) FROM notices GROUP BY status ORDER BY status"
        ).fetchall()
        schema = conn.execute("SELECT type, name FROM sqlite_master ORDER BY type, name")
        return {
            "schema": [tuple(row) for row in schema],
            "devices": count,
            "digest": digest.hexdigest(),
            "history": dict(history),
            "notes": notes,
            "notices": dict(notices),
        }
    finally:
        conn.close()


def integrity(db: Path) -> list[str]:
    """PRAGMA integrity_check, straight from SQLite: ["ok"] for a sound file."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def assert_store_sound(db: Path, env: Mapping[str, str], cwd: Path) -> None:
    """``velory db check`` passes and SQLite itself finds the file sound."""
    check = run(["--db", str(db), "db", "check"], env, cwd)
    assert check.returncode == 0, f"{check}\n{check.stdout}"
    assert_no_traceback(check)
    assert integrity(db) == ["ok"]


def write_import_csv(path: Path, count: int, *, first: int = 0, distributor: str = "Atea") -> Path:
    """A CSV as an asset system exports it: ``count`` devices SN000000...; quick to write."""
    lines = ["Serial,Model,Email,Full Name,Distributor,Purchase Date,Renewal Date,Notes"]
    lines.extend(
        f"SN{n:06d},ThinkPad T14 Gen {n % 5},user{n}@example.com,User {n},{distributor},"
        f"2023-12-01,2026-12-{1 + n % 28:02d},"
        for n in range(first, first + count)
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
