"""velory mdm import and check in-process, and what release, show, stats and todo make of the
snapshots: exit codes, stdout and stderr, each kept apart."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from tests.mdm_exports import MDM, chromeos_json, graph_json, intune_csv
from velory_cli.mdm.check import DISCREPANCY_KEYS
from velory_cli.store import Store

RECENT = "2026-11-30T08:59:04Z"
AS_OF = ["--as-of", "2026-12-02"]


@pytest.fixture
def db(home: Path) -> Path:
    path = home / "velory.db"
    with Store.open(path) as store:
        add_device(store, "PF1")
        add_device(store, "DONE1", status="return_confirmed", outcome="returned")
        add_device(store, "GONE1", status="removed", outcome="returned")
    return path


def ok(result: Result, code: int = 0) -> Result:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    return result


def one_error(result: Result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[-1].startswith("error: ")
    for word in words:
        assert word in lines[-1]


def agreeing_intune(tmp_path: Path, *extra: dict[str, Any]) -> Path:
    return intune_csv(
        tmp_path / "DevicesWithInventory.csv",
        [
            {"serial": "PF1", "user": "pf1@example.com", "check_in": RECENT},
            {"serial": "DONE1", "user": "done1@example.com", "check_in": RECENT},
            *extra,
        ],
    )


# ---- import ----------------------------------------------------------------------------------


def test_import_an_intune_export(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    path = agreeing_intune(tmp_path, {"serial": ""}, {"serial": "0"})
    result = ok(invoke(["mdm", "import", str(path), "--json"]))
    summary = json_out(result)
    assert summary["source"] == "intune" and summary["kind"] == "intune-csv"
    assert (summary["devices"], summary["skipped"], summary["rows"]) == (2, 2, 4)
    assert summary["skipped_by_reason"] == {"empty": 1, "placeholder": 1}
    assert summary["taken_at"] == RECENT and summary["replaced"] is None
    again = json_out(ok(invoke(["mdm", "import", str(path), "--json"])))
    assert again["replaced"]["devices"] == 2


def test_import_as_a_table_says_what_it_kept(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    result = ok(invoke(["mdm", "import", str(agreeing_intune(tmp_path))]))
    assert "MDM snapshot of Intune as of 2026-11-30" in result.stdout
    assert "Kept 2 devices as Intune's snapshot." in result.stderr
    one = intune_csv(tmp_path / "one.csv", [{"serial": "PF1", "check_in": RECENT}])
    again = ok(invoke(["mdm", "import", str(one)]))
    assert (
        "Kept 1 device as Intune's snapshot; it replaces the snapshot as of 2026-11-30 "
        "(2 devices)." in again.stderr
    )


def test_import_from_stdin(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    data = graph_json(tmp_path / "g.json", [{"serial": "PF1"}]).read_bytes()
    summary = json_out(ok(invoke(["mdm", "import", "-", "--json"], input=data)))
    assert (summary["kind"], summary["devices"], summary["file"]) == ("graph-json", 1, "stdin")


def test_a_generic_csv_with_its_source_named(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Serial;E-mail;Last seen\nPF1;pf1@example.com;2026-11-30\n", "utf-8")
    one_error(invoke(["mdm", "import", str(path)]), 2, "--source")
    summary = json_out(ok(invoke(["mdm", "import", str(path), "--source", "Mosyle", "--json"])))
    assert (summary["source"], summary["name"], summary["devices"]) == ("mosyle", "Mosyle", 1)


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (None, 66, ["no such file"]),
        ("Name,Model\nx,y\n", 65, ["no serial column", "Name, Model"]),
        ('{"value": [{"serialNumber": "A1", "managementAgent": "mdm"}', 65, ["not a JSON"]),
    ],
)
def test_a_file_that_is_no_export_keeps_the_snapshot(
    invoke: Invoke, db: Path, tmp_path: Path, content: str | None, code: int, words: list[str]
) -> None:
    ok(invoke(["mdm", "import", str(agreeing_intune(tmp_path))]))
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, "utf-8")
    one_error(invoke(["mdm", "import", str(path)]), code, *words)
    check = json_out(ok(invoke(["mdm", "check", "--json", *AS_OF])))
    assert check["snapshots"][0]["devices"] == 2


def test_a_source_name_with_a_control_character_is_usage(
    invoke: Invoke, db: Path, tmp_path: Path
) -> None:
    path = agreeing_intune(tmp_path)
    one_error(invoke(["mdm", "import", str(path), "--source", "a\x1bb"]), 2, "control character")


def test_no_store_is_74_and_creates_none(invoke: Invoke, home: Path, tmp_path: Path) -> None:
    path = agreeing_intune(tmp_path)
    one_error(invoke(["mdm", "import", str(path)]), 74, "no store")
    one_error(invoke(["mdm", "check"]), 74, "no store")
    assert not (home / "velory.db").exists()


# ---- check -----------------------------------------------------------------------------------


def test_check_with_no_snapshot_says_so_and_exits_78(invoke: Invoke, db: Path) -> None:
    one_error(invoke(["mdm", "check"]), 78, "no MDM snapshot", "velory mdm import")


def test_check_when_all_agree_exits_0(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    ok(invoke(["mdm", "import", str(agreeing_intune(tmp_path))]))
    # PF1 and DONE1 agree; GONE1 is released and gone from Intune.
    report = json_out(ok(invoke(["mdm", "check", "--json", *AS_OF])))
    assert report["ok"] is True and report["discrepancies"] == []
    table = ok(invoke(["mdm", "check", *AS_OF]))
    assert "No discrepancies" in table.stdout
    assert "Intune: 2 devices as of 2026-11-30" in table.stderr


def test_quiet_runs_print_nothing_when_all_is_well(
    invoke: Invoke, db: Path, tmp_path: Path
) -> None:
    path = agreeing_intune(tmp_path)
    imported = ok(invoke(["mdm", "import", str(path), "--quiet"]))
    assert (imported.stdout, imported.stderr) == ("", "")
    checked = ok(invoke(["mdm", "check", "--quiet", *AS_OF]))
    assert (checked.stdout, checked.stderr) == ("", "")
    with Store.open(db) as store:
        add_device(store, "NEW1")
    found = ok(invoke(["mdm", "check", "--quiet", *AS_OF]), 1)
    assert "missing_from_mdm" in found.stdout and "NEW1" in found.stdout


def test_check_lists_what_disagrees_and_exits_1(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    path = intune_csv(
        tmp_path / "i.csv",
        [
            {"serial": "PF1", "user": "someone@example.com", "check_in": "2026-10-01T00:00:00Z"},
            {"serial": "GONE1", "check_in": RECENT, "state": "Retire pending"},
            {"serial": "NEW1", "check_in": RECENT},
        ],
    )
    ok(invoke(["mdm", "import", str(path)]))
    report = json_out(ok(invoke(["mdm", "check", "--json", *AS_OF]), 1))
    assert [(d["kind"], d["serial"]) for d in report["discrepancies"]] == [
        ("released_but_enrolled", "GONE1"),
        ("missing_from_mdm", "DONE1"),
        ("unknown_to_velory", "NEW1"),
        ("user_mismatch", "PF1"),
        ("stale", "PF1"),
    ]
    assert report["counts"]["user_mismatch"] == 1 and report["total"] == 5
    assert report["stale_days"] == 30 and report["as_of"] == "2026-12-02"
    assert set(report["discrepancies"][0]) == set(DISCREPANCY_KEYS)
    # --stale-days moves the limit.
    longer = json_out(ok(invoke(["mdm", "check", "--json", "--stale-days", "90", *AS_OF]), 1))
    assert longer["counts"]["stale"] == 0

    table = ok(invoke(["mdm", "check", *AS_OF]), 1)
    assert "released_but_enrolled" in table.stdout and "GONE1" in table.stdout
    assert "5 discrepancies" in table.stdout

    as_csv = ok(invoke(["mdm", "check", "--csv", *AS_OF]), 1)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == list(DISCREPANCY_KEYS)
    assert [row["serial"] for row in rows] == ["GONE1", "DONE1", "NEW1", "PF1", "PF1"]
    assert rows[0]["mdm_state"] == "Retire pending"


@pytest.mark.parametrize("args", [["--stale-days", "-1"], ["--stale-days", "4000"]])
def test_stale_days_out_of_range_is_usage(invoke: Invoke, db: Path, args: list[str]) -> None:
    result = invoke(["mdm", "check", *args])
    assert result.exit_code == 2 and result.stdout == ""


@pytest.mark.parametrize(
    "empty",
    ["DevicesWithInventory_header-only_48cols.csv", "DevicesWithInventory_header-only_51cols.csv"],
)
def test_an_export_of_no_devices_does_not_replace_a_snapshot_of_some(
    invoke: Invoke, db: Path, tmp_path: Path, empty: str
) -> None:
    # An export that failed or was filtered: kept, every device would read as gone from the
    # MDM and every release pass its guard.
    ok(invoke(["mdm", "import", str(agreeing_intune(tmp_path))]))
    header_only = MDM / "intune" / empty
    one_error(
        invoke(["mdm", "import", str(header_only)]),
        65,
        "lists no devices",
        "snapshot of 2 devices",
        "--allow-empty",
        "the previous snapshot stands",
    )
    check = json_out(ok(invoke(["mdm", "check", "--json", *AS_OF])))
    assert check["snapshots"][0]["devices"] == 2
    refused = ok(invoke(["release", "DONE1", "--json"]), 1)
    assert "still in Intune" in refused.stderr
    # Said so: the MDM has none enrolled.
    kept = json_out(ok(invoke(["mdm", "import", str(header_only), "--allow-empty", "--json"])))
    assert kept["devices"] == 0
    check = json_out(ok(invoke(["mdm", "check", "--json", *AS_OF]), 1))
    assert check["snapshots"][0]["devices"] == 0


def test_the_real_samples_import_and_check(invoke: Invoke, db: Path) -> None:
    for path in (
        MDM / "intune" / "graph-managedDevices.json",
        MDM / "google" / "chromeos-devices.json",
        MDM / "kandji" / "devices.json",
    ):
        ok(invoke(["mdm", "import", str(path), "--json"]))
    report = json_out(ok(invoke(["mdm", "check", "--json", *AS_OF]), 1))
    unknown = {d["serial"] for d in report["discrepancies"] if d["kind"] == "unknown_to_velory"}
    assert unknown == {"C39ZQB9SN6XQ", "C02DG307MD6Q", "3WAZ9FGNC00030E"}
    kandji = next(s for s in report["snapshots"] if s["source"] == "kandji")
    assert (kandji["devices"], kandji["skipped"]) == (0, 1)


# ---- release, show, stats, todo --------------------------------------------------------------


def test_release_is_refused_then_forced(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    ok(invoke(["mdm", "import", str(agreeing_intune(tmp_path))]))
    refused = invoke(["release", "DONE1", "--yes", "--json"])
    assert refused.exit_code == 1
    assert json_out(refused)["results"][0]["error"] == (
        "DONE1 is still in Intune as of 2026-11-30: remove it from the MDM first, import a new "
        "export, or --force"
    )
    assert "still in Intune as of 2026-11-30" in refused.stderr
    dry = ok(invoke(["release", "DONE1", "--force", "--dry-run", "--json"]))
    assert json_out(dry)["succeeded"] == 1
    forced = ok(invoke(["release", "DONE1", "--force", "--yes"]))
    assert "1 released" in forced.stderr
    shown = json_out(ok(invoke(["show", "DONE1", "--json"])))
    assert shown["status"] == "removed"
    assert shown["history"][-1]["details"] == {"forced": True, "mdm": ["Intune as of 2026-11-30"]}
    assert shown["mdm"]["released_but_enrolled"] is True


def test_show_gives_the_mdm_state(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    before = json_out(ok(invoke(["show", "PF1", "--json"])))
    assert before["mdm"] is None
    assert "MDM" not in ok(invoke(["show", "PF1"])).stdout
    ok(invoke(["mdm", "import", str(agreeing_intune(tmp_path))]))
    ok(invoke(["mdm", "import", str(chromeos_json(tmp_path / "c.json", [{"serial": "X"}]))]))
    after = json_out(ok(invoke(["show", "PF1", "--json"])))
    assert after["mdm"]["enrolled"] is True
    assert [(s["name"], s["enrolled"]) for s in after["mdm"]["sources"]] == [
        ("Google", False),
        ("Intune", True),
    ]
    table = ok(invoke(["show", "PF1"])).stdout
    assert "MDM" in table and "Intune" in table and "2026-11-30" in table


def test_stats_and_todo_point_to_the_check_when_it_finds_something(
    invoke: Invoke, db: Path, tmp_path: Path
) -> None:
    stats = ok(invoke(["stats", "--json"]))
    assert json_out(stats)["mdm_discrepancies"] is None
    assert "mdm check" not in stats.stderr
    assert "mdm check" not in ok(invoke(["todo"])).stderr

    ok(invoke(["mdm", "import", str(agreeing_intune(tmp_path))]))
    assert "mdm check" not in ok(invoke(["todo"])).stderr
    assert json_out(ok(invoke(["stats", "--json"])))["mdm_discrepancies"]["stale"] == 0

    path = graph_json(tmp_path / "g.json", [{"serial": "GONE1", "check_in": RECENT}])
    ok(invoke(["mdm", "import", str(path), "--source", "intune"]))
    line = (
        "MDM: 3 discrepancies (1 released but enrolled, 2 missing from MDM); see velory mdm check"
    )
    for args in (["todo"], ["todo", "--json"], ["todo", "--csv"], ["stats"], ["stats", "--json"]):
        result = ok(invoke(args))
        assert result.stderr.strip().splitlines()[-1] == line, args
        assert "MDM:" not in result.stdout
    assert json_out(ok(invoke(["stats", "--json"])))["mdm_discrepancies"] == {
        "released_but_enrolled": 1,
        "missing_from_mdm": 2,
        "unknown_to_velory": 0,
        "user_mismatch": 0,
        "stale": 0,
    }


def test_hostile_values_in_an_export_stay_data(invoke: Invoke, db: Path, tmp_path: Path) -> None:
    path = intune_csv(
        tmp_path / "hostile.csv",
        [
            {"serial": "[bold]X1", "user": "[red]x@example.com", "state": '=HYPERLINK("a")'},
            {"serial": "ESC\x1b[2J", "check_in": RECENT},
            {"serial": "'; DROP TABLE devices; --", "check_in": RECENT},
        ],
    )
    summary = json_out(ok(invoke(["mdm", "import", str(path), "--json"])))
    assert summary["skipped_by_reason"] == {"control_characters": 1}
    table = ok(invoke(["mdm", "check", *AS_OF]), 1)
    assert "[bold]X1" in table.stdout and "[red]x@example.com" in table.stdout
    assert "\x1b" not in table.stdout
    rows = list(
        csv.DictReader(io.StringIO(ok(invoke(["mdm", "check", "--csv", *AS_OF]), 1).stdout))
    )
    hostile = next(row for row in rows if row["serial"] == "[bold]X1")
    assert hostile["mdm_state"] == '\'=HYPERLINK("a")'
    with Store.open(db) as store:
        assert store.device("PF1") is not None  # the devices table is there
