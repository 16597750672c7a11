"""The MDM check as cron and scripts run it: the installed velory, stdin closed, a minimal
PATH; exports piped in; exit codes a cron job can mail on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Run
from tests.mdm_exports import chromeos_json, graph_json, intune_csv

pytestmark = pytest.mark.subprocess

CRON = {"PATH": "/usr/bin:/bin"}
RECENT = "2026-11-30T08:59:04Z"


def test_the_nightly_check_from_import_to_release(run: Run, tmp_path: Path) -> None:
    inventory = tmp_path / "devices.csv"
    inventory.write_text(
        "Serial,Email,Full Name,Purchase Date\n"
        "PF1K2X9Z,asa@example.com,Åsa Ek,2023-12-01\n"
        "C02ZK1QX,per@example.com,Per Lind,2023-12-01\n"
        "5CD1CHRM,bo@example.com,Bo Ström,2023-12-01\n",
        encoding="utf-8",
    )
    assert run(["import", str(inventory)]).returncode == 0

    # Before any export: the check says so, and cron gets 78.
    none_yet = run(["mdm", "check"], extra_env=CRON)
    assert none_yet.returncode == 78 and none_yet.stdout == ""
    assert "no MDM snapshot" in none_yet.stderr

    intune = intune_csv(
        tmp_path / "DevicesWithInventory.csv",
        [
            {"serial": "PF1K2X9Z", "user": "asa@example.com", "check_in": RECENT},
            {"serial": "C02ZK1QX", "user": "per@example.com", "check_in": RECENT},
            {"serial": "", "user": "nobody@example.com"},
            {"serial": "0315-2787-1432-4710-2587-4283-13", "check_in": RECENT},
        ],
    )
    imported = run(["mdm", "import", str(intune), "--json"], extra_env=CRON)
    assert imported.returncode == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert (summary["devices"], summary["skipped"]) == (2, 2)

    # Graph JSON through a pipe, under a source name of its own.
    graph = graph_json(tmp_path / "g.json", [{"serial": "5CD1CHRM", "user": "bo@example.com"}])
    piped = run(
        ["mdm", "import", "-", "--source", "intune-eu"], input=graph.read_text(), extra_env=CRON
    )
    assert piped.returncode == 0, piped.stderr

    agree = run(["mdm", "check", "--as-of", "2026-12-02"], extra_env=CRON)
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert "No discrepancies" in agree.stdout

    # PF1K2X9Z is returned; the admin releases it before Intune has let go of it.
    for args in (["start", "PF1K2X9Z"], ["confirm-return", "PF1K2X9Z"]):
        assert run(args).returncode == 0
    refused = run(["release", "PF1K2X9Z", "--json"], extra_env=CRON)
    assert refused.returncode == 1
    assert "PF1K2X9Z is still in Intune as of 2026-11-30" in refused.stderr
    assert json.loads(refused.stdout)["failed"] == 1

    forced = run(["release", "PF1K2X9Z", "--force"], extra_env=CRON)
    assert forced.returncode == 0, forced.stderr
    found = run(["mdm", "check", "--json", "--as-of", "2026-12-02"], extra_env=CRON)
    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert [(d["kind"], d["serial"], d["source"]) for d in report["discrepancies"]] == [
        ("released_but_enrolled", "PF1K2X9Z", "intune")
    ]

    # The next export no longer lists it: the check agrees again.
    intune_csv(
        intune,
        [{"serial": "C02ZK1QX", "user": "per@example.com", "check_in": "2026-12-01T07:00:00Z"}],
    )
    assert run(["mdm", "import", str(intune)], extra_env=CRON).returncode == 0
    assert run(["mdm", "check", "--as-of", "2026-12-02"], extra_env=CRON).returncode == 0


def test_a_chromeos_export_and_the_csv_a_script_reads(run: Run, tmp_path: Path) -> None:
    inventory = tmp_path / "devices.csv"
    inventory.write_text("Serial,Email,Purchase Date\nCB1,a@example.com,2024-01-01\n", "utf-8")
    assert run(["import", str(inventory)]).returncode == 0
    export = chromeos_json(
        tmp_path / "chromeos.json",
        [
            {"serial": "CB1", "user": "b@example.com", "check_in": "2026-09-01T10:00:00.000Z"},
            {"serial": "CB2", "user": "c@example.com", "check_in": RECENT},
        ],
    )
    assert run(["mdm", "import", str(export)], extra_env=CRON).returncode == 0
    result = run(["mdm", "check", "--csv", "--as-of", "2026-12-02"], extra_env=CRON)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("serial,kind,source,")
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["CB2", "unknown_to_velory", "google"],
        ["CB1", "user_mismatch", "google"],
        ["CB1", "stale", "google"],
    ]
