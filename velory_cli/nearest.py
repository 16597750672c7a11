"""The serials an unknown one may have meant: "PF1K2X8Z: no such device (did you mean
PF1K2X9Z?)".

A mistyped serial is mostly one character off: one wrong, left out, added, or two swapped.
Every key one edit away is asked for by name, through the unique index of serial keys, and
the keys that share a long prefix with it are read as a few short ranges of that index; the
ones found are ranked by edit distance. However large the store, an unknown serial costs a
couple of index searches, never a read of every device.
"""

from __future__ import annotations

import string

from velory_cli.folding import fold
from velory_cli.store import Store

# Most suggestions shown, closest first.
MAX_SUGGESTIONS = 3
# The characters serials are made of, tried in each place of a key one edit away from it
# (with the key's own characters).
_SERIAL_ALPHABET = string.digits + string.ascii_lowercase + "-"
# Keys shorter than this are not corrected: too many serials are a couple of edits from "X1".
_MIN_LENGTH = 3
# Devices read from each prefix range of the index.
_PER_PREFIX = 20


def nearest_serials(store: Store, serial: str, *, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """The stored serials closest to ``serial`` (one no device has), as they are written,
    closest first; none when nothing is close."""
    key = fold(serial)
    if len(key) < _MIN_LENGTH or len(key) > 200:
        return []
    # Close: at most 1 edit for a short serial, 2 from 8 characters on.
    most = 1 if len(key) < 8 else 2
    prefixes = [key[:length] for length in range(len(key) - 1, max(len(key) - 4, 1), -1)]
    found = store.serial_candidates(one_edit_away(key), prefixes, per_prefix=_PER_PREFIX)
    ranked = sorted(
        (distance, stored_serial)
        for stored_serial, stored_key in found
        if (distance := edit_distance(key, stored_key)) <= most and stored_key != key
    )
    # Only the closest: with one serial a character off, those two off are noise.
    seen: list[str] = []
    for distance, stored_serial in ranked:
        if distance == ranked[0][0] and stored_serial not in seen:
            seen.append(stored_serial)
    return seen[:limit]


def no_such_device(store: Store, serial: str, *, suggest: bool = True) -> str:
    """The error for a serial no device has, with the serials it may have meant."""
    written = serial.strip()
    suggestions = nearest_serials(store, written) if suggest else []
    if not suggestions:
        return f"{written}: no such device"
    return f"{written}: no such device (did you mean {' or '.join(suggestions)}?)"


def one_edit_away(key: str) -> list[str]:
    """Every key one edit from ``key``: a character left out, changed, added, or two
    neighbours swapped, with the characters serials are made of."""
    letters = sorted(set(_SERIAL_ALPHABET).union(key))
    variants: set[str] = set()
    for place in range(len(key) + 1):
        head, tail = key[:place], key[place:]
        if tail:
            variants.add(head + tail[1:])
            variants.update(head + letter + tail[1:] for letter in letters)
            if len(tail) > 1:
                variants.add(head + tail[1] + tail[0] + tail[2:])
        variants.update(head + letter + tail for letter in letters)
    variants.discard(key)
    return sorted(variants)


def edit_distance(first: str, second: str) -> int:
    """The optimal string alignment distance: the edits (a character left out, added or
    changed, or two neighbours swapped) that make ``first`` into ``second``."""
    if first == second:
        return 0
    previous_row: list[int] | None = None
    row = list(range(len(second) + 1))
    for i in range(1, len(first) + 1):
        before, previous_row, row = previous_row, row, [i] + [0] * len(second)
        for j in range(1, len(second) + 1):
            cost = 0 if first[i - 1] == second[j - 1] else 1
            best = min(previous_row[j] + 1, row[j - 1] + 1, previous_row[j - 1] + cost)
            if (
                before is not None
                and i > 1
                and j > 1
                and first[i - 1] == second[j - 2]
                and first[i - 2] == second[j - 1]
            ):
                best = min(best, before[j - 2] + 1)
            row[j] = best
    return row[-1]
