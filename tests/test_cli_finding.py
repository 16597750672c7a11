"""Finding devices from the command line: users to chase in `todo`, `devices --search`,
`--exclude-distributor`, and the serials an unknown one may have meant."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from velory_cli.renewals import TODO_KEYS
from velory_cli.store import Store

AS_OF = "2026-12-10"


@pytest.fixture
def fleet(empty_store: Path) -> Path:
    with Store.open(empty_store) as store:
        add_device(
            store,
            "PF1K2X9Z",
            user_email="asa.lindstrom@nordlys.se",
            user_name="Åsa LINDSTRÖM",
            model="MacBook Pro 14",
            distributor="Atea Sverige AB",
            renewal_date="2026-11-20",
        )
        sent = add_device(
            store,
            "C02XK1ZLJG5H",
            user_email="bo.ek@nordlys.se",
            user_name="Bo Ek",
            model="ThinkPad T14",
            distributor="Elkjøp Business",
            renewal_date="2026-12-01",
        )
        add_device(
            store,
            "DU55TIN1",
            user_email="cia@nordlys.se",
            user_name="Cia Berg",
            distributor="Dustin Sverige AB",
            renewal_date="2026-10-01",
        )
        add_device(
            store,
            "FUTURE1",
            user_email="dan@nordlys.se",
            user_name="Dan Öberg",
            model="iPhone 15",
            category="Phone",
            distributor="Atea Norge AS",
            renewal_date="2027-06-01",
        )
        add_device(store, "OLD9", user_name="Åsa Lindström", status="removed")
        with store.transaction():
            store.queue_notice(
                sent,
                kind="renewal",
                renewal_date="2026-12-01",
                recipient="bo.ek@nordlys.se",
                at="2026-11-01T08:00:00Z",
            )
    return empty_store


def test_todo_lists_the_users_to_chase_with_their_notice(invoke: Invoke, fleet: Path) -> None:
    result = invoke(["todo", "--json", "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    rows = json_out(result)
    assert [(r["serial"], r["action"], r["since"], r["notice_status"]) for r in rows] == [
        ("PF1K2X9Z", "chase-user", "2026-11-20", None),
        ("C02XK1ZLJG5H", "chase-user", "2026-12-01", "pending"),
    ]
    assert list(rows[0]) == list(TODO_KEYS)
    as_csv = invoke(["todo", "--csv", "--as-of", AS_OF])
    assert as_csv.exit_code == 0 and as_csv.exception is None
    lines = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["serial"], r["action"], r["notice_status"]) for r in lines] == [
        ("PF1K2X9Z", "chase-user", ""),
        ("C02XK1ZLJG5H", "chase-user", "pending"),
    ]
    table = invoke(["todo", "--as-of", AS_OF])
    assert table.exit_code == 0, table.output
    assert table.exception is None
    assert "Notice" in table.stdout
    assert [line.split()[0] for line in table.stdout.splitlines() if "chase-user" in line] == [
        "chase-user",
        "chase-user",
    ]
    before = invoke(["todo", "--json", "--as-of", "2026-11-20"])
    assert json_out(before) == []  # the renewal date itself has not passed yet
