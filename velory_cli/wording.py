"""Counts in English: "1 device", "2 devices". One place, so no message says "1 notices"."""

from __future__ import annotations

from collections.abc import Sequence

# Nouns whose plural is not the noun plus "s".
_PLURALS = {
    "entry": "entries",
    "reply": "replies",
    "match": "matches",
    "discrepancy": "discrepancies",
}


def plural(noun: str, n: int) -> str:
    """``noun`` as it reads after the number ``n``."""
    if n == 1:
        return noun
    return _PLURALS.get(noun, noun + "s")


def count(n: int, noun: str) -> str:
    """``n`` and its noun: "1 device", "2 devices", "0 devices"."""
    return f"{n:,} {plural(noun, n)}" if n >= 10_000 else f"{n} {plural(noun, n)}"


def is_are(n: int) -> str:
    return "is" if n == 1 else "are"


def was_were(n: int) -> str:
    return "was" if n == 1 else "were"


def listing(items: Sequence[str], *, most: int = 5, noun: str = "device") -> str:
    """A few items by name, a long list by count: "PF1", "PF1 and PF2", "PF1, PF2 and PF3",
    "12 devices (PF1, PF2, PF3, … and 9 more)"."""
    if not items:
        return count(0, noun)
    if len(items) <= most:
        if len(items) == 1:
            return items[0]
        return ", ".join(items[:-1]) + " and " + items[-1]
    shown = ", ".join(items[:3])
    return f"{count(len(items), noun)} ({shown}, … and {len(items) - 3} more)"
