"""The fields an import fills, and which column of a file feeds each.

A file names its columns as the asset system that wrote it does ("Serial Number", "Asset EOL
Date", "Checked Out To: Email"); each field accepts a few such names, compared in any case and
without spaces or punctuation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The fields an import fills, in the order rows carry them.
FIELDS = (
    "serial",
    "model",
    "category",
    "user_email",
    "user_name",
    "distributor",
    "purchase_date",
    "renewal_date",
    "notes",
)
SERIAL, MODEL, CATEGORY, EMAIL, USER_NAME, DISTRIBUTOR, PURCHASED, RENEWAL, NOTES = range(9)

# The headers each field accepts, the most telling first: where two columns of a file match one
# field, the one whose header comes earlier here wins ("Serial Number" over "SN").
ALIASES: dict[str, tuple[str, ...]] = {
    "serial": ("serial", "serial number", "serial no", "serialnumber", "sn", "computer serial"),
    "model": ("model", "model name", "device"),
    "category": ("category", "type"),
    "user_email": (
        "email",
        "e-mail",
        "user email",
        "email address",
        "checked out to: email",
        "primary user email address",
    ),
    "user_name": (
        "full name",
        "real name",
        "user name",
        "user",
        "employee",
        "primary user display name",
    ),
    "distributor": ("distributor", "supplier", "vendor", "reseller"),
    "purchase_date": ("purchase date", "purchased", "order date", "po date"),
    "renewal_date": (
        "renewal date",
        "renewal",
        "lease end",
        "end of lease",
        "eol date",
        "asset eol date",
        "lease expires",
    ),
    "notes": ("notes", "note", "comment", "comments", "asset notes"),
}

# The device columns the fields after the serial are stored in, in FIELDS order: history
# details name the changes an import makes by them.
STORED_FIELDS = (
    "model",
    "category",
    "user_email",
    "user_name",
    "distributor",
    "purchase_date",
    "renewal_date",
    "import_notes",
)

_HEADER_NOISE = re.compile(r"[\s_\-.:\ufeff]+")


def normalise_header(name: str) -> str:
    """A header as velory compares it: any case, without spaces, ``_ - . :`` or a BOM."""
    return _HEADER_NOISE.sub("", name).lower()


def _alias_index() -> dict[str, tuple[int, int]]:
    """Each normalised alias: its field and rank. Two aliases may normalise alike ("serial
    number" and "serialnumber"); the earlier rank stands."""
    index: dict[str, tuple[int, int]] = {}
    for field_index, name in enumerate(FIELDS):
        for rank, alias in enumerate(ALIASES[name]):
            index.setdefault(normalise_header(alias), (field_index, rank))
    return index


_ALIAS_INDEX = _alias_index()


@dataclass(frozen=True)
class ColumnMap:
    """Which column feeds which field, as a file's header says."""

    positions: tuple[int | None, ...]  # per field: the column's position, or None
    names: tuple[str | None, ...]  # per field: the header as the file spells it
    ignored: tuple[str, ...]  # columns velory does not import, each named once

    def has(self, field_index: int) -> bool:
        return self.positions[field_index] is not None


class UnknownHeader(ValueError):
    """A header named with ``--column`` that the file does not have."""


def map_columns(
    headers: Sequence[str], overrides: Mapping[int, str] | None = None, *, row: int = 1
) -> ColumnMap:
    """Match a header to the fields: any case, without spaces, ``_ - . :``; where two columns
    match one field, the alias earlier in ``ALIASES`` wins, then the earlier column.

    ``overrides`` names the header of a field outright (``--column``), compared as aliases are;
    that column feeds that field and no other. A header the file lacks is ``UnknownHeader``."""
    best: dict[int, tuple[int, int]] = {}  # field: (alias rank, position)
    losers: list[int] = []
    chosen: dict[int, int] = {}  # position: field, as the overrides name them
    for field_index, wanted in (overrides or {}).items():
        key = normalise_header(wanted)
        position = next(
            (p for p, raw in enumerate(headers) if key and normalise_header(raw) == key), None
        )
        if position is None:
            found = ", ".join(f'"{h.strip()}"' for h in headers if h.strip()) or "no column names"
            raise UnknownHeader(
                f'--column {FIELDS[field_index]}="{wanted}": the file has no such column '
                f"(row {row} has {found})"
            )
        best[field_index] = (-1, position)
        chosen[position] = field_index
    for position, raw in enumerate(headers):
        key = normalise_header(raw)
        if not key or position in chosen:
            continue  # an empty header: a column without a name holds nothing velory can use
        hit = _ALIAS_INDEX.get(key)
        if hit is None:
            losers.append(position)
            continue
        field_index, rank = hit
        current = best.get(field_index)
        if current is not None and current[0] < 0:
            losers.append(position)  # the field's column is named by --column
            continue
        if current is None or rank < current[0]:
            if current is not None:
                losers.append(current[1])
            best[field_index] = (rank, position)
        else:
            losers.append(position)
    positions = tuple(best[i][1] if i in best else None for i in range(len(FIELDS)))
    names = tuple(headers[p].strip() if p is not None else None for p in positions)
    used_by = {
        p: n for p, n in zip(positions, names, strict=True) if p is not None and n is not None
    }
    ignored: list[str] = []
    seen: set[str] = set()
    for position in sorted(losers):
        name = headers[position].strip()
        if name in seen:
            continue
        seen.add(name)
        winner = _winner_for(normalise_header(name), positions, used_by)
        if winner is None:
            ignored.append(name)
        elif winner == name:
            ignored.append(f"{name} (the first {name} is used)")
        else:
            ignored.append(f"{name} ({winner} is used)")
    return ColumnMap(positions=positions, names=names, ignored=tuple(ignored))


def parse_column_options(options: Sequence[str]) -> tuple[tuple[int, str], ...]:
    """``--column FIELD=HEADER`` options as (field position, header); a FIELD velory does not
    have, or an option without ``=``, is a usage error."""
    from velory_cli.errors import UsageError

    parsed: dict[int, str] = {}
    for option in options:
        name, equals, header = option.partition("=")
        key = name.strip().lower().replace("-", "_")
        if not equals or not header.strip():
            raise UsageError(f'--column {option!r}: write it as FIELD=HEADER (serial="Asset S/N")')
        if key not in FIELDS:
            raise UsageError(
                f"--column {option!r}: there is no field {name.strip()!r}; the fields are "
                + ", ".join(FIELDS)
            )
        parsed[FIELDS.index(key)] = header.strip()
    return tuple(parsed.items())


def _winner_for(key: str, positions: Sequence[int | None], used_by: dict[int, str]) -> str | None:
    hit = _ALIAS_INDEX.get(key)
    if hit is None:
        return None
    position = positions[hit[0]]
    return used_by.get(position) if position is not None else None
