"""The fleet in numbers: by status, by distributor, renewals per month ahead."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.factory import add_device
from velory_cli.stats import fleet_stats
from velory_cli.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


def test_stats_count_exactly(store: Store) -> None:
    add_device(store, "A1", distributor="Atea", renewal_date="2026-11-30")
    add_device(store, "A2", distributor="ATEA ", renewal_date="2026-11-01")
    add_device(store, "A3", distributor="Atea", renewal_date="2027-10-31")
    add_device(store, "A4", distributor="Atea", renewal_date="2027-11-01")  # 13th month
    add_device(store, "D1", distributor="Dustin AB", renewal_date="2026-10-31")  # overdue
    add_device(store, "S1", distributor="Velory", source="store", renewal_date="2029-01-01")
    add_device(store, "X1", distributor=None, renewal_date="2027-01-15", status="renewal_started")
    add_device(store, "X2", distributor="", renewal_date="2027-01-20", status="return_confirmed")
    add_device(store, "R1", distributor="Atea", renewal_date="2026-12-01", status="removed")
    add_device(store, "R2", distributor="Misco", renewal_date="2026-12-02", status="removed")

    stats = fleet_stats(store, as_of=date(2026, 11, 15)).to_dict()

    assert stats["by_status"] == {
        "active": 6,
        "renewal_started": 1,
        "return_confirmed": 1,
        "removed": 2,
    }
    assert stats["by_distributor"] == {
        "Atea": 4,
        "(none)": 2,
        "Dustin AB": 1,
        "Velory": 1,
    }
    assert list(stats["by_distributor"]) == ["Atea", "(none)", "Dustin AB", "Velory"]
    assert stats["renewals_by_month"] == [
        {"month": "2026-11", "count": 2},
        {"month": "2026-12", "count": 0},
        {"month": "2027-01", "count": 2},
        {"month": "2027-02", "count": 0},
        {"month": "2027-03", "count": 0},
        {"month": "2027-04", "count": 0},
        {"month": "2027-05", "count": 0},
        {"month": "2027-06", "count": 0},
        {"month": "2027-07", "count": 0},
        {"month": "2027-08", "count": 0},
        {"month": "2027-09", "count": 0},
        {"month": "2027-10", "count": 1},
    ]


def test_months_cross_the_year_and_an_empty_store_counts_zero(store: Store) -> None:
    stats = fleet_stats(store, as_of=date(2026, 12, 31)).to_dict()
    months = [entry["month"] for entry in stats["renewals_by_month"]]
    assert months[0] == "2026-12"
    assert months[1] == "2027-01"
    assert months[-1] == "2027-11"
    assert len(months) == 12
    assert {entry["count"] for entry in stats["renewals_by_month"]} == {0}
    assert stats["by_status"] == {
        "active": 0,
        "renewal_started": 0,
        "return_confirmed": 0,
        "removed": 0,
    }
    assert stats["by_distributor"] == {}
