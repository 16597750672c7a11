"""velory edit: the register stays right without a re-import, with the import's checks; a device
handed to another user gets its renewal notice to the new user, once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Invoke, Run, json_out
from tests.factory import add_device
from tests.smtp_server import SmtpServer
from velory_cli.errors import UsageError
from velory_cli.lifecycle import ActionReport, edit_device
from velory_cli.store import Store

NOW = "2026-11-05T10:00:00Z"
AS_OF = ["--as-of", "2026-11-05"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


def edit(store: Store, serial: str, note: str | None = None, **fields: str) -> ActionReport:
    return edit_device(store, serial, fields, note=note, now=NOW, actor="ann")


# ---- the domain ------------------------------------------------------------------------------


def test_edit_changes_the_given_fields_and_records_old_and_new(store: Store) -> None:
    add_device(store, "A1", user_email="asa@nordlys.se", user_name="Åsa Ek")
    report = edit(
        store,
        " a1 ",
        user_email=" bo.ek@nordlys.se ",
        user_name="Bo Ek",
        model="MacBook Air 13",
        renewal_date="31.12.2026",
    )
    assert (report.succeeded, report.unchanged, report.failed) == (1, 0, 0)
    changes = {
        "user_email": {"old": "asa@nordlys.se", "new": "bo.ek@nordlys.se"},
        "user_name": {"old": "Åsa Ek", "new": "Bo Ek"},
        "model": {"old": "ThinkPad T14", "new": "MacBook Air 13"},
        "renewal_date": {"old": "2026-12-01", "new": "2026-12-31"},
    }
    assert report.to_dict()["changes"] == changes
    device = store.device("A1")
    assert device is not None
    assert (device.user_email, device.user_name, device.model, device.renewal_date) == (
        "bo.ek@nordlys.se",
        "Bo Ek",
        "MacBook Air 13",
        "2026-12-31",
    )
    assert (device.category, device.distributor, device.status) == ("Laptop", "Atea", "active")
    entry = store.history(device.id)[-1]
    assert (entry.action, entry.actor, entry.from_status, entry.to_status) == (
        "edit",
        "ann",
        "active",
        "active",
    )
    assert entry.details == changes


def test_the_values_it_has_already_are_unchanged(store: Store) -> None:
    add_device(store, "A1", user_email="asa@nordlys.se")
    device = store.device("A1")
    assert device is not None
    history = store.history(device.id)
    report = edit(store, "A1", user_email="ASA@nordlys.se", model="ThinkPad T14")
    assert (report.succeeded, report.unchanged) == (0, 1)
    assert report.to_dict()["changes"] == {}
    assert store.history(device.id) == history
    assert store.device("A1") == device


def test_an_empty_email_and_name_make_a_spare_device(store: Store) -> None:
    add_device(store, "A1")
    report = edit(store, "A1", note="Spare, in the IT room", user_email="", user_name=" ")
    assert report.succeeded == 1
    device = store.device("A1")
    assert device is not None
    assert (device.user_email, device.user_name) == (None, None)
    assert [note.text for note in store.notes(device.id)] == ["Spare, in the IT room"]
    assert [entry.action for entry in store.history(device.id)][-2:] == ["edit", "note"]
    again = edit(store, "A1", note="Spare, in the IT room", user_email="")
    assert again.unchanged == 1  # the note is its latest already: a script run again


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user_email": "bo at nordlys"}, "--email: 'bo at nordlys' is not an email address"),
        ({"renewal_date": "2026-02-30"}, "--renewal-date: "),
        ({"renewal_date": "2020-01-01"}, "before the purchase date 2023-12-01"),
        ({"purchase_date": "2027-01-01"}, "the renewal date 2026-12-01 is before the purchase"),
        ({"renewal_date": "03/04/2027"}, "ambiguous.*write it as YYYY-MM-DD"),
        ({"model": "Air\x1b[2J"}, "--model: holds a control character"),
        ({"user_name": "Bo\u202eEk"}, "--user-name: holds an invisible format character"),
        ({"distributor": ""}, "--distributor is empty"),
        ({}, "nothing to change"),
    ],
)
def test_a_bad_value_changes_nothing(store: Store, fields: dict[str, str], message: str) -> None:
    add_device(store, "A1")
    before = store.device("A1")
    with pytest.raises(UsageError, match=message):
        edit(store, "A1", **fields)
    assert store.device("A1") == before


def test_a_bad_note_changes_nothing(store: Store) -> None:
    add_device(store, "A1")
    with pytest.raises(UsageError, match="--note: holds a control character"):
        edit(store, "A1", note="bad\x07", model="X")
    assert store.device("A1").model == "ThinkPad T14"  # type: ignore[union-attr]


def test_a_removed_device_is_refused_and_an_unknown_serial_too(store: Store) -> None:
    add_device(store, "R1", status="removed", outcome="lost")
    report = edit(store, "R1", model="X")
    assert report.failed == 1
    assert report.results[0].error == (
        "R1 is removed: edit needs active or renewal_started or return_confirmed; "
        "run velory reinstate first"
    )
    assert store.device("R1").model == "ThinkPad T14"  # type: ignore[union-attr]
    assert edit(store, "ZZ9", model="X").results[0].error == "ZZ9: no such device"


def test_a_device_without_a_renewal_date_gets_the_one_an_import_would_give(
    store: Store,
) -> None:
    add_device(store, "A1", purchase_date=None, renewal_date=None)
    report = edit(store, "A1", purchase_date="2024-02-29")
    assert report.to_dict()["changes"] == {
        "purchase_date": {"old": None, "new": "2024-02-29"},
        "renewal_date": {"old": None, "new": "2027-02-28"},
    }


# ---- the command -----------------------------------------------------------------------------


def test_edit_command_json_table_and_exit_codes(invoke: Invoke, home: Path) -> None:
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "A1")
        add_device(opened, "R1", status="removed")
    result = invoke(["edit", "A1", "--email", "bo@nordlys.se", "--json"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    data = json_out(result)
    assert (data["succeeded"], data["unchanged"], data["failed"]) == (1, 0, 0)
    assert data["results"][0]["status"] == "active"
    assert data["changes"] == {"user_email": {"old": "a1@example.com", "new": "bo@nordlys.se"}}
    again = invoke(["edit", "a1", "--email", "BO@nordlys.se"])
    assert again.exit_code == 0, again.output
    assert again.stdout == "A1: unchanged (Active)\n"
    bad = invoke(["edit", "A1", "--renewal-date", "tomorrow", "--json"])
    assert bad.exit_code == 2
    assert bad.stdout == ""
    assert bad.stderr.startswith("error: --renewal-date: ")
    assert len(bad.stderr.splitlines()) == 1
    refused = invoke(["edit", "R1", "--model", "X"])
    assert refused.exit_code == 1
    assert "reinstate" in refused.stderr
    shown = json_out(invoke(["show", "A1", "--json"]))
    assert shown["user_email"] == "bo@nordlys.se"
    assert shown["history"][-1]["action"] == "edit"


# ---- a device that changes hands gets its notice to the new user -----------------------------


def sent_to(server: SmtpServer) -> list[tuple[str, ...]]:
    return [message.rcpt_tos for message in server.messages()]


@pytest.mark.subprocess
def test_a_device_handed_on_after_its_notice_went_out_mails_the_new_user_once(
    run: Run, home: Path, smtp_server: SmtpServer
) -> None:
    with Store.open(home / "velory.db") as opened:
        add_device(opened, "PF1", user_email="asa@nordlys.se", renewal_date="2026-11-30")
        add_device(opened, "PF2", user_email="carl@nordlys.se", renewal_date="2026-11-30")
    first = run(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert first.returncode == 0, first.stderr
    assert sorted(sent_to(smtp_server)) == [("asa@nordlys.se",), ("carl@nordlys.se",)]

    handed = run(["edit", "PF1", "--email", "bo.ek@nordlys.se", "--user-name", "Bo Ek"])
    assert handed.returncode == 0, handed.stderr
    second = run(["notices", "send", *AS_OF, "--json"], extra_env=smtp_server.env)
    assert second.returncode == 0, second.stderr
    assert json_out(second)["sent"] == 1
    assert sent_to(smtp_server)[2:] == [("bo.ek@nordlys.se",)]
    assert "PF1" in smtp_server.messages()[2].text()

    again = run(["notices", "send", *AS_OF, "--json"], extra_env=smtp_server.env)
    assert json_out(again)["sent"] == 0
    # Back to the first user, who had the notice already: nothing new.
    back = run(["edit", "PF1", "--email", "Asa@nordlys.se"])
    assert back.returncode == 0, back.stderr
    after = run(["notices", "send", *AS_OF, "--json"], extra_env=smtp_server.env)
    assert after.returncode == 0, after.stderr
    assert json_out(after)["sent"] == 0
    assert len(smtp_server.messages()) == 3
    ledger = json_out(run(["notices", "list", "--json"]))
    pf1 = sorted((n["recipient"], n["status"]) for n in ledger if n["serial"] == "PF1")
    assert pf1 == [("asa@nordlys.se", "sent"), ("bo.ek@nordlys.se", "sent")]


def test_an_edited_renewal_date_cancels_the_pending_notice_and_makes_a_new_one_due(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    with Store.open(home / "velory.db") as opened:
        device_id = add_device(opened, "PF1", renewal_date="2026-11-30")
        with opened.transaction():
            opened.queue_notice(
                device_id,
                kind="renewal",
                renewal_date="2026-11-30",
                recipient="pf1@example.com",
                at=NOW,
            )
    edited = invoke(["edit", "PF1", "--renewal-date", "2026-12-01"])
    assert edited.exit_code == 0, edited.output
    outbox = tmp_path / "outbox"
    sent = invoke(["notices", "send", *AS_OF, "--outbox", str(outbox), "--json"])
    assert sent.exit_code == 0, sent.output
    data = json_out(sent)
    assert (data["sent"], data["cancelled"]) == (1, 1)
    ledger = json_out(invoke(["notices", "list", "--json"]))
    assert sorted((n["renewal_date"], n["status"]) for n in ledger) == [
        ("2026-11-30", "cancelled"),
        ("2026-12-01", "sent"),
    ]
