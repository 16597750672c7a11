"""Finding devices as cron and scripts do it: the installed velory, stdin closed or a pipe,
PATH=/usr/bin:/bin, the export read back."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.conftest import Run

pytestmark = pytest.mark.subprocess

INVENTORY = (
    "Serial,Email,Full Name,Model,Distributor,Renewal Date,Notes\n"
    "PF1K2X9Z,asa@nordlys.se,Åsa LINDSTRÖM,MacBook Pro,Atea,2026-11-01,Arrived scratched\n"
    "C02XK1ZLJG5H,bo@nordlys.se,Bo Ek,ThinkPad T14,Dustin AB,2026-11-01,\n"
    "FUTURE1,dan@nordlys.se,Dan Öberg,iPhone 15,Elkjøp,2027-06-01,\n"
)


def test_a_script_finds_chases_and_reads_its_export_back(run: Run, tmp_path: Path) -> None:
    inventory = tmp_path / "devices.csv"
    inventory.write_text(INVENTORY, encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin"}
    assert run(["import", str(inventory)], extra_env=env, closed=(0,)).returncode == 0

    found = run(["devices", "--search", "lindström", "--csv"], extra_env=env, closed=(0,))
    assert found.returncode == 0, found.stderr
    assert [r["serial"] for r in csv.DictReader(io.StringIO(found.stdout))] == ["PF1K2X9Z"]

    todo = run(["todo", "--as-of", "2026-12-02", "--exclude-distributor", "elkjøp", "--json"])
    assert todo.returncode == 0, todo.stderr
    assert [(r["serial"], r["action"]) for r in json.loads(todo.stdout)] == [
        ("PF1K2X9Z", "chase-user")  # Dustin's device is Dustin's to chase
    ]

    refused = run(["start", "--file", "-", "--json"], input="PF1K2X8Z\n", extra_env=env)
    assert refused.returncode == 1
    (result,) = json.loads(refused.stdout)["results"]
    assert result["error"] == "PF1K2X8Z: no such device (did you mean PF1K2X9Z?)"
    assert "Traceback" not in refused.stderr

    assert run(["note", "PF1K2X9Z", "Bag returned"]).returncode == 0
    exported = run(["export", "--output", str(tmp_path / "export.csv")], extra_env=env)
    assert exported.returncode == 0, exported.stderr
    again = run(["import", str(tmp_path / "export.csv"), "--json"], extra_env=env, closed=(0,))
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (0, 0, 3)
    shown = json.loads(run(["show", "PF1K2X9Z", "--json"]).stdout)
    assert [note["text"] for note in shown["notes"]] == ["Arrived scratched", "Bag returned"]
