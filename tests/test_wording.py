"""Counts read as English, through one helper."""

from __future__ import annotations

from velory_cli.wording import count, is_are, listing, plural


def test_counts_agree_with_their_number() -> None:
    assert count(1, "device") == "1 device"
    assert count(2, "device") == "2 devices"
    assert count(0, "notice") == "0 notices"
    assert count(1, "mail") == "1 mail"
    assert count(3, "entry") == "3 entries"
    assert count(1_000_000, "row") == "1,000,000 rows"
    assert plural("row", 1) == "row"
    assert is_are(1) == "is" and is_are(2) == "are"


def test_a_few_items_are_named_and_many_are_counted() -> None:
    assert listing(["PF1"]) == "PF1"
    assert listing(["PF1", "PF2"]) == "PF1 and PF2"
    assert listing(["PF1", "PF2", "PF3"]) == "PF1, PF2 and PF3"
    many = [f"S{i}" for i in range(12)]
    assert listing(many) == "12 devices (S0, S1, S2, … and 9 more)"
