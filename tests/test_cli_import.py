"""velory import at the command line: exit codes, the JSON summary, stdin, the rejects file,
and a store left as it was whatever happens to the run."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Invoke, Run, json_out, velory_command
from velory_cli.store import Store

HEADER = "Serial,Model,Email,Full Name,Supplier,Purchase Date,Notes\n"
GOOD = HEADER + "PF1,ThinkPad T14,asa@nordlys.se,Åsa Lindström,Atea,2023-12-01,\n"
SUMMARY_KEYS = {"inserted", "updated", "unchanged", "skipped", "rejected", "dry_run", "errors"}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def stored_serials(home: Path) -> list[str]:
    path = home / "velory.db"
    if not path.exists():
        return []
    with Store.open(path) as store:
        return [row[0] for row in store.conn.execute("SELECT serial FROM devices ORDER BY id")]


def test_import_prints_a_summary_for_people(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    result = invoke(["import", str(write(tmp_path, "devices.csv", GOOD))])
    assert result.exit_code == 0, result.output
    assert "Imported" in result.stdout and "Inserted" in result.stdout
    assert result.stderr == ""
    assert stored_serials(home) == ["PF1"]


def test_json_summary(invoke: Invoke, tmp_path: Path) -> None:
    text = GOOD + "PF2,X,not-an-email,,,2024-01-01,\n"
    result = invoke(["import", str(write(tmp_path, "d.csv", text)), "--json", "--skip-invalid"])
    assert result.exit_code == 0, result.output
    summary = json_out(result)
    assert set(summary) >= SUMMARY_KEYS
    assert {k: summary[k] for k in SUMMARY_KEYS} == {
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
        "skipped": 0,
        "rejected": 1,
        "dry_run": False,
        "errors": [
            {"row": 3, "column": "Email", "message": "'not-an-email' is not an email address"}
        ],
    }
    assert (summary["format"], summary["encoding"]) == ("csv", "utf-8")
    assert "1 invalid row was not imported" in result.stderr


def test_an_invalid_row_exits_65_with_the_summary_and_writes_nothing(
    invoke: Invoke, tmp_path: Path, home: Path
) -> None:
    text = GOOD + "PF2,X,,,,03/04/2026,\n"
    result = invoke(["import", str(write(tmp_path, "d.csv", text)), "--json"])
    assert result.exit_code == 65
    summary = json_out(result)
    assert summary["inserted"] == 0 and summary["rejected"] == 1
    assert summary["errors"][0]["row"] == 3
    assert "--dayfirst" in summary["errors"][0]["message"]
    assert "nothing was written" in result.stderr
    assert "Traceback" not in result.output
    assert stored_serials(home) == []


def test_the_table_lists_the_problems(invoke: Invoke, tmp_path: Path) -> None:
    text = GOOD + ",X,,,,2024-01-01,\n"
    result = invoke(["import", str(write(tmp_path, "d.csv", text))])
    assert result.exit_code == 65
    assert "Problems" in result.stdout
    assert "serial is empty" in result.stdout
    assert "--skip-invalid" in result.stderr


def test_a_whole_file_problem_exits_65_with_the_summary(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(["import", str(write(tmp_path, "d.csv", "Name,Model\nx,y\n")), "--json"])
    assert result.exit_code == 65
    assert json_out(result)["errors"] == [
        {"row": 1, "column": None, "message": json_out(result)["errors"][0]["message"]}
    ]
    assert "no serial column" in result.stderr
    # For people, a file that is no table is one line on stderr and nothing on stdout.
    result = invoke(["import", str(tmp_path / "d.csv")])
    assert result.exit_code == 65
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and "row 1: no serial column" in result.stderr


def test_markup_in_the_data_is_shown_as_text(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    text = "Serial,[bold red]Owner[/],Purchase Date\n[b]PF1[/b],x,2024-01-01\nPF2,y,[i]bad[/i]\n"
    result = invoke(["import", str(write(tmp_path, "d.csv", text)), "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "[bold red]Owner[/]" in result.stderr
    assert "'[i]bad[/i]' is not a date" in result.stdout
    assert stored_serials(home) == ["[b]PF1[/b]"]


def test_dry_run_writes_nothing(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    result = invoke(["import", str(write(tmp_path, "d.csv", GOOD)), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    summary = json_out(result)
    assert (summary["inserted"], summary["dry_run"], summary["written"]) == (1, True, False)
    assert "Dry run" in result.stderr
    assert stored_serials(home) == []


def test_stdin_dash(invoke: Invoke, home: Path) -> None:
    result = invoke(["import", "-", "--json"], input=GOOD.encode("cp1252"))
    assert result.exit_code == 0, result.output
    assert json_out(result)["encoding"] == "windows-1252"
    assert json_out(result)["file"] == "stdin"
    assert stored_serials(home) == ["PF1"]


def test_stdin_json_is_sniffed(invoke: Invoke, home: Path) -> None:
    data = json.dumps([{"serial": "PF9", "purchase_date": "2024-01-01"}])
    result = invoke(["import", "-", "--json"], input=data)
    assert result.exit_code == 0, result.output
    assert json_out(result)["format"] == "json"
    assert stored_serials(home) == ["PF9"]


@pytest.mark.subprocess
def test_a_pipe_is_spooled_and_read(run: Run, tmp_path: Path) -> None:
    lines = "".join(f"S{i},M,,,,2024-01-01,\n" for i in range(3000))
    producer = subprocess.Popen(
        ["cat", str(write(tmp_path, "d.csv", HEADER + lines))], stdout=subprocess.PIPE
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VELORY_")}
    result = subprocess.run(
        [*velory_command(), "--db", str(tmp_path / "v.db"), "import", "-", "--json"],
        stdin=producer.stdout,
        capture_output=True,
        text=True,
        env={**env, "VELORY_HOME": str(tmp_path / "home"), "NO_COLOR": "1"},
        timeout=120,
    )
    producer.wait()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inserted"] == 3000
    assert "Traceback" not in result.stderr


@pytest.mark.subprocess
def test_a_named_pipe_is_a_file_like_any_other(tmp_path: Path) -> None:
    """A FIFO, as `<(ssh host cat export.csv)` hands velory one, cannot rewind: it is spooled."""
    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VELORY_")}
    process = subprocess.Popen(
        [*velory_command(), "--db", str(tmp_path / "v.db"), "import", str(fifo), "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "VELORY_HOME": str(tmp_path / "home"), "NO_COLOR": "1"},
    )
    with fifo.open("w", encoding="utf-8") as writer:
        writer.write(HEADER + "".join(f"S{i},M,,,,2024-01-01,\n" for i in range(3000)))
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["inserted"] == 3000
    assert "Traceback" not in stderr


@pytest.mark.subprocess
def test_dev_stdin_from_a_pipe_reads_like_dash(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VELORY_")}
    command = [*velory_command(), "--db", str(tmp_path / "v.db"), "import", "/dev/stdin"]
    result = subprocess.run(
        [*command, "--json"],
        input=GOOD,
        capture_output=True,
        text=True,
        env={**env, "VELORY_HOME": str(tmp_path / "home"), "NO_COLOR": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inserted"] == 1
    assert result.stderr == ""


@pytest.mark.subprocess
def test_a_file_imports_with_stdin_closed_altogether(run: Run, tmp_path: Path, home: Path) -> None:
    """As cron runs it (`velory import in.csv <&-`): a named file needs no stdin."""
    result = run(["import", str(write(tmp_path, "in.csv", GOOD)), "--json"], closed=[0])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inserted"] == 1
    assert "Traceback" not in result.stderr
    assert stored_serials(home) == ["PF1"]


@pytest.mark.subprocess
def test_stdin_dash_with_stdin_closed_altogether_exits_66(run: Run, home: Path) -> None:
    result = run(["import", "-", "--json"], closed=[0])
    assert result.returncode == 66
    assert result.stdout == ""
    assert result.stderr == "error: cannot read the devices from stdin: it is closed\n"
    assert stored_serials(home) == []


def test_a_missing_file_exits_66(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(["import", str(tmp_path / "nope.csv"), "--json"])
    assert result.exit_code == 66
    assert result.stdout == ""
    assert "no such file" in result.stderr


def test_a_folder_exits_66(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(["import", str(tmp_path)])
    assert result.exit_code == 66
    assert result.stdout == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_exits_66(invoke: Invoke, tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", GOOD)
    path.chmod(0)
    result = invoke(["import", str(path)])
    assert result.exit_code == 66


@pytest.mark.parametrize(
    "args",
    [
        ["--encoding", "klingon-8"],
        ["--encoding", "rot13"],
        ["--dayfirst", "--monthfirst"],
        ["--term-months", "0"],
        ["--term-months", "many"],
    ],
)
def test_wrong_usage_exits_2(invoke: Invoke, tmp_path: Path, args: list[str]) -> None:
    result = invoke(["import", str(write(tmp_path, "d.csv", GOOD)), *args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


def test_options_reach_the_importer(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    text = "Serial,Purchase Date\nPF1,4/5/16\n"
    result = invoke(
        ["import", str(write(tmp_path, "d.csv", text)), "--monthfirst", "--term-months", "24"]
    )
    assert result.exit_code == 0, result.output
    with Store.open(home / "velory.db") as store:
        device = store.device("pf1")
        assert device is not None
        assert (device.purchase_date, device.renewal_date) == ("2016-04-05", "2018-04-05")
    latin = "Serial,Full Name,Purchase Date\nPF2,Sjöberg,2016-04-05\n".encode("latin-1")
    result = invoke(["import", str(write(tmp_path, "l.csv", latin)), "--encoding", "latin-1"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


# ---- the rejects file ----------------------------------------------------------------------


def test_rejects_file(invoke: Invoke, tmp_path: Path) -> None:
    text = GOOD + "PF2,X,bad,Sjöberg,,2024-01-01,\n"
    rejects = tmp_path / "rejects.csv"
    result = invoke(
        ["import", str(write(tmp_path, "d.csv", text)), "--skip-invalid", "--rejects", str(rejects)]
    )
    assert result.exit_code == 0, result.output
    content = rejects.read_text(encoding="utf-8-sig")
    assert content.splitlines() == [
        "Serial,Model,Email,Full Name,Supplier,Purchase Date,Notes,reason",
        "PF2,X,bad,Sjöberg,,2024-01-01,,\"row 3, Email: 'bad' is not an email address\"",
    ]
    # The rejected rows, fixed, go back in as they are.
    fixed = content.replace(",bad,", ",bo@x.se,")
    again = invoke(["import", str(write(tmp_path, "fixed.csv", fixed)), "--json"])
    assert again.exit_code == 0, again.output
    assert json_out(again)["inserted"] == 1


def test_rejects_are_written_on_a_failed_or_dry_run_too(invoke: Invoke, tmp_path: Path) -> None:
    text = GOOD + ",X,,,,2024-01-01,\n"
    for extra in ([], ["--dry-run"]):
        rejects = tmp_path / f"rejects{len(extra)}.csv"
        result = invoke(
            ["import", str(write(tmp_path, "d.csv", text)), "--rejects", str(rejects), *extra]
        )
        assert result.exit_code == 65
        assert "serial is empty" in rejects.read_text(encoding="utf-8-sig")


def test_rejects_never_overwrite_without_force(invoke: Invoke, tmp_path: Path, home: Path) -> None:
    rejects = write(tmp_path, "rejects.csv", "precious\n")
    source = str(write(tmp_path, "d.csv", GOOD))
    result = invoke(["import", source, "--rejects", str(rejects), "--json"])
    assert result.exit_code == 73
    assert result.stdout == ""
    assert "--force" in result.stderr
    assert rejects.read_text() == "precious\n"
    assert stored_serials(home) == []
    result = invoke(["import", source, "--rejects", str(rejects), "--force"])
    assert result.exit_code == 0, result.output
    assert rejects.read_text(encoding="utf-8-sig").startswith("Serial,")


def test_an_unwritable_rejects_file_exits_73(invoke: Invoke, tmp_path: Path) -> None:
    source = str(write(tmp_path, "d.csv", GOOD))
    result = invoke(["import", source, "--rejects", str(tmp_path / "no" / "such" / "r.csv")])
    assert result.exit_code == 73
    assert result.stdout == ""


def test_no_rejects_file_when_the_file_is_not_a_table(invoke: Invoke, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    source = str(write(tmp_path, "d.csv", "Name\nx\n"))
    result = invoke(["import", source, "--rejects", str(rejects)])
    assert result.exit_code == 65
    assert not rejects.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rejects")] == []


# ---- garbage and faults --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("name", ["garbage.csv", "garbage.json", "garbage.jsonl", "garbage"])
def test_random_binary_exits_65_never_a_traceback(
    invoke: Invoke, tmp_path: Path, seed: int, name: str
) -> None:
    data = random.Random(seed).randbytes(2000)
    result = invoke(["import", str(write(tmp_path, name, data)), "--json"])
    assert result.exit_code == 65, result.output
    assert json_out(result)["errors"]
    assert "Traceback" not in result.stderr


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    content=st.binary(max_size=300), args=st.sampled_from([[], ["--skip-invalid"], ["--dry-run"]])
)
def test_any_input_gives_a_json_summary_and_0_or_65(
    invoke: Invoke, content: bytes, args: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.csv"
        path.write_bytes(content)
        result = invoke(["--db", str(Path(folder) / "v.db"), "import", str(path), "--json", *args])
        assert result.exit_code in (0, 65), result.output
        assert set(json_out(result)) >= SUMMARY_KEYS


def write_locked(database: Path) -> bool:
    """True while another connection holds the store's write transaction."""
    conn = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


@pytest.mark.subprocess
@pytest.mark.faults
def test_an_import_killed_half_way_leaves_the_store_as_it_was(
    run: Run, tmp_path: Path, home: Path
) -> None:
    assert run(["import", str(write(tmp_path, "first.csv", GOOD))]).returncode == 0
    database = home / "velory.db"
    with sqlite3.connect(database) as conn:
        before = conn.execute("SELECT * FROM devices").fetchall()
        imports_before = conn.execute("SELECT * FROM imports").fetchall()
    rows = "".join(
        f"S{i:07d},Model {i},u{i}@x.se,User {i},Atea,2024-01-01,\n" for i in range(400_000)
    )
    big = write(tmp_path, "big.csv", HEADER + "PF1,Changed,,,,2023-12-01,\n" + rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VELORY_")}
    process = subprocess.Popen(
        [*velory_command(), "import", str(big)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**env, "VELORY_HOME": str(home), "VELORY_ACTOR": "tester"},
    )
    deadline = time.monotonic() + 60
    # Wait until the import holds the store's write lock (its one transaction has begun), let
    # it write for a moment, then kill it: well before it could reach its commit.
    while time.monotonic() < deadline and process.poll() is None and not write_locked(database):
        time.sleep(0.02)
    time.sleep(0.5)
    assert process.poll() is None, "the import finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT * FROM devices").fetchall() == before
        assert conn.execute("SELECT * FROM imports").fetchall() == imports_before
        assert conn.execute("SELECT count(*) FROM history").fetchone()[0] == 0
    result = run(["devices", "--json"])
    assert [d["model"] for d in json.loads(result.stdout)] == ["ThinkPad T14"]


_QUOTED_TEXT = st.tuples(
    st.sampled_from(["", "=", "+", "-", "@", "'", "''", "'=", "-'", "@@"]),
    st.text(alphabet="abcÅß1 -='+@", max_size=6),
).map(lambda parts: (parts[0] + parts[1]).strip())


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["", "-", "=", "@", "'", "+", "'-"]),
            _QUOTED_TEXT,
            _QUOTED_TEXT,
            st.sampled_from(["", "-ops@x.se", "'a@x.se", "b@x.se"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_velorys_own_export_imports_back_exactly(
    invoke: Invoke, tmp_path: Path, home: Path, rows: list[tuple[str, str, str, str]]
) -> None:
    """A value the export quotes for spreadsheets (a model `-MacBook (loaner)`, a name
    `@ops team`, a serial `-X1`) reads back without the quote: nothing changes, nothing new."""
    for stale in home.glob("velory.db*"):
        stale.unlink()
    objects = [
        {
            "serial": f"{prefix}X{index}",
            "model": model,
            "full name": name,
            "email": email,
            "renewal date": "2027-01-01",
        }
        for index, (prefix, model, name, email) in enumerate(rows)
    ]
    source = tmp_path / "devices.json"
    source.write_text(json.dumps(objects), encoding="utf-8")
    first = invoke(["import", str(source), "--json"])
    assert first.exit_code == 0, first.output
    assert first.exception is None
    before = json_out(invoke(["export", "--json"]))
    exported = invoke(["export"])
    assert exported.exit_code == 0 and exported.exception is None
    again = tmp_path / "export.csv"
    again.write_text(exported.stdout, encoding="utf-8")
    result = invoke(["import", str(again), "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    summary = json_out(result)
    assert (summary["inserted"], summary["updated"]) == (0, 0), summary
    assert summary["unchanged"] == len(rows)
    assert json_out(invoke(["export", "--json"])) == before


@pytest.mark.subprocess
@pytest.mark.faults
def test_ctrl_c_during_an_import_says_nothing_was_written_and_exits_130(
    run: Run, tmp_path: Path, home: Path
) -> None:
    assert run(["import", str(write(tmp_path, "first.csv", GOOD))]).returncode == 0
    database = home / "velory.db"
    with sqlite3.connect(database) as conn:
        before = conn.execute("SELECT * FROM devices").fetchall()
    rows = "".join(
        f"S{i:07d},Model {i},u{i}@x.se,User {i},Atea,2024-01-01,\n" for i in range(400_000)
    )
    big = write(tmp_path, "big.csv", HEADER + "PF1,Changed,,,,2023-12-01,\n" + rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VELORY_")}
    process = subprocess.Popen(
        [*velory_command(), "import", str(big)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "VELORY_HOME": str(home), "VELORY_ACTOR": "tester", "NO_COLOR": "1"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and not write_locked(database):
        time.sleep(0.02)
    time.sleep(0.3)
    assert process.poll() is None, "the import finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert stderr == f"error: {big}: the import was interrupted; nothing was written\n"
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT * FROM devices").fetchall() == before
        assert conn.execute("SELECT count(*) FROM history").fetchone()[0] == 0


def test_bulk_commands_tell_serials_apart_as_fold_does(invoke: Invoke, tmp_path: Path) -> None:
    """ß1 and SS1 are one serial, handled once; ı1 (dotless) and I1 are two, each reported."""
    text = "Serial,Renewal Date\nß1,2027-01-01\nı1,2027-01-01\n"
    assert invoke(["import", str(write(tmp_path, "d.csv", text))]).exit_code == 0
    result = invoke(["release", "ß1", "SS1", "ı1", "I1", "--yes", "--json"])
    assert isinstance(result.exception, SystemExit)  # exit 1, no crash
    assert result.exit_code == 1, result.output
    outcome = json_out(result)
    assert [(r["serial"], r["ok"]) for r in outcome["results"]] == [
        ("ß1", False),
        ("ı1", False),
        ("I1", False),
    ]
    assert outcome["results"][2]["error"] == "I1: no such device"
    shown = invoke(["show", "SS1", "--json"])
    assert shown.exit_code == 0 and json_out(shown)["serial"] == "ß1"


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        ("A1,not-an-email,2026-01-01\n", "1 of 1 rows is invalid; nothing was written"),
        (
            "A1,not-an-email,2026-01-01\nA2,also-not,2026-01-01\nA3,c@x.se,2026-01-01\n",
            "2 of 3 rows are invalid; nothing was written",
        ),
    ],
)
def test_the_count_of_invalid_rows_reads_as_english(
    invoke: Invoke, tmp_path: Path, rows: str, said: str
) -> None:
    source = write(tmp_path, "devices.csv", "Serial,Email,Renewal Date\n" + rows)
    result = invoke(["import", str(source)])
    assert result.exit_code == 65
    assert said in result.stderr
