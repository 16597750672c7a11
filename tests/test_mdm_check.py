"""Snapshots and the check, as library calls with the day passed in: one snapshot per source,
replaced whole; each kind of discrepancy found, and nothing for devices that agree."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.factory import add_device
from tests.mdm_exports import chromeos_json, graph_json, intune_csv
from velory_cli.errors import ConfigError, InvalidInput, UsageError
from velory_cli.importer import Source
from velory_cli.lifecycle import release_devices
from velory_cli.mdm.check import (
    KINDS,
    check_snapshots,
    device_mdm_state,
    discrepancy_counts,
    discrepancy_line,
)
from velory_cli.mdm.snapshot import SnapshotReport, import_snapshot
from velory_cli.mdm.store import MdmStore
from velory_cli.store import Store

TODAY = date(2026, 12, 2)
NOW = "2026-12-02T09:00:00Z"
RECENT = "2026-11-30T08:59:04Z"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


def load(store: Store, path: Path, source: str | None = None) -> SnapshotReport:
    with path.open("rb") as handle:
        opened = Source(name=path.name, stream=handle, size=None, suffix=path.suffix.lower())
        return import_snapshot(store, opened, source_given=source, now=NOW, actor="tester")


def kinds(store: Store, stale_days: int = 30) -> list[tuple[str, str, str | None]]:
    report = check_snapshots(store, today=TODAY, stale_days=stale_days)
    return [(d["kind"], d["serial"], d["source"]) for d in report.discrepancies]


# ---- snapshots -------------------------------------------------------------------------------


def test_a_snapshot_keeps_each_device_and_when_it_was_taken(store: Store, tmp_path: Path) -> None:
    report = load(
        store,
        intune_csv(
            tmp_path / "intune.csv",
            [
                {"serial": "PF1", "user": "a@example.com", "check_in": RECENT},
                {"serial": "PF2", "check_in": "2026-11-20T10:00:00Z"},
                {"serial": ""},
                {"serial": "0"},
                {"serial": "[REDACTED]"},
            ],
        ),
    )
    assert (report.source, report.name, report.kind) == ("intune", "Intune", "intune-csv")
    assert (report.rows, report.devices, report.skipped_total) == (5, 2, 3)
    assert report.skipped == {"empty": 1, "placeholder": 1, "redacted": 1}
    # When it was taken is the file's own latest check-in, not the import time.
    assert report.taken_at == RECENT
    assert report.as_of == "2026-11-30"
    (snapshot,) = MdmStore(store).snapshots()
    assert (snapshot.imported_at, snapshot.taken_at, snapshot.devices) == (NOW, RECENT, 2)


def test_a_check_in_from_the_future_does_not_date_the_snapshot(
    store: Store, tmp_path: Path
) -> None:
    report = load(
        store,
        intune_csv(
            tmp_path / "clock.csv",
            [
                {"serial": "PF1", "check_in": RECENT},
                {"serial": "PF2", "check_in": "2031-01-01T00:00:00Z"},  # a clock far ahead
            ],
        ),
    )
    assert report.taken_at == RECENT


def test_a_new_export_replaces_its_sources_snapshot_and_no_other(
    store: Store, tmp_path: Path
) -> None:
    load(store, intune_csv(tmp_path / "a.csv", [{"serial": "OLD1"}, {"serial": "OLD2"}]))
    load(store, chromeos_json(tmp_path / "c.json", [{"serial": "CB1"}]))
    report = load(store, graph_json(tmp_path / "g.json", [{"serial": "NEW1"}]))
    assert report.previous is not None and report.previous.devices == 2
    mdm = MdmStore(store)
    assert [(s.source, s.devices) for s in mdm.snapshots()] == [("google", 1), ("intune", 1)]
    assert mdm.enrolments("OLD1") == []
    assert [e.snapshot.source for e in mdm.enrolments("new1")] == ["intune"]


def test_a_serial_listed_twice_is_one_device_with_its_latest_check_in(
    store: Store, tmp_path: Path
) -> None:
    report = load(
        store,
        intune_csv(
            tmp_path / "twice.csv",
            [
                {"serial": "PF1", "user": "old@example.com", "check_in": "2026-10-01T00:00:00Z"},
                {"serial": "pf1", "user": "new@example.com", "check_in": RECENT},
                {"serial": "PF1", "user": "older@example.com", "check_in": "2026-09-01T00:00:00Z"},
            ],
        ),
    )
    assert (report.devices, report.duplicates) == (1, 2)
    (enrolment,) = MdmStore(store).enrolments("PF1")
    assert (enrolment.user, enrolment.last_check_in) == ("new@example.com", RECENT)


def test_a_refused_file_leaves_the_previous_snapshot(store: Store, tmp_path: Path) -> None:
    load(store, intune_csv(tmp_path / "a.csv", [{"serial": "KEEP1"}]))
    broken = tmp_path / "broken.json"
    broken.write_text('{"value": [{"serialNumber": "X1", "managementAgent": "mdm"}, ', "utf-8")
    with pytest.raises(InvalidInput):
        load(store, broken)
    assert [e.serial for e in MdmStore(store).enrolments("KEEP1")] == ["KEEP1"]


def test_a_generic_csv_needs_a_source_name(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "mosyle.csv"
    path.write_text("Serial,Email,Last seen\nM1,a@example.com,2026-11-30\n", "utf-8")
    with pytest.raises(UsageError, match="--source"):
        load(store, path)
    assert not MdmStore(store).has_snapshots()
    report = load(store, path, source="Mosyle")
    assert (report.source, report.name, report.devices) == ("mosyle", "Mosyle", 1)


# ---- the check -------------------------------------------------------------------------------


def test_no_snapshot_is_a_configuration_error(store: Store) -> None:
    add_device(store, "PF1")
    with pytest.raises(ConfigError, match="no MDM snapshot"):
        check_snapshots(store, today=TODAY)
    assert discrepancy_counts(store, today=TODAY) is None


def test_devices_that_agree_report_nothing(store: Store, tmp_path: Path) -> None:
    add_device(store, "PF1")  # user pf1@example.com
    add_device(store, "ÅB1", user_email="Åsa@Example.com")
    load(
        store,
        intune_csv(
            tmp_path / "i.csv",
            [
                {"serial": " pf1 ", "user": "PF1@EXAMPLE.COM", "check_in": RECENT},
                {"serial": "åb1", "user": "åsa@example.com", "check_in": RECENT},
            ],
        ),
    )
    report = check_snapshots(store, today=TODAY)
    assert report.discrepancies == []
    assert report.exit_code == 0
    assert report.counts == dict.fromkeys(KINDS, 0)
    assert discrepancy_line(discrepancy_counts(store, today=TODAY)) is None


def test_each_kind_is_found(store: Store, tmp_path: Path) -> None:
    add_device(store, "GONE1", status="removed")
    add_device(store, "NOMDM1")
    add_device(store, "USER1", user_email="asa@example.com")
    add_device(store, "STALE1")
    add_device(store, "NOUSER1", user_email=None)
    add_device(store, "GONE2", status="removed")  # released and gone from the MDM: fine
    load(
        store,
        intune_csv(
            tmp_path / "i.csv",
            [
                {"serial": "GONE1", "state": "Retire pending", "check_in": RECENT},
                {"serial": "UNKNOWN1", "user": "x@example.com", "check_in": RECENT},
                {"serial": "USER1", "user": "per@example.com", "check_in": RECENT},
                {
                    "serial": "STALE1",
                    "user": "stale1@example.com",
                    "check_in": "2026-10-31T10:00:00Z",
                },
                {"serial": "NOUSER1", "user": "bo@example.com", "check_in": RECENT},
            ],
        ),
    )
    assert kinds(store) == [
        ("released_but_enrolled", "GONE1", "intune"),
        ("missing_from_mdm", "NOMDM1", None),
        ("unknown_to_velory", "UNKNOWN1", "intune"),
        ("user_mismatch", "NOUSER1", "intune"),
        ("user_mismatch", "USER1", "intune"),
        ("stale", "STALE1", "intune"),
    ]
    report = check_snapshots(store, today=TODAY)
    first = report.discrepancies[0]
    assert first == {
        "serial": "GONE1",
        "kind": "released_but_enrolled",
        "source": "intune",
        "velory_status": "removed",
        "velory_user": "gone1@example.com",
        "mdm_serial": "GONE1",
        "mdm_user": None,
        "mdm_state": "Retire pending",
        "mdm_last_check_in": RECENT,
        "mdm_as_of": RECENT,
    }
    mismatch = next(d for d in report.discrepancies if d["serial"] == "USER1")
    assert (mismatch["velory_user"], mismatch["mdm_user"]) == ("asa@example.com", "per@example.com")
    assert report.exit_code == 1
    line = discrepancy_line(discrepancy_counts(store, today=TODAY))
    assert line == (
        "MDM: 6 discrepancies (1 released but enrolled, 1 missing from MDM, "
        "1 unknown to velory, 2 user mismatch, 1 stale); see velory mdm check"
    )


def test_stale_counts_whole_days_past_the_limit(store: Store, tmp_path: Path) -> None:
    for serial in ("D30", "D31", "NEVER"):
        add_device(store, serial)
    load(
        store,
        intune_csv(
            tmp_path / "i.csv",
            [
                {"serial": "D30", "user": "d30@example.com", "check_in": "2026-11-02T23:59:00Z"},
                {"serial": "D31", "user": "d31@example.com", "check_in": "2026-11-01T23:59:00Z"},
                # 0001-01-01: no usable check-in date, never stale.
                {"serial": "NEVER", "user": "never@example.com", "check_in": None},
            ],
        ),
    )
    assert kinds(store) == [("stale", "D31", "intune")]
    assert kinds(store, stale_days=31) == []
    assert [k for k, _, _ in kinds(store, stale_days=0)] == ["stale", "stale"]


def test_the_primary_user_matches_by_email_or_upn(store: Store, tmp_path: Path) -> None:
    add_device(store, "UPN1", user_email="asa.ek@corp.example")
    add_device(store, "SPARE1", user_email=None)
    load(
        store,
        intune_csv(
            tmp_path / "i.csv",
            [
                {"serial": "UPN1", "user": "asa@example.com", "upn": "Asa.Ek@corp.example"},
                # A device without a primary user in the MDM (shared, kiosk): nothing to compare.
                {"serial": "SPARE1", "user": "", "upn": ""},
            ],
        ),
    )
    assert kinds(store) == []


def test_every_source_is_checked_and_a_device_in_one_is_not_missing(
    store: Store, tmp_path: Path
) -> None:
    add_device(store, "WIN1")
    add_device(store, "CHROME1")
    add_device(store, "GONE1", status="removed")
    load(store, intune_csv(tmp_path / "i.csv", [{"serial": "WIN1", "user": "win1@example.com"}]))
    load(
        store,
        chromeos_json(
            tmp_path / "c.json",
            [
                {"serial": "CHROME1", "user": "chrome1@example.com", "check_in": RECENT},
                {"serial": "GONE1", "state": "DEPROVISIONED", "check_in": RECENT},
            ],
        ),
    )
    assert kinds(store) == [("released_but_enrolled", "GONE1", "google")]


# ---- release and show ------------------------------------------------------------------------


def test_release_is_refused_while_the_latest_snapshot_lists_the_device(
    store: Store, tmp_path: Path
) -> None:
    add_device(store, "PF1", status="return_confirmed", outcome="returned")
    add_device(store, "PF2", status="return_confirmed", outcome="returned")
    load(
        store,
        graph_json(
            tmp_path / "g.json",
            [{"serial": "PF1", "check_in": RECENT, "state": "retirePending"}],
        ),
    )
    report = release_devices(store, ["pf1", "PF2"], now=NOW, actor="tester")
    refused, released = report.results
    assert not refused.ok and refused.status == "return_confirmed"
    assert refused.error == (
        "PF1 is still in Intune as of 2026-11-30: remove it from the MDM first, import a new "
        "export, or --force"
    )
    assert released.ok and released.changed

    forced = release_devices(store, ["PF1"], now=NOW, actor="tester", force=True)
    assert forced.succeeded == 1
    device = store.device("PF1")
    assert device is not None and device.status == "removed"
    entry = store.history(device.id)[-1]
    assert entry.action == "release"
    assert entry.details == {"forced": True, "mdm": ["Intune as of 2026-11-30"]}


def test_release_works_as_before_with_no_snapshot_and_once_the_mdm_dropped_it(
    store: Store, tmp_path: Path
) -> None:
    add_device(store, "PF1", status="return_confirmed", outcome="returned")
    add_device(store, "PF2", status="return_confirmed", outcome="returned")
    assert release_devices(store, ["PF1"], now=NOW, actor="tester").succeeded == 1
    load(store, intune_csv(tmp_path / "a.csv", [{"serial": "PF2"}]))
    assert release_devices(store, ["PF2"], now=NOW, actor="tester").failed == 1
    load(store, intune_csv(tmp_path / "b.csv", [{"serial": "OTHER"}]))  # PF2 removed from it
    assert release_devices(store, ["PF2"], now=NOW, actor="tester").succeeded == 1
    device = store.device("PF2")
    assert device is not None
    assert store.history(device.id)[-1].details is None  # not forced: nothing to record


def test_show_gives_the_state_in_each_source(store: Store, tmp_path: Path) -> None:
    add_device(store, "PF1")
    device = store.device("PF1")
    assert device is not None
    assert device_mdm_state(store, device) is None
    load(store, intune_csv(tmp_path / "i.csv", [{"serial": "PF1", "check_in": RECENT}]))
    load(store, chromeos_json(tmp_path / "c.json", [{"serial": "OTHER", "check_in": RECENT}]))
    state = device_mdm_state(store, device)
    assert state is not None
    assert state["enrolled"] is True and state["released_but_enrolled"] is False
    google, intune = state["sources"]
    assert (google["name"], google["enrolled"]) == ("Google", False)
    assert (intune["name"], intune["enrolled"], intune["state"]) == ("Intune", True, "Managed")
    assert intune["last_check_in"] == RECENT


# ---- upgrade ---------------------------------------------------------------------------------


def test_a_store_from_before_the_mdm_step_upgrades_and_keeps_its_devices(tmp_path: Path) -> None:
    from tests.fixtures.make_stores import write_store

    path = tmp_path / "before-mdm.db"
    write_store(path, 2)  # devices, history, notes and notices: the steps before MDM snapshots
    with Store.open(path) as old:
        devices = list(old.iter_all_devices())
        assert devices
        first = devices[0]
        report = load(old, intune_csv(tmp_path / "i.csv", [{"serial": first.serial}]))
        assert report.devices == 1
        assert [e.serial for e in MdmStore(old).enrolments(first.serial)] == [first.serial]
        assert list(old.iter_all_devices()) == devices
        applied = {row[0] for row in old.conn.execute("SELECT name FROM _sqlite_migrations")}
        assert "0005_mdm_snapshots" in applied
