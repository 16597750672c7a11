"""The fleet in numbers: devices by status and by distributor, renewals per month ahead."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from velory_cli.models import DEVICE_STATUSES
from velory_cli.store import Store

MONTHS_AHEAD = 12
# The name counted for devices whose distributor is not known.
NO_DISTRIBUTOR = "(none)"


@dataclass(frozen=True)
class Stats:
    by_status: dict[str, int]
    by_distributor: dict[str, int]
    renewals_by_month: list[tuple[str, int]]
    # What `velory mdm check` finds, by kind; None when no MDM snapshot was imported.
    mdm_discrepancies: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_status": self.by_status,
            "by_distributor": self.by_distributor,
            "renewals_by_month": [
                {"month": month, "count": count} for month, count in self.renewals_by_month
            ],
            "mdm_discrepancies": self.mdm_discrepancies,
        }


def fleet_stats(store: Store, *, as_of: date, months: int = MONTHS_AHEAD) -> Stats:
    """``by_status``: every device, removed ones too, each status listed even at 0.
    ``by_distributor``: company assets (devices not removed), most devices first.
    ``renewals_by_month``: devices not removed renewing in as-of's month and the months after
    it, ``months`` in all, each month listed even at 0."""
    counted = store.count_by_status()
    by_status = {status: counted.get(status, 0) for status in DEVICE_STATUSES}
    by_status.update({s: n for s, n in counted.items() if s not in by_status})
    by_distributor = _merge_spellings(store.count_by_distributor())
    month_starts = [_add_months(as_of.replace(day=1), n) for n in range(months + 1)]
    counts = store.renewals_per_month(month_starts[0].isoformat(), month_starts[-1].isoformat())
    keys = [start.isoformat()[:7] for start in month_starts[:-1]]
    from velory_cli.mdm.check import discrepancy_counts

    return Stats(
        by_status,
        by_distributor,
        [(key, counts.get(key, 0)) for key in keys],
        mdm_discrepancies=discrepancy_counts(store, today=as_of),
    )


def _merge_spellings(counts: list[tuple[str | None, int]]) -> dict[str, int]:
    """One count per distributor whatever the case ("Atea", "ATEA"), under the spelling most
    of its devices use; most devices first."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for name, count in counts:
        name = name or NO_DISTRIBUTOR
        groups.setdefault(name.casefold(), []).append((name, count))
    merged = [
        (min(spellings, key=lambda s: (-s[1], s[0]))[0], sum(n for _, n in spellings))
        for spellings in groups.values()
    ]
    merged.sort(key=lambda item: (-item[1], item[0].casefold()))
    return dict(merged)


def _add_months(first_of_month: date, months: int) -> date:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)
