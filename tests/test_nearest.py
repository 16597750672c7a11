"""The serials an unknown one may have meant: found from the index of serial keys, ranked by
edit distance, in milliseconds on a large store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factory import add_device
from tests.test_query_plans import assert_no_scan_of_devices
from velory_cli.importer import ImportOptions, import_file, open_source
from velory_cli.nearest import edit_distance, nearest_serials, no_such_device, one_edit_away
from velory_cli.store import Store


@pytest.mark.parametrize(
    ("first", "second", "distance"),
    [
        ("pf1k2x9z", "pf1k2x9z", 0),
        ("pf1k2x8z", "pf1k2x9z", 1),  # one changed
        ("pf1kx9z", "pf1k2x9z", 1),  # one left out
        ("pf1k22x9z", "pf1k2x9z", 1),  # one added
        ("pf1k2x9z", "pfk12x9z", 1),  # two neighbours swapped
        ("pf1k2x9z", "pf1k2x", 2),
        ("abc", "xyz", 3),
        ("", "abc", 3),
    ],
)
def test_edit_distance(first: str, second: str, distance: int) -> None:
    assert edit_distance(first, second) == distance
    assert edit_distance(second, first) == distance


def test_one_edit_away_holds_every_kind_of_edit() -> None:
    variants = set(one_edit_away("ab1"))
    assert {"b1", "a1", "ab"} <= variants  # left out
    assert {"xb1", "ac1", "ab9"} <= variants  # changed
    assert {"zab1", "a-b1", "ab10"} <= variants  # added
    assert {"ba1", "a1b"} <= variants  # swapped
    assert "ab1" not in variants
    assert all(edit_distance("ab1", variant) == 1 for variant in variants)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        for serial in ("PF1K2X9Z", "PF1K2X9Q", "C02XK1ZLJG5H", "ÅB1234", "QQ1", "ZZ99ZZ99"):
            add_device(opened, serial)
        yield opened


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("PF1K2X8Z", ["PF1K2X9Z"]),
        ("pf1k2x9", ["PF1K2X9Q", "PF1K2X9Z"]),  # both one edit off: both, in serial order
        ("PF1K2X9ZZ", ["PF1K2X9Z"]),
        ("FP1K2X9Z", ["PF1K2X9Z"]),  # swapped at the start: not a prefix of anything stored
        ("XF1K2X9Z", ["PF1K2X9Z"]),  # the first character wrong
        ("C02XK1ZLJG", ["C02XK1ZLJG5H"]),  # two left out at the end of a long serial
        (" c02xk1zljg5 ", ["C02XK1ZLJG5H"]),
        ("åb1235", ["ÅB1234"]),  # folded: any case beyond ASCII
        ("ZZ99ZZ9", ["ZZ99ZZ99"]),
        ("QQ2", ["QQ1"]),
        ("Q1", []),  # short: too many serials are a character from a short one
        ("NOTHINGLIKEIT", []),
    ],
)
def test_nearest_serials(store: Store, typed: str, meant: list[str]) -> None:
    assert nearest_serials(store, typed) == meant


def test_the_error_names_the_nearest_serials(store: Store) -> None:
    assert no_such_device(store, " PF1K2X8Z ") == (
        "PF1K2X8Z: no such device (did you mean PF1K2X9Z?)"
    )
    assert no_such_device(store, "pf1k2x9") == (
        "pf1k2x9: no such device (did you mean PF1K2X9Q or PF1K2X9Z?)"
    )
    assert no_such_device(store, "NOPE") == "NOPE: no such device"
    assert no_such_device(store, "PF1K2X8Z", suggest=False) == "PF1K2X8Z: no such device"


def test_the_candidates_are_read_from_the_serial_keys_index(store: Store) -> None:
    plans = assert_no_scan_of_devices(store, lambda: nearest_serials(store, "PF1K2X8Z"))
    assert all(any("devices_serial_key" in step for step in plan) for plan in plans), plans
    assert any("serial_key>" in step for plan in plans for step in plan), plans  # a range


# ---- a large store ----------------------------------------------------------------------------

LARGE = 200_000


@pytest.fixture(scope="module")
def large_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A store of LARGE devices, made by the import's bulk path."""
    folder = tmp_path_factory.mktemp("large")
    fleet = folder / "fleet.csv"
    with fleet.open("w", encoding="utf-8") as handle:
        handle.write("serial,email,renewal date\n")
        handle.writelines(
            f"C{number * 7919 % 10**9:09d}X,u{number}@example.com,2027-01-01\n"
            for number in range(LARGE)
        )
    with Store.open(folder / "velory.db") as store:
        with open_source(str(fleet)) as source:
            report = import_file(
                store, source, ImportOptions(), now="2026-12-01T00:00:00Z", actor="t"
            )
        assert report.inserted == LARGE
        yield store


def test_unknown_serials_cost_milliseconds_on_a_large_store(large_store: Store) -> None:
    stored = [f"C{number * 7919 % 10**9:09d}X" for number in (1, 500, 77_777, 150_000, 199_999)]
    typed = [
        stored[0][:-1] + "Y",  # the last character wrong
        stored[1][:4] + stored[1][5:],  # one left out
        stored[2][:1] + stored[2][2] + stored[2][1] + stored[2][3:],  # swapped near the start
        "Q" + stored[3][1:],  # the first character wrong
        stored[4] + "7",  # one added
    ]
    nearest_serials(large_store, typed[0])  # the index's pages read once, as by any command
    started = time.perf_counter()
    found = [nearest_serials(large_store, serial) for serial in typed]
    elapsed = time.perf_counter() - started
    for meant, suggestions in zip(stored, found, strict=True):
        assert meant in suggestions, (meant, suggestions)
    # Milliseconds each (a scan of the store takes far longer); generous for a busy machine.
    assert elapsed < 0.5, f"{elapsed:.3f} s for {len(typed)} unknown serials"


def test_on_a_large_store_no_candidate_query_reads_every_device(large_store: Store) -> None:
    plans = assert_no_scan_of_devices(
        large_store, lambda: nearest_serials(large_store, "C000007919Y")
    )
    assert all(any("devices_serial_key" in step for step in plan) for plan in plans), plans
