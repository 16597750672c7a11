"""Statuses, the transitions between them, and the actions on devices.

``active`` -> ``renewal_started`` -> ``return_confirmed`` -> ``removed``; ``reinstate`` takes a
device released by mistake back to ``return_confirmed``. Nothing else moves a status.
"""

from __future__ import annotations

ACTIVE = "active"
RENEWAL_STARTED = "renewal_started"
RETURN_CONFIRMED = "return_confirmed"
REMOVED = "removed"

STATUSES = (ACTIVE, RENEWAL_STARTED, RETURN_CONFIRMED, REMOVED)

OUTCOME_RETURNED = "returned"
OUTCOME_BOUGHT_OUT = "bought_out"

# How Velory's own screens word each status, so admins recognise them in tables.
STATUS_LABELS = {
    ACTIVE: "Active",
    RENEWAL_STARTED: "Active – pending return",
    RETURN_CONFIRMED: "Return confirmed",
    REMOVED: "Removed",
}


def status_label(status: str, outcome: str | None = None) -> str:
    if status == RETURN_CONFIRMED and outcome == OUTCOME_BOUGHT_OUT:
        return "Bought out"
    return STATUS_LABELS.get(status, status)
