"""Fleet changes through the installed velory: a support script of edits, retirements and
Dustin's returns, run twice; a retired Dustin device reinstated."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Invoke, Run, json_out, velory_command
from tests.factory import add_device
from velory_cli.store import Store

pytestmark = pytest.mark.subprocess


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "fleet" / "velory.db"


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json_out(result)


FLEET_SCRIPT = """\
set -e
printf 'DU1\\tReturned to Dustin, case 88\\nPF2\\tLeft the company\\n' > notes.tsv
VELORY edit PF2 --email bo.ek@nordlys.se --user-name 'Bo Ek'
VELORY edit PF3 --email '' --user-name '' --note 'Spare, IT room'
VELORY confirm-return DU1 --note 'Dustin confirmed the return'
VELORY release DU1
VELORY retire PF4 DU2 --outcome stolen --note 'Police report 2026/4471'
printf 'PF5\\nPF6\\n' | VELORY start --file -
VELORY note --file notes.tsv
"""


def test_a_support_script_of_fleet_changes_run_twice_is_safe(tmp_path: Path, db: Path) -> None:
    with Store.open(db) as store:
        for serial in ("PF2", "PF3", "PF4", "PF5", "PF6"):
            add_device(store, serial)
        add_device(store, "DU1", distributor="Dustin Sverige AB")
        add_device(store, "DU2", distributor="DUSTIN AB", source="imported")
    script = tmp_path / "fleet.sh"
    command = " ".join(f"'{part}'" for part in [*velory_command(), "--db", str(db)])
    script.write_text(FLEET_SCRIPT.replace("VELORY", command))
    env = {key: value for key, value in os.environ.items() if not key.startswith("VELORY_")}

    def script_run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(script)],
            capture_output=True,
            text=True,
            env={**env, "VELORY_ACTOR": "support"},
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            timeout=120,
        )

    first = script_run()
    assert first.returncode == 0, first.stderr
    assert "refused" not in first.stdout

    def everything() -> list[tuple[Any, ...]]:
        with Store.open(db) as store:
            devices = sorted(store.iter_all_devices(), key=lambda device: device.serial)
            return [
                (device, store.history(device.id), store.notes(device.id)) for device in devices
            ]

    after_first = everything()
    by_serial = {device.serial: (device, history, notes) for device, history, notes in after_first}
    assert by_serial["PF2"][0].user_email == "bo.ek@nordlys.se"
    assert (by_serial["PF3"][0].user_email, by_serial["PF3"][0].user_name) == (None, None)
    assert (by_serial["DU1"][0].status, by_serial["DU1"][0].outcome) == ("removed", "returned")
    assert (by_serial["DU2"][0].status, by_serial["DU2"][0].outcome) == ("removed", "stolen")
    assert by_serial["PF4"][0].status == "removed"
    assert by_serial["PF5"][0].status == "renewal_started"
    assert all(entry.actor == "support" for entry in by_serial["DU1"][1][1:])

    second = script_run()
    assert second.returncode == 0, second.stderr
    assert "refused" not in second.stdout
    assert second.stdout.count("unchanged") == 10  # every serial of every line
    assert everything() == after_first


def test_a_retired_dustin_device_is_reinstated_to_where_it_was(run: Run, db: Path) -> None:
    with Store.open(db) as store:
        add_device(store, "DU1", distributor="Dustin", user_email="asa@nordlys.se")
    base = ["--db", str(db)]
    retired = ok(
        run([*base, "retire", "du1", "--outcome", "lost", "--note", "Lost at the fair", "--json"])
    )
    assert retired["results"][0]["status"] == "removed"
    assert ok(run([*base, "hardware", "asa@nordlys.se", "--json"])) == []
    table = run([*base, "devices", "--include-removed"])
    assert "Removed – lost" in table.stdout
    back = ok(run([*base, "reinstate", "DU1", "--reason", "Found in the booth", "--json"]))
    assert back["results"][0] == {
        "serial": "DU1",
        "ok": True,
        "changed": True,
        "status": "active",
        "error": None,
        "outcome": None,
    }
    assert [d["serial"] for d in ok(run([*base, "hardware", "asa@nordlys.se", "--json"]))] == [
        "DU1"
    ]
    shown = ok(run([*base, "show", "DU1", "--json"]))
    assert [entry["action"] for entry in shown["history"]][-2:] == ["retire", "reinstate"]
    assert shown["history"][-1]["details"] == {"reason": "Found in the booth"}
    # The same line of a script again: unchanged, exit 0.
    again = ok(run([*base, "reinstate", "DU1", "--reason", "Found in the booth", "--json"]))
    assert (again["unchanged"], again["results"][0]["status"]) == (1, "active")
    # And it still leaves through Dustin's door: confirmed from active, then released.
    ok(run([*base, "confirm-return", "DU1", "--json"]))
    assert ok(run([*base, "release", "DU1", "--json"]))["results"][0]["status"] == "removed"


def test_reruns_of_order_deliver_and_confirm_return_at_the_command_line(
    invoke: Invoke, home: Path
) -> None:
    """Re-runs are safe all the way, through the commands' own exit codes."""
    with Store.open(home / "velory.db") as store:
        add_device(store, "PF1", status="renewal_started")
    steps = [
        ["order", "PF1", "--model", "MacBook Air"],
        ["deliver", "PF1", "--new-serial", "NEW1"],
        ["confirm-return", "PF1", "--bought-out"],
        ["release", "PF1"],
    ]
    for step in steps:
        first = invoke([*step, "--json"])
        assert first.exit_code == 0, first.output
        assert json_out(first)["succeeded"] == 1
    for step in steps:
        again = invoke([*step, "--json"])
        assert again.exit_code == 0, again.output
        assert again.exception is None
        data = json_out(again)
        assert (data["succeeded"], data["unchanged"], data["failed"]) == (0, 1, 0)
        assert data["results"][0]["status"] == "removed"
    other = invoke(["confirm-return", "PF1"])
    assert other.exit_code == 1
    assert invoke(["order", "PF1", "--model", "MacBook Pro"]).exit_code == 1
    assert invoke(["deliver", "PF1", "--new-serial", "NEW2"]).exit_code == 1
