"""velory reinstate: an admin who released the wrong device puts it back, losing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from velory_cli.errors import UsageError
from velory_cli.lifecycle import reinstate_device, release_devices
from velory_cli.store import Store

NOW = "2026-12-01T10:00:00Z"


def test_reinstate_undoes_a_release_and_keeps_the_outcome(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        add_device(store, "A1", status="return_confirmed", outcome="bought_out")
        release_devices(store, ["A1"], now=NOW, actor="ann")
        report = reinstate_device(store, " a1 ", "released the wrong laptop", now=NOW, actor="bo")
        device = store.device("A1")
        assert device is not None
        history = store.history(device.id)
    assert report.succeeded == 1
    assert device.status == "return_confirmed"
    assert device.outcome == "bought_out"
    last = history[-1]
    assert (last.action, last.actor, last.from_status, last.to_status) == (
        "reinstate",
        "bo",
        "removed",
        "return_confirmed",
    )
    assert last.details == {"reason": "released the wrong laptop"}


def test_reinstate_refuses_a_device_that_was_never_released(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        add_device(store, "A1", status="renewal_started")
        report = reinstate_device(store, "A1", "oops", now=NOW, actor="ann")
        device = store.device("A1")
    assert report.failed == 1
    assert device is not None and device.status == "renewal_started"
    error = report.results[0].error or ""
    assert "A1 is renewal_started" in error
    assert "reinstate needs removed" in error


def test_reinstate_needs_a_reason(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        add_device(store, "A1", status="removed")
        with pytest.raises(UsageError, match="reason"):
            reinstate_device(store, "A1", "  ", now=NOW, actor="ann")


def test_reinstate_command(invoke: Invoke, home: Path) -> None:
    with Store.open(home / "velory.db") as store:
        add_device(store, "A1", status="removed", user_email="asa@nordlys.se")
    assert json_out(invoke(["hardware", "asa@nordlys.se", "--json"])) == []
    result = invoke(["reinstate", "A1", "--reason", "wrong serial in the file", "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert json_out(result)["results"][0]["status"] == "return_confirmed"
    hardware = json_out(invoke(["hardware", "asa@nordlys.se", "--json"]))
    assert [d["serial"] for d in hardware] == ["A1"]
    again = invoke(["reinstate", "A1", "--reason", "twice", "--json"])
    assert again.exit_code == 0
    assert json_out(again)["unchanged"] == 1
    missing = invoke(["reinstate", "A1"])
    assert missing.exit_code == 2


def test_reinstate_prints_a_result_table(invoke: Invoke, home: Path) -> None:
    with Store.open(home / "velory.db") as store:
        add_device(store, "A1", status="removed", outcome="bought_out")
        add_device(store, "B1", status="renewal_started")
    result = invoke(["reinstate", "a1", "--reason", "wrong laptop"])
    assert result.exit_code == 0, result.output
    assert "A1" in result.stdout
    assert "reinstated" in result.stdout
    assert "Bought out" in result.stdout
    assert result.stderr == "1 reinstated, 0 unchanged, 0 refused.\n"

    again = invoke(["reinstate", "A1", "--reason", "twice"])
    assert again.exit_code == 0, again.output
    assert "unchanged" in again.stdout
    assert again.stderr == "0 reinstated, 1 unchanged, 0 refused.\n"

    refused = invoke(["reinstate", "B1", "--reason", "oops"])
    assert refused.exit_code == 1
    assert "refused" in refused.stdout
    assert "Active – pending return" in refused.stdout
    assert refused.stderr.splitlines() == [
        "error: B1 is renewal_started: reinstate needs removed; "
        "only a released or retired device can be reinstated",
        "0 reinstated, 0 unchanged, 1 refused.",
    ]
