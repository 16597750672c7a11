"""The whole renewal flow through the installed velory, step by step, read back as JSON."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Run, json_out, velory_command
from tests.factory import add_device
from velory_cli.store import Store

pytestmark = pytest.mark.subprocess


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "fleet" / "velory.db"


def seed(db: Path, *devices: tuple[str, dict[str, Any]]) -> None:
    with Store.open(db) as store:
        for serial, fields in devices:
            add_device(store, serial, **fields)


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json_out(result)


def test_the_whole_flow_step_by_step(run: Run, db: Path) -> None:
    user = {"user_email": "asa@nordlys.se", "user_name": "Åsa Lindström"}
    seed(
        db,
        ("OLD1", {**user, "renewal_date": "2026-12-01", "model": "Latitude 5420"}),
        ("KEEP", {**user, "renewal_date": "2028-01-01"}),
        ("DUS1", {**user, "distributor": "Dustin Sverige AB"}),
    )

    def velory(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(["--db", str(db), "--actor", "alice", *args], input=input, timeout=60)

    def show(serial: str) -> Any:
        return ok(velory("show", serial, "--json"))

    def hardware() -> list[str]:
        return sorted(d["serial"] for d in ok(velory("hardware", "ASA@nordlys.se", "--json")))

    def assets() -> list[str]:
        return sorted(d["serial"] for d in ok(velory("devices", "--json")))

    # Dustin's device follows Dustin's own process.
    refused = velory("start", "DUS1", "--json")
    assert refused.returncode == 1
    assert "DUS1 is active" in refused.stderr
    assert "Dustin" in refused.stderr
    assert json_out(refused)["failed"] == 1
    assert show("DUS1")["status"] == "active"

    # 1. The user starts the process.
    started = ok(velory("start", "old1", "--json"))
    assert started["results"] == [
        {
            "serial": "OLD1",
            "ok": True,
            "changed": True,
            "status": "renewal_started",
            "error": None,
            "outcome": None,
        }
    ]
    device = show("OLD1")
    assert device["status"] == "renewal_started"
    assert {
        k: device["history"][-1][k] for k in ("actor", "action", "from_status", "to_status")
    } == {
        "actor": "alice",
        "action": "start",
        "from_status": "active",
        "to_status": "renewal_started",
    }
    assert device["history"][-1]["at"].endswith("Z")

    # 2. The user orders a replacement in the store; a second order is refused.
    assert ok(velory("order", "OLD1", "--model", "MacBook Air M3", "--json"))["succeeded"] == 1
    second = velory("order", "OLD1", "--model", "MacBook Pro", "--json")
    assert second.returncode == 1
    assert "OLD1 is renewal_started" in second.stderr
    assert [r["action"] for r in ok(velory("todo", "--json"))] == ["wait-for-delivery"]

    # 3. The replacement arrives.
    delivered = velory("deliver", "OLD1", "--new-serial", "NEW1", "--json")
    report = ok(delivered)
    assert report["new_device"]["serial"] == "NEW1"
    assert "Personal data must be moved off OLD1" in delivered.stderr
    old, new = show("OLD1"), show("NEW1")
    assert old["replacement_serial"] == "NEW1"
    assert old["status"] == "renewal_started"
    assert [(n["kind"], n["recipient"], n["status"]) for n in old["notices"]] == [
        ("personal_data", "asa@nordlys.se", "pending")
    ]
    assert {k: new[k] for k in ("replaces_serial", "source", "status", "distributor", "model")} == {
        "replaces_serial": "OLD1",
        "source": "store",
        "status": "active",
        "distributor": "Velory",
        "model": "MacBook Air M3",
    }
    assert (new["user_email"], new["user_name"]) == ("asa@nordlys.se", "Åsa Lindström")
    assert [(h["actor"], h["action"], h["to_status"]) for h in new["history"]] == [
        ("alice", "deliver", "active")
    ]
    assert hardware() == ["DUS1", "KEEP", "NEW1", "OLD1"]
    store_start = velory("start", "NEW1")
    assert store_start.returncode == 1
    assert "Velory's normal process" in store_start.stderr
    todo = ok(velory("todo", "--json"))
    assert [(r["serial"], r["action"]) for r in todo] == [("OLD1", "confirm-return")]

    # 4. The admin confirms the return: it was bought out.
    confirmed = ok(
        velory("confirm-return", "OLD1", "--bought-out", "--note", "Bought out by Åsa", "--json")
    )
    assert confirmed["succeeded"] == 1
    old = show("OLD1")
    assert (old["status"], old["outcome"]) == ("return_confirmed", "bought_out")
    assert [(n["actor"], n["text"]) for n in old["notes"]] == [("alice", "Bought out by Åsa")]
    assert [(r["serial"], r["action"]) for r in ok(velory("todo", "--json"))] == [
        ("OLD1", "release")
    ]
    assert "OLD1" in assets()
    assert "OLD1" in hardware()

    # 5. The admin marks it as released: removed, gone from the views, kept in the store.
    released = ok(velory("release", "OLD1", "--json"))
    assert released["results"][0]["status"] == "removed"
    assert assets() == ["DUS1", "KEEP", "NEW1"]
    assert hardware() == ["DUS1", "KEEP", "NEW1"]
    everything = ok(velory("devices", "--include-removed", "--json"))
    assert "OLD1" in [d["serial"] for d in everything]
    old = show("OLD1")
    assert (old["status"], old["outcome"], old["replacement_serial"]) == (
        "removed",
        "bought_out",
        "NEW1",
    )
    assert [(h["action"], h["from_status"], h["to_status"]) for h in old["history"]] == [
        ("import", None, "active"),
        ("start", "active", "renewal_started"),
        ("order", "renewal_started", "renewal_started"),
        ("deliver", "renewal_started", "renewal_started"),
        ("confirm-return", "renewal_started", "return_confirmed"),
        ("release", "return_confirmed", "removed"),
    ]
    assert {h["actor"] for h in old["history"][1:]} == {"alice"}
    assert ok(velory("todo", "--json")) == []

    # Re-running a step is safe: already there is unchanged, not refused.
    again = ok(velory("release", "OLD1", "--json"))
    assert (again["succeeded"], again["unchanged"], again["failed"]) == (0, 1, 0)


BULK_SCRIPT = "# returned this week\nR1\n  r2  \n\nGHOST\nA1\nR1\n"


def test_bulk_release_from_stdin_and_run_again(run: Run, db: Path) -> None:
    seed(
        db,
        ("R1", {"status": "return_confirmed"}),
        ("R2", {"status": "return_confirmed"}),
        ("A1", {}),
    )
    args = ["--db", str(db), "release", "--file", "-", "--json"]

    first = run(args, input=BULK_SCRIPT, timeout=60)
    assert first.returncode == 1, first.stderr
    report = json_out(first)
    assert [(r["serial"], r["ok"], r["changed"], r["status"]) for r in report["results"]] == [
        ("R1", True, True, "removed"),
        ("R2", True, True, "removed"),
        ("GHOST", False, False, None),
        ("A1", False, False, "active"),
    ]
    assert (report["succeeded"], report["unchanged"], report["failed"]) == (2, 0, 2)
    assert "GHOST: no such device" in first.stderr
    assert "A1 is active: release needs return_confirmed" in first.stderr

    second = run(args, input=BULK_SCRIPT, timeout=60)
    assert second.returncode == 1, second.stderr
    again = json_out(second)
    assert [(r["serial"], r["ok"], r["changed"]) for r in again["results"]] == [
        ("R1", True, False),
        ("R2", True, False),
        ("GHOST", False, False),
        ("A1", False, False),
    ]
    assert [r["error"] for r in again["results"]] == [r["error"] for r in report["results"]]
    assert second.stderr == first.stderr

    only_good = run(args, input="R1\nR2\n", timeout=60)
    assert only_good.returncode == 0, only_good.stderr
    assert json_out(only_good)["unchanged"] == 2

    with Store.open(db) as store:
        device = store.device("R1")
        assert device is not None
        assert [h.action for h in store.history(device.id)] == ["import", "release"]


@pytest.mark.parametrize("stdin", ["closed", "pipe"])
def test_release_without_a_terminal_never_waits(run: Run, db: Path, stdin: str) -> None:
    seed(db, ("R1", {"status": "return_confirmed"}))
    result = run(
        ["--db", str(db), "release", "R1"],
        input=None if stdin == "closed" else "",
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Release R1?" not in result.stderr
    assert "1 released, 0 unchanged, 0 refused." in result.stderr
    with Store.open(db) as store:
        device = store.device("R1")
        assert device is not None
        assert device.status == "removed"


def test_release_with_stdin_closed_altogether(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """As cron may run it: file descriptor 0 closed, not even /dev/null."""
    seed(db, ("R1", {"status": "return_confirmed"}))
    base = {k: v for k, v in os.environ.items() if not k.startswith("VELORY_")}

    def closed_stdin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", 'exec "$@" <&-', "sh", *velory_command(), "--db", str(db), *args],
            capture_output=True,
            text=True,
            env={**base, **env},
            cwd=tmp_path,
            timeout=30,
        )

    from_stdin = closed_stdin("release", "--file", "-")
    assert from_stdin.returncode == 66
    assert from_stdin.stdout == ""
    assert "stdin" in from_stdin.stderr
    result = closed_stdin("release", "R1")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    with Store.open(db) as store:
        device = store.device("R1")
        assert device is not None
        assert device.status == "removed"


def test_renewals_through_the_installed_command(run: Run, db: Path) -> None:
    seed(
        db,
        ("EDGE", {"renewal_date": "2026-07-01"}),
        ("PAST", {"renewal_date": "2026-05-01", "distributor": "Dustin AB"}),
        ("NEXT", {"renewal_date": "2026-07-02"}),
    )
    rows = ok(run(["--db", str(db), "renewals", "--as-of", "2026-06-01", "--json"]))
    assert [(r["serial"], r["days_left"]) for r in rows] == [("PAST", -31), ("EDGE", 30)]


# What support runs once the user has started the process in Velory: the store's order, the
# delivery, the return, the release.
SUPPORT_SCRIPT = """\
set -e
VELORY order PF1 --model 'MacBook Air 13"'
VELORY deliver PF1 --new-serial C02NEW
VELORY confirm-return PF1 --bought-out --note 'Bought out, invoice 4471'
VELORY release PF1
"""


def test_a_support_script_run_again_from_the_top_is_safe(
    run: Run, db: Path, tmp_path: Path
) -> None:
    """Every line of a finished script, run again, is unchanged: the script (``set -e``) gets
    through to its end, and the store is as the first run left it."""
    seed(db, ("PF1", {"status": "renewal_started"}))
    script = tmp_path / "renew.sh"
    command = " ".join(f"'{part}'" for part in [*velory_command(), "--db", str(db)])
    script.write_text(SUPPORT_SCRIPT.replace("VELORY", command))
    env = {key: value for key, value in os.environ.items() if not key.startswith("VELORY_")}

    def script_run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(script)],
            capture_output=True,
            text=True,
            env={**env, "VELORY_ACTOR": "support"},
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    first = script_run()
    assert first.returncode == 0, first.stderr
    with Store.open(db) as store:
        device = store.device("PF1")
        assert device is not None
        history = store.history(device.id)
        notes = store.notes(device.id)
    second = script_run()
    assert second.returncode == 0, second.stderr
    assert "refused" not in second.stdout
    assert second.stdout.count("unchanged") == 4
    with Store.open(db) as store:
        device = store.device("PF1")
        assert device is not None
        assert (device.status, device.outcome) == ("removed", "bought_out")
        assert store.history(device.id) == history
        assert store.notes(device.id) == notes
        assert [d.serial for d in store.devices() if d.serial == "C02NEW"] == ["C02NEW"]


@pytest.mark.parametrize(
    "args",
    [
        ["show", "OLD1"],
        ["devices"],
        ["renewals", "--as-of", "2027-01-10"],
        ["digest", "--dry-run", "--to", "it@nordlys.se", "--as-of", "2027-01-10"],
        ["notices", "send", "--dry-run", "--as-of", "2027-01-10"],
    ],
    ids=["show", "devices", "renewals", "digest", "notices"],
)
def test_a_reader_that_has_gone_is_not_an_error(db: Path, args: list[str]) -> None:
    """`velory … | head -1`: the reader had all it wanted, so velory exits 0 and says nothing."""
    seed(db, ("OLD1", {"renewal_date": "2026-12-01"}))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before velory writes a byte
    try:
        writer = subprocess.run(
            [*velory_command(), "--db", str(db), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert writer.returncode == 0, writer.stderr
    assert writer.stderr == ""
