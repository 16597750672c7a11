"""Where the store is created, and what every other command does where there is none: the first
import (or db init) creates it; anything else exits 74, names the path and what chose it, and
creates nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer

from tests.conftest import Invoke, Run, json_out, velory_command
from velory_cli.cli import CREATE_STORE, app
from velory_cli.store import Store

GOOD_CSV = "Serial,Email,Renewal Date\nA1,a1@example.com,2026-12-01\n"
BAD_CSV = "Serial,Email,Renewal Date\n,a1@example.com,2026-12-01\n"


def command_paths() -> list[str]:
    """Every command of the app, groups' commands by their full name ("db check")."""

    def walk(command: Any, prefix: str) -> list[str]:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            return [prefix]
        paths: list[str] = []
        for name, sub in subcommands.items():
            paths += walk(sub, f"{prefix} {name}".strip())
        return paths

    return walk(typer.main.get_command(app), "")


# The fewest arguments each command needs to get past Click: a command that needs the store
# must say there is none before it looks at any of them.
ARGUMENTS: dict[str, list[str]] = {
    "show": ["A1"],
    "hardware": ["a1@example.com"],
    "start": ["A1"],
    "order": ["A1", "--model", "X"],
    "deliver": ["A1", "--new-serial", "N1"],
    "confirm-return": ["A1"],
    "release": ["A1"],
    "note": ["A1", "text"],
    "reinstate": ["A1", "--reason", "mistake"],
    "retire": ["A1", "--outcome", "lost", "--note", "n"],
    "edit": ["A1", "--model", "X"],
    "db backup": ["backup.db"],
    "export": ["--output", "export.csv"],
    "mdm import": ["export.csv"],
}

NEEDS_A_STORE = [path for path in command_paths() if path not in CREATE_STORE]


def test_every_command_but_import_db_init_and_demo_needs_a_store() -> None:
    assert "devices" in NEEDS_A_STORE and "notices send" in NEEDS_A_STORE
    assert not set(NEEDS_A_STORE) & {"import", "db init", "demo"}


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("command", NEEDS_A_STORE)
def test_a_command_where_there_is_no_store_exits_74_and_creates_nothing(
    invoke: Invoke, tmp_path: Path, home: Path, command: str
) -> None:
    mistyped = tmp_path / "typo" / "velroy.db"
    args = [*command.split(), *ARGUMENTS.get(command, [])]
    args = [str(tmp_path / a) if a in ("backup.db", "export.csv") else a for a in args]
    before = everything_under(tmp_path)
    result = invoke(["--db", str(mistyped), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 74, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no store at {mistyped} (given with --db); velory import FILE creates it, "
        "or velory db init an empty one\n"
    )
    assert everything_under(tmp_path) == before


def test_the_error_names_what_chose_the_path(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    cases = [
        ({"VELORY_DB": str(elsewhere / "v.db")}, f"{elsewhere / 'v.db'} (from VELORY_DB)"),
        ({"VELORY_HOME": str(elsewhere)}, f"{elsewhere / 'velory.db'} (velory.db in VELORY_HOME)"),
    ]
    for extra_env, named in cases:
        result = invoke(["devices"], extra_env=extra_env)
        assert result.exit_code == 74
        assert result.stderr.startswith(f"error: no store at {named}; "), result.stderr
    result = invoke(["devices"])  # the test's own VELORY_HOME, with no store in it
    assert result.stderr.startswith(f"error: no store at {home / 'velory.db'} (velory.db in ")
    assert not elsewhere.exists()
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "extra_env", "config"),
    [
        (["notices", "send", "--quiet"], {}, None),  # no mail settings (78 with a store)
        (["notices", "send"], {"VELORY_SMTP_HOST": "127.0.0.1"}, None),  # no sender
        (["notices", "send", "--dry-run"], {}, "not toml at all = = ="),
        (["devices"], {"VELORY_BUSY_TIMEOUT": "nan"}, None),
        (["renewals", "--as-of", "9999-12-31"], {}, None),
        (["devices", "--json", "--csv"], {}, None),
        (["release", "--file", "absent.txt"], {}, None),
        (["deliver", "A1", "--new-serial", "N1"], {"VELORY_TERM_MONTHS": "x"}, None),
        (["export", "--output", "."], {}, None),
    ],
    ids=[
        "no mail settings",
        "no sender",
        "broken config.toml",
        "bad busy timeout",
        "far as-of",
        "json and csv",
        "missing file",
        "bad term",
        "output is a folder",
    ],
)
def test_the_missing_store_is_found_before_anything_else(
    invoke: Invoke,
    home: Path,
    args: list[str],
    extra_env: dict[str, str],
    config: str | None,
) -> None:
    if config is not None:
        (home / "config.toml").write_text(config, encoding="utf-8")
    result = invoke(args, extra_env=extra_env)
    assert result.exit_code == 74, result.output
    assert result.stderr.startswith("error: no store at "), result.stderr
    assert result.stderr.count("\n") == 1
    assert not (home / "velory.db").exists()


def test_usage_errors_and_help_of_click_come_first(invoke: Invoke, home: Path) -> None:
    assert invoke(["devices", "--no-such-option"]).exit_code == 2
    helped = invoke(["devices", "--help"])
    assert helped.exit_code == 0 and "Company assets" in helped.stdout
    assert list(home.iterdir()) == []


# ---- db init -------------------------------------------------------------------------------


def test_db_init_creates_an_empty_private_store_and_says_where(
    invoke: Invoke, tmp_path: Path
) -> None:
    db = tmp_path / "srv" / "velory" / "velory.db"
    created = invoke(["--db", str(db), "db", "init"])
    assert created.exit_code == 0, created.output
    assert created.exception is None
    assert created.stdout == ""
    assert created.stderr == f"Created an empty store at {db}.\n"
    assert oct(db.stat().st_mode & 0o777) == oct(0o600)
    assert oct(db.parent.stat().st_mode & 0o777) == oct(0o700)
    assert oct((tmp_path / "srv").stat().st_mode & 0o777) == oct(0o700)
    assert sorted(p.name for p in db.parent.iterdir()) == ["velory.db"]
    listed = invoke(["--db", str(db), "devices", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json_out(listed) == []
    checked = invoke(["--db", str(db), "db", "check"])
    assert checked.exit_code == 0, checked.output


def dump(db: Path) -> list[str]:
    """What a store holds, as SQL."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_db_init_on_a_velory_store_is_unchanged(invoke: Invoke, tmp_path: Path) -> None:
    db = tmp_path / "velory.db"
    assert invoke(["--db", str(db), "import", "-"], input=GOOD_CSV).exit_code == 0
    data = dump(db)
    again = invoke(["--db", str(db), "db", "init", "--json"])
    assert again.exit_code == 0, again.output
    assert json_out(again) == {
        "store": str(db),
        "created": False,
        "unchanged": True,
        "schema_version": json_out(again)["schema_version"],
    }
    assert dump(db) == data
    table = invoke(["--db", str(db), "db", "init"])
    assert table.stderr == f"{db} is a velory store already: unchanged.\n"
    listed = invoke(["--db", str(db), "devices", "--json"])
    assert [d["serial"] for d in json_out(listed)] == ["A1"]


def test_db_init_refuses_a_file_that_is_not_a_velory_store(invoke: Invoke, tmp_path: Path) -> None:
    alien = tmp_path / "notes.db"
    alien.write_text("my own notes", encoding="utf-8")
    result = invoke(["--db", str(alien), "db", "init"])
    assert result.exit_code == 74
    assert result.stdout == ""
    assert alien.read_text(encoding="utf-8") == "my own notes"


# ---- the first import ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "text", "code"),
    [
        (["--dry-run"], GOOD_CSV, 0),
        ([], BAD_CSV, 65),
        (["--skip-invalid"], BAD_CSV, 0),
        ([], "not, a, table\n", 65),
    ],
    ids=["dry run", "refused", "every row invalid", "no table"],
)
def test_an_import_that_writes_nothing_creates_no_store(
    invoke: Invoke, tmp_path: Path, args: list[str], text: str, code: int
) -> None:
    db = tmp_path / "new" / "fleet" / "velory.db"
    result = invoke(["--db", str(db), "import", "-", "--json", *args], input=text)
    assert result.exit_code == code, result.output
    assert json_out(result)["written"] is False
    assert not (tmp_path / "new").exists()
    assert invoke(["--db", str(db), "devices"]).exit_code == 74


def test_a_dry_run_where_there_is_no_store_reports_every_row_as_new(
    invoke: Invoke, tmp_path: Path
) -> None:
    db = tmp_path / "velory.db"
    text = GOOD_CSV + "A2,a2@example.com,2027-01-01\n"
    result = invoke(["--db", str(db), "import", "-", "--dry-run", "--json"], input=text)
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert (report["inserted"], report["updated"], report["dry_run"]) == (2, 0, True)
    assert [p.name for p in tmp_path.iterdir()] == ["home"]  # the test's own app directory


def test_the_first_import_creates_the_store_and_its_folders(invoke: Invoke, tmp_path: Path) -> None:
    db = tmp_path / "new" / "fleet" / "velory.db"
    result = invoke(["--db", str(db), "import", "-", "--json"], input=GOOD_CSV)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert json_out(result)["inserted"] == 1
    assert oct(db.stat().st_mode & 0o777) == oct(0o600)
    for folder in (db.parent, db.parent.parent):
        assert oct(folder.stat().st_mode & 0o777) == oct(0o700)
    # Nothing left of how it was built: no temporary store, no lock file.
    assert sorted(p.name for p in db.parent.iterdir()) == ["velory.db"]
    shown = invoke(["--db", str(db), "show", "a1", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [h["action"] for h in json_out(shown)["history"]] == ["import"]
    assert invoke(["--db", str(db), "db", "check"]).exit_code == 0


def test_a_first_import_is_upgraded_to_wal_when_next_opened(invoke: Invoke, tmp_path: Path) -> None:
    db = tmp_path / "velory.db"
    assert invoke(["--db", str(db), "import", "-"], input=GOOD_CSV).exit_code == 0
    with Store.open(db, create=False) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---- cron, for real ----------------------------------------------------------------------------


@pytest.mark.subprocess
def test_cron_with_velory_home_forgotten_fails_loudly_every_run(tmp_path: Path) -> None:
    """The job of the bug report: ``env -i`` with cron's PATH and a HOME, no VELORY_HOME."""
    home = tmp_path / "cron-home"
    home.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "VELORY_SMTP_HOST": "127.0.0.1",
        "VELORY_MAIL_FROM": "it@example.com",
    }
    expected = home / ".config" / "velory" / "velory.db"
    for _ in range(2):
        result = subprocess.run(
            [*velory_command(), "notices", "send", "--quiet"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 74, result.stderr
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            f"error: no store at {expected} (the default, velory.db in the app directory; "
            "VELORY_HOME or --db names another); velory import FILE creates it, or velory db "
            "init an empty one"
        ]
        assert list(home.iterdir()) == []


@pytest.mark.subprocess
def test_a_mistyped_db_says_so_instead_of_no_devices(run: Run, tmp_path: Path) -> None:
    mistyped = tmp_path / "typo" / "velroy.db"
    result = run(["--db", str(mistyped), "devices"])
    assert result.returncode == 74
    assert result.stdout == ""
    assert "No devices." not in result.stderr
    assert f"no store at {mistyped} (given with --db)" in result.stderr
    assert not mistyped.parent.exists()


@pytest.mark.subprocess
def test_velorys_creating_the_same_store_at_once_take_turns(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """An admin's db init and imports at the same moment on a new path: every one succeeds,
    the store holds every import's devices, and nothing of the building is left behind."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VELORY_")}
    files = []
    for number in range(3):
        source = tmp_path / f"part{number}.csv"
        source.write_text(
            "Serial,Renewal Date\n" + "".join(f"P{number}-{n},2027-01-01\n" for n in range(200)),
            encoding="utf-8",
        )
        files.append(source)
    for attempt in range(2):
        db = tmp_path / f"round-{attempt}" / "store" / "velory.db"
        commands = [
            ["--db", str(db), "db", "init"],
            *[["--db", str(db), "import", str(source), "--json"] for source in files],
            ["--db", str(db), "db", "init"],
        ]
        procs = [
            subprocess.Popen(
                [*velory_command(), *args],
                env={**base, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp_path,
            )
            for args in commands
        ]
        outcomes = [
            (args, *proc.communicate(timeout=120), proc.returncode)
            for args, proc in zip(commands, procs, strict=True)
        ]
        for args, _out, err, code in outcomes:
            assert code == 0, (args, err)
            assert "Traceback" not in err
        inserted = [
            json.loads(out)["inserted"] for args, out, _err, _code in outcomes if "import" in args
        ]
        assert inserted == [200, 200, 200]
        with Store.open(db, create=False) as store:
            assert len(store.devices()) == 600
        assert sorted(p.name for p in db.parent.iterdir()) == ["velory.db"]
