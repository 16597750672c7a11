"""Which notices are due, the ledger that sends each at most once, and the mails themselves."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from email import policy
from email.parser import BytesParser, Parser
from pathlib import Path
from typing import Any

import pytest

from tests.factory import add_device
from velory_cli.errors import ConfigError, ExitCode, UsageError
from velory_cli.mailer import Outgoing, PermanentDelivery, TemporaryDelivery
from velory_cli.mails import MailComposer, MailStyle, check_language, check_portal_url
from velory_cli.models import Notice
from velory_cli.notices import (
    NoticeRules,
    SendReport,
    check_kind,
    check_status,
    list_notices,
    message_id_for,
    parse_reminder_days,
    send_notices,
)
from velory_cli.store import Store

AS_OF = date(2026, 11, 1)
NOW = "2026-11-01T07:00:00Z"
OWNER = "test-host:1"
STYLE = MailStyle(sender="IT Support <it@example.com>", company_name="Example AB")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


@dataclass
class FakeTransport:
    """Records what it is given; fails for the recipients a test names."""

    refuse: set[str] = field(default_factory=set)
    defer: set[str] = field(default_factory=set)
    open_error: Exception | None = None
    send_error: Exception | None = None
    sent: list[Outgoing] = field(default_factory=list)
    opened: int = 0
    closed: int = 0

    def open(self) -> None:
        self.opened += 1
        if self.open_error is not None:
            raise self.open_error

    def send(self, mail: Outgoing) -> None:
        if self.send_error is not None:
            raise self.send_error
        if mail.recipient in self.refuse:
            raise PermanentDelivery("the mail server refused it: 550 5.1.1 User unknown")
        if mail.recipient in self.defer:
            raise TemporaryDelivery("the mail server answered 451 4.3.0 try again later")
        self.sent.append(mail)

    def close(self) -> None:
        self.closed += 1

    def recipients(self) -> list[str]:
        return [mail.recipient for mail in self.sent]

    def text(self, index: int = 0) -> str:
        return _plain(self.sent[index])

    def html(self, index: int = 0) -> str:
        return _part(self.sent[index], "html")


def _part(mail: Outgoing, subtype: str) -> str:
    parsed = BytesParser(policy=policy.default).parsebytes(mail.message.as_bytes())
    part = parsed.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())


def _plain(mail: Outgoing) -> str:
    return _part(mail, "plain")


def send(
    store: Store,
    transport: FakeTransport | None,
    *,
    as_of: date = AS_OF,
    style: MailStyle = STYLE,
    live: Callable[[str | None], bool] = lambda claimed_by: False,
    now: str = NOW,
    **rules: Any,
) -> SendReport:
    return send_notices(
        store,
        NoticeRules(as_of=as_of, **rules),
        style,
        transport=transport,
        clock=lambda: now,
        owner=OWNER,
        claim_is_live=live,
    )


def ledger(store: Store) -> dict[tuple[str, str], Notice]:
    return {(n.serial, n.kind): n for n in list_notices(store)}


def statuses(report: SendReport) -> dict[str, str]:
    return {f"{o.serial}/{o.kind}": o.status for o in report.outcomes}


def queue_personal_data(store: Store, device_id: int, recipient: str | None) -> None:
    """A personal-data reminder as `velory deliver` queues it."""
    with store.transaction():
        store.conn.execute(
            "INSERT INTO notices (device_id, kind, renewal_date, recipient, status, created_at,"
            " updated_at) VALUES (?, 'personal_data', '2026-12-01', ?, 'pending', ?, ?)",
            (device_id, recipient, NOW, NOW),
        )


def update_device(store: Store, serial: str, **values: Any) -> None:
    device = store.device(serial)
    assert device is not None
    with store.transaction():
        store.update_device(device.id, values)


# ---- which devices are due ---------------------------------------------------------------


def test_exactly_the_due_devices_get_one_notice_each(store: Store) -> None:
    add_device(store, "DUE30", renewal_date="2026-12-01")  # as-of + 30 days: due today
    add_device(store, "LATER", renewal_date="2026-12-02")  # one day too early
    add_device(store, "OVERDUE", renewal_date="2026-10-01")
    add_device(store, "DUSTIN", renewal_date="2026-11-10", distributor="Dustin Sverige AB")
    add_device(store, "STARTED", renewal_date="2026-11-10", status="renewal_started")
    add_device(store, "CONFIRMED", renewal_date="2026-11-10", status="return_confirmed")
    add_device(store, "REMOVED", renewal_date="2026-11-10", status="removed")
    add_device(store, "STORE", renewal_date="2026-11-10", source="store", distributor="Velory")
    add_device(store, "NODATE", renewal_date=None)
    transport = FakeTransport()

    report = send(store, transport)

    assert sorted(transport.recipients()) == ["due30@example.com", "overdue@example.com"]
    assert report.to_dict()["sent"] == 2
    assert report.exit_code == 0
    assert {key: n.status for key, n in ledger(store).items()} == {
        ("DUE30", "renewal"): "sent",
        ("OVERDUE", "renewal"): "sent",
    }


def test_a_device_without_email_is_skipped_with_a_warning_naming_it(store: Store) -> None:
    add_device(store, "NOMAIL", renewal_date="2026-11-15", user_email=None)
    add_device(store, "BLANK", renewal_date="2026-11-15", user_email="  ")
    transport = FakeTransport()

    report = send(store, transport)

    assert transport.sent == []
    assert report.to_dict()["skipped"] == 2
    assert any("NOMAIL" in w and "no user email" in w for w in report.warnings)
    assert any("BLANK" in w for w in report.warnings)
    assert report.exit_code == 0
    assert ledger(store) == {}


def test_the_same_day_again_sends_nothing_and_the_next_day_only_what_became_due(
    store: Store,
) -> None:
    add_device(store, "A", renewal_date="2026-12-01")
    add_device(store, "B", renewal_date="2026-12-02")
    first, second, third = FakeTransport(), FakeTransport(), FakeTransport()

    send(store, first)
    again = send(store, second)
    next_day = send(store, third, as_of=date(2026, 11, 2))

    assert first.recipients() == ["a@example.com"]
    assert second.sent == [] and second.opened == 0
    assert again.to_dict()["sent"] == 0
    assert third.recipients() == ["b@example.com"]
    assert next_day.to_dict()["sent"] == 1


def test_lead_days_moves_the_horizon(store: Store) -> None:
    add_device(store, "SOON", renewal_date="2026-11-08")
    add_device(store, "MONTH", renewal_date="2026-11-30")
    transport = FakeTransport()

    send(store, transport, lead_days=7)

    assert transport.recipients() == ["soon@example.com"]


def test_a_new_renewal_date_makes_a_new_notice(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    send(store, FakeTransport())
    update_device(store, "A", renewal_date="2027-11-20")
    transport = FakeTransport()

    send(store, transport, as_of=date(2027, 11, 1))

    assert transport.recipients() == ["a@example.com"]
    rows = [n for n in list_notices(store) if n.serial == "A"]
    assert [(n.renewal_date, n.status) for n in rows] == [
        ("2026-11-20", "sent"),
        ("2027-11-20", "sent"),
    ]


# ---- cancelled, turned off, re-addressed -------------------------------------------------


def _leave_pending(store: Store, serial: str) -> None:
    """A notice that could not go out (the server deferred it): pending for the next run."""
    send(store, FakeTransport(defer={f"{serial.lower()}@example.com"}))
    assert ledger(store)[(serial, "renewal")].status == "pending"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "renewal_started"}, "started"),
        ({"status": "removed"}, "removed"),
        ({"renewal_date": "2027-11-20"}, "renewal date changed to 2027-11-20"),
        ({"distributor": "DUSTIN AB"}, "Dustin"),
    ],
)
def test_a_pending_notice_whose_device_changed_is_cancelled(
    store: Store, change: dict[str, Any], reason: str
) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    _leave_pending(store, "A")
    update_device(store, "A", **change)
    transport = FakeTransport()

    report = send(store, transport)

    assert transport.sent == []
    notice = ledger(store)[("A", "renewal")]
    assert notice.status == "cancelled"
    assert reason in (notice.error or "")
    assert report.to_dict()["cancelled"] == 1
    assert report.exit_code == 0


def test_a_cancelled_notice_goes_out_when_its_device_is_due_again_for_that_date(
    store: Store,
) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    _leave_pending(store, "A")
    update_device(store, "A", renewal_date="2027-11-20")  # an import with a wrong date
    send(store, FakeTransport())
    assert ledger(store)[("A", "renewal")].status == "cancelled"
    update_device(store, "A", renewal_date="2026-11-20")  # corrected by the next import

    dry = send(store, None)
    transport = FakeTransport()
    report = send(store, transport)

    assert statuses(dry) == {"A/renewal": "pending"}
    assert transport.recipients() == ["a@example.com"]
    assert statuses(report) == {"A/renewal": "sent"}
    assert [n.status for n in list_notices(store)] == ["sent"]


def test_renewal_notices_turned_off_queue_nothing_but_personal_data_still_goes(
    store: Store,
) -> None:
    add_device(store, "DUE", renewal_date="2026-11-20")
    old = add_device(store, "OLD", renewal_date="2026-11-20", status="renewal_started")
    queue_personal_data(store, old, "old@example.com")
    transport = FakeTransport()

    report = send(store, transport, renewal_notices=False)

    assert transport.recipients() == ["old@example.com"]
    assert [(n.serial, n.kind) for n in list_notices(store)] == [("OLD", "personal_data")]
    assert report.to_dict()["sent"] == 1


def test_a_pending_notice_is_kept_but_not_sent_while_notices_are_off(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    _leave_pending(store, "A")
    transport = FakeTransport()

    send(store, transport, renewal_notices=False)
    assert transport.sent == []
    assert ledger(store)[("A", "renewal")].status == "pending"

    send(store, transport)
    assert transport.recipients() == ["a@example.com"]


def test_a_pending_notice_follows_the_devices_new_email(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    _leave_pending(store, "A")
    update_device(store, "A", user_email="new.owner@example.com")
    transport = FakeTransport()

    send(store, transport)

    assert transport.recipients() == ["new.owner@example.com"]
    assert ledger(store)[("A", "renewal")].recipient == "new.owner@example.com"


def test_a_failed_notice_is_retried_once_the_device_has_another_email(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20", user_email="typo@example.con")
    refused = send(store, FakeTransport(refuse={"typo@example.con"}))
    assert refused.exit_code == ExitCode.REFUSED
    assert ledger(store)[("A", "renewal")].status == "failed"

    unchanged = FakeTransport()
    send(store, unchanged)
    assert unchanged.sent == []  # refused for good: not tried again for the same address

    update_device(store, "A", user_email="anna@example.com")
    transport = FakeTransport()
    send(store, transport)
    assert transport.recipients() == ["anna@example.com"]
    assert ledger(store)[("A", "renewal")].status == "sent"


# ---- reminders ---------------------------------------------------------------------------


def test_reminders_go_once_each_before_the_renewal_date(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-12-01")
    sent: list[tuple[str, str]] = []
    for day in range(1, 32):  # 1 November to 2 December: every daily cron run
        transport = FakeTransport()
        send(
            store,
            transport,
            as_of=date(2026, 11, day) if day <= 30 else date(2026, 12, day - 30),
            reminder_days=(7, 1),
        )
        sent.extend((str(mail.message["Subject"]), f"day {day}") for mail in transport.sent)

    kinds = [(n.kind, n.status) for n in list_notices(store)]
    assert kinds == [("renewal", "sent"), ("reminder_7", "sent"), ("reminder_1", "sent")]
    assert [when for _, when in sent] == ["day 1", "day 24", "day 30"]
    assert sent[1][0].startswith("Reminder:")


def test_no_reminder_once_the_process_is_started(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-12-01")
    send(store, FakeTransport(), reminder_days=(7,))
    update_device(store, "A", status="renewal_started")
    transport = FakeTransport()

    send(store, transport, as_of=date(2026, 11, 24), reminder_days=(7,))

    assert transport.sent == []


def test_a_notice_sent_late_is_not_followed_by_the_reminder_it_overlaps(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-04")  # imported three days before renewal
    first = FakeTransport()
    send(store, first, reminder_days=(7, 1), now="2026-11-01T07:00:00Z")
    second = FakeTransport()
    send(store, second, as_of=date(2026, 11, 2), reminder_days=(7, 1))
    third = FakeTransport()
    send(store, third, as_of=date(2026, 11, 3), reminder_days=(7, 1))

    assert len(first.sent) == 1
    assert second.sent == []
    assert [str(m.message["Subject"]).split(":")[0] for m in third.sent] == ["Reminder"]


def test_reminders_are_off_by_default(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-12-01")
    send(store, FakeTransport())
    transport = FakeTransport()

    send(store, transport, as_of=date(2026, 11, 30))

    assert transport.sent == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, ()), ("", ()), ([7, 1], (7, 1)), ("1, 7", (7, 1)), ("14 7 7", (14, 7))],
)
def test_reminder_days_are_read_from_a_list_or_text(raw: Any, expected: tuple[int, ...]) -> None:
    assert parse_reminder_days(raw) == expected


@pytest.mark.parametrize("raw", [[0], ["soon"], [True], "-1", [400]])
def test_bad_reminder_days_are_a_configuration_error(raw: Any) -> None:
    with pytest.raises(ConfigError, match="reminder_days"):
        parse_reminder_days(raw)


# ---- personal-data reminders and one mail per user --------------------------------------


def test_a_personal_data_reminder_names_both_devices_and_what_to_do(store: Store) -> None:
    old = add_device(
        store,
        "OLD1",
        model="MacBook Pro 14",
        status="renewal_started",
        replacement_serial="NEW1",
        user_email="anna@example.com",
        user_name="Anna Berg",
    )
    add_device(
        store,
        "NEW1",
        model="MacBook Air 13",
        source="store",
        distributor="Velory",
        replaces_serial="OLD1",
        user_email="anna@example.com",
        renewal_date="2029-11-01",
    )
    queue_personal_data(store, old, "anna@example.com")
    transport = FakeTransport()

    report = send(store, transport)

    assert transport.recipients() == ["anna@example.com"]
    text = transport.text()
    assert "MacBook Pro 14, serial number OLD1" in text
    assert "MacBook Air 13, serial number NEW1" in text
    assert "Move what you want to keep" in text.replace("First move", "Move")
    assert "delete your personal information from the old device" in text
    assert "IT then confirms the return of the old device" in text
    assert statuses(report) == {"OLD1/personal_data": "sent"}
    assert ledger(store)[("OLD1", "personal_data")].sent_at == NOW


def test_a_personal_data_reminder_without_recipient_is_skipped(store: Store) -> None:
    old = add_device(store, "OLD1", status="renewal_started")
    queue_personal_data(store, old, None)
    transport = FakeTransport()

    report = send(store, transport)

    assert transport.sent == []
    assert report.to_dict()["skipped"] == 1
    assert ledger(store)[("OLD1", "personal_data")].status == "pending"


def test_several_due_devices_of_one_user_go_in_one_mail(store: Store) -> None:
    add_device(store, "LAPTOP", renewal_date="2026-11-20", user_email="anna@example.com")
    add_device(
        store, "PHONE", model="iPhone 13", renewal_date="2026-10-20", user_email="Anna@Example.com"
    )
    transport = FakeTransport()

    report = send(store, transport)

    assert len(transport.sent) == 1
    text = transport.text()
    assert "LAPTOP" in text and "PHONE" in text
    assert "overdue by 12 days" in text and "in 19 days" in text
    assert str(transport.sent[0].message["Subject"]).endswith("your devices is overdue")
    counts = report.to_dict()
    assert counts["sent"] == 2 and counts["mails"] == 1
    sent = ledger(store)
    assert sent[("LAPTOP", "renewal")].message_id == sent[("PHONE", "renewal")].message_id


# ---- at most once, nothing lost ----------------------------------------------------------


def test_a_claim_is_taken_by_one_run_only(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    send(store, FakeTransport(defer={"a@example.com"}))
    notice = ledger(store)[("A", "renewal")]

    with store.transaction():
        first = store.claim_notices([notice.id], owner="h:1", at=NOW, message_id="<m@x>")
    with store.transaction():
        second = store.claim_notices([notice.id], owner="h:2", at=NOW, message_id="<m@x>")

    assert first == [notice.id]
    assert second == []


def test_a_server_that_defers_leaves_the_notice_pending_and_the_next_run_sends_it(
    store: Store,
) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    add_device(store, "B", renewal_date="2026-11-20")

    deferred = send(store, FakeTransport(defer={"a@example.com"}))

    assert deferred.exit_code == ExitCode.TEMPORARY
    assert statuses(deferred) == {"A/renewal": "pending", "B/renewal": "sent"}
    notice = ledger(store)[("A", "renewal")]
    assert notice.attempts == 1
    assert "451" in (notice.error or "")
    assert any(
        "A: the renewal notice to a@example.com stays pending" in w for w in deferred.warnings
    )

    transport = FakeTransport()
    later = send(store, transport)
    assert transport.recipients() == ["a@example.com"]
    assert later.exit_code == 0
    again = ledger(store)[("A", "renewal")]
    assert (again.status, again.attempts, again.error) == ("sent", 2, None)
    assert again.message_id == notice.message_id


def test_an_unreachable_server_claims_nothing_and_exits_75(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    add_device(store, "B", renewal_date="2026-11-20")
    transport = FakeTransport(
        open_error=TemporaryDelivery("cannot reach 127.0.0.1:1: refused", connection=True)
    )

    report = send(store, transport)

    assert report.exit_code == ExitCode.TEMPORARY
    assert report.to_dict()["pending"] == 2
    assert all(o.error and "cannot reach" in o.error for o in report.outcomes)
    assert [(n.status, n.attempts) for n in list_notices(store)] == [
        ("pending", 0),
        ("pending", 0),
    ]


def test_a_connection_lost_for_good_stops_the_run_and_keeps_the_rest_pending(store: Store) -> None:
    for serial in ("A", "B", "C"):
        add_device(store, serial, renewal_date="2026-11-20")
    transport = FakeTransport(
        send_error=TemporaryDelivery(
            "the mail server dropped the connection twice", connection=True
        )
    )

    report = send(store, transport)

    assert report.exit_code == ExitCode.TEMPORARY
    assert [n.attempts for n in list_notices(store)] == [1, 0, 0]
    assert {n.status for n in list_notices(store)} == {"pending"}
    assert report.errors == ["the mail server dropped the connection twice"]


def test_a_recipient_refused_for_good_fails_alone_and_exits_1(store: Store) -> None:
    for serial in ("A", "B", "C"):
        add_device(store, serial, renewal_date="2026-11-20")
    transport = FakeTransport(refuse={"b@example.com"})

    report = send(store, transport)

    assert transport.recipients() == ["a@example.com", "c@example.com"]
    assert report.exit_code == ExitCode.REFUSED
    failed = ledger(store)[("B", "renewal")]
    assert failed.status == "failed"
    assert "550 5.1.1 User unknown" in (failed.error or "")
    assert any("B:" in e and "550" in e for e in report.errors)


def test_the_highest_exit_code_wins(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    add_device(store, "B", renewal_date="2026-11-20")

    report = send(store, FakeTransport(refuse={"a@example.com"}, defer={"b@example.com"}))

    assert report.exit_code == ExitCode.TEMPORARY


def test_a_login_refused_mid_run_is_a_configuration_error_and_loses_nothing(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    add_device(store, "B", renewal_date="2026-11-20")
    transport = FakeTransport(send_error=ConfigError("the mail server refused the login"))

    report = send(store, transport)

    assert report.exit_code == ExitCode.CONFIG
    assert {n.status for n in list_notices(store)} == {"pending"}


def _abandon(store: Store, serial: str, *, claimed_by: str, claimed_at: str) -> Notice:
    """A notice a run claimed and never finished: it was killed while sending."""
    _leave_pending(store, serial)
    notice = ledger(store)[(serial, "renewal")]
    message_id = message_id_for(notice, "it@example.com")
    with store.transaction():
        store.claim_notices([notice.id], owner=claimed_by, at=claimed_at, message_id=message_id)
    return ledger(store)[(serial, "renewal")]


def test_a_claim_whose_process_is_gone_is_sent_again_with_the_same_message_id(
    store: Store,
) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    import socket

    claimed_by = f"{socket.gethostname()}:{dead.stdout.strip()}"
    abandoned = _abandon(store, "A", claimed_by=claimed_by, claimed_at=NOW)
    transport = FakeTransport()

    from velory_cli.notices import claim_is_live

    report = send(store, transport, live=claim_is_live)

    assert transport.recipients() == ["a@example.com"]
    assert transport.sent[0].message_id == abandoned.message_id
    assert str(transport.sent[0].message["Message-ID"]) == abandoned.message_id
    assert any("may get it twice" in w and abandoned.message_id in w for w in report.warnings)
    notice = ledger(store)[("A", "renewal")]
    assert (notice.status, notice.claimed_by) == ("sent", OWNER)


def test_a_claim_whose_process_still_runs_is_left_alone(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    _abandon(store, "A", claimed_by="other-host:42", claimed_at=NOW)
    transport = FakeTransport()

    report = send(store, transport, live=lambda claimed_by: True)

    assert transport.sent == []
    assert ledger(store)[("A", "renewal")].status == "sending"
    assert report.warnings == []


def test_a_claim_older_than_the_timeout_is_taken_over(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    _abandon(store, "A", claimed_by="other-host:42", claimed_at="2026-10-31T07:00:00Z")
    transport = FakeTransport()

    send(store, transport, live=lambda claimed_by: True)

    assert transport.recipients() == ["a@example.com"]


def test_an_abandoned_claim_whose_device_was_started_is_cancelled(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    _abandon(store, "A", claimed_by="other-host:42", claimed_at=NOW)
    update_device(store, "A", status="renewal_started")
    transport = FakeTransport()

    send(store, transport)

    assert transport.sent == []
    assert ledger(store)[("A", "renewal")].status == "cancelled"


def test_the_own_process_is_live_and_a_finished_one_is_not() -> None:
    import os
    import socket

    from velory_cli.notices import claim_is_live, claim_owner

    assert claim_owner() == f"{socket.gethostname()}:{os.getpid()}"
    assert claim_is_live(claim_owner())
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert not claim_is_live(f"{socket.gethostname()}:{finished.pid}")
    assert claim_is_live("another-host.example.com:1")
    assert not claim_is_live(None)


def test_message_ids_are_stable_and_name_the_notice() -> None:
    notice = Notice(
        id=12,
        device_id=3,
        serial="C02 X/1",
        kind="renewal",
        renewal_date="2026-12-01",
        recipient="a@example.com",
        status="pending",
        attempts=0,
        error=None,
        message_id=None,
        claimed_by=None,
        claimed_at=None,
        sent_at=None,
        created_at=NOW,
        updated_at=NOW,
    )
    first = message_id_for(notice, "IT <it@Example.com>")
    assert first == "<velory.12.c02-x-1.20261201@example.com>"
    assert message_id_for(notice, "it@example.com") == first
    assert message_id_for(notice, "nobody") == "<velory.12.c02-x-1.20261201@localhost>"


# ---- dry run -----------------------------------------------------------------------------


def test_a_dry_run_writes_nothing_and_shows_what_would_be_sent(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    add_device(store, "NOMAIL", renewal_date="2026-11-20", user_email=None)
    add_device(store, "LATER", renewal_date="2027-11-20")

    report = send(store, None)

    assert report.dry_run
    assert statuses(report) == {"A/renewal": "pending", "NOMAIL/renewal": "skipped"}
    assert ledger(store) == {}
    assert report.to_dict()["sent"] == 0


def test_a_dry_run_shows_cancellations_without_making_them(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    _leave_pending(store, "A")
    update_device(store, "A", status="renewal_started")

    report = send(store, None)

    assert statuses(report) == {"A/renewal": "cancelled"}
    assert ledger(store)[("A", "renewal")].status == "pending"


# ---- the mails ---------------------------------------------------------------------------


def _one_mail(store: Store, style: MailStyle = STYLE, **device: Any) -> FakeTransport:
    add_device(store, "C02XK1", **{"renewal_date": "2026-11-20", **device})
    transport = FakeTransport()
    report = send(store, transport, style=style)
    assert report.exit_code == 0, report.errors
    assert len(transport.sent) == 1
    return transport


def test_the_renewal_mail_says_what_the_article_says(store: Store) -> None:
    style = MailStyle(
        sender="it@example.com",
        company_name="Example AB",
        portal_url="https://velory.example.com/hardware",
    )
    transport = _one_mail(store, style, model="MacBook Pro 14", user_name="Anna Berg")
    text = transport.text()
    subject = str(transport.sent[0].message["Subject"])

    assert subject == "Action required: Your device is up for renewal"
    assert text.startswith("Hi Anna Berg,")
    assert "MacBook Pro 14, serial number C02XK1" in text
    assert "Renewal date: 20 November 2026 (in 19 days)" in text
    assert "action is required" in text
    assert "The only step needed in Velory is to start the process." in text
    assert 'Open https://velory.example.com/hardware and click "Start the process"' in text
    assert "Atea will contact you by email" in text  # the device's distributor
    assert "return it or buy it out" in text
    assert "the Velory store opens and you can request a new device" in text
    assert "delete your personal information" in text
    assert text.rstrip().endswith("Example AB IT")
    html = transport.html()
    assert '<a href="https://velory.example.com/hardware">' in html
    assert "<strong>Start the process</strong>" in html


def test_without_a_portal_url_the_mail_says_where_to_click(store: Store) -> None:
    transport = _one_mail(store)
    text = transport.text()
    assert 'Sign in to Velory, open the device and click "Start the process".' in text
    assert "<a href" not in transport.html()


def test_an_overdue_device_is_called_overdue(store: Store) -> None:
    transport = _one_mail(store, renewal_date="2026-10-30")
    assert "(overdue by 2 days)" in transport.text()
    assert "overdue" in str(transport.sent[0].message["Subject"])


def test_the_swedish_mail(store: Store) -> None:
    style = MailStyle(sender="it@example.com", company_name="Exempel AB", language="sv")
    transport = _one_mail(store, style, renewal_date="2026-11-02", user_name="Åsa Öberg")
    message = transport.sent[0].message
    text = transport.text()

    assert str(message["Subject"]) == "Åtgärd krävs: Din enhet ska förnyas"
    assert text.startswith("Hej Åsa Öberg!")
    assert "Förnyelsedatum: 2 november 2026 (i morgon)" in text
    assert "Det enda steget i Velory är att starta processen." in text
    assert "lämna tillbaka den eller köpa loss den" in text
    assert text.rstrip().endswith("IT på Exempel AB")
    assert str(message["Content-Language"]) == "sv"


def test_data_in_the_html_part_is_escaped(store: Store) -> None:
    transport = _one_mail(store, model="<script>alert(1)</script>", user_name="Bo & <b>Co</b>")
    html = transport.html()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Bo &amp; &lt;b&gt;Co&lt;/b&gt;" in html
    assert "<script>alert(1)</script>" in transport.text()


def test_a_user_name_can_never_add_a_header_or_a_recipient(store: Store) -> None:
    transport = _one_mail(
        store,
        user_name="Eve\r\nBcc: spy@evil.example\r\nX-Injected: yes",
        user_email="eve@example.com",
    )
    mail = transport.sent[0]
    raw = mail.message.as_bytes()
    parsed = BytesParser(policy=policy.default).parsebytes(raw)

    assert mail.recipient == "eve@example.com"
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert [a.addr_spec for a in parsed["To"].addresses] == ["eve@example.com"]
    assert b"\r\nBcc:" not in raw and b"\nBcc:" not in raw


def test_an_address_with_a_line_break_fails_and_is_never_sent(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20", user_email="a@example.com\r\nBcc: b@x.y")
    add_device(store, "B", renewal_date="2026-11-20")
    transport = FakeTransport()

    report = send(store, transport)

    assert transport.recipients() == ["b@example.com"]
    assert ledger(store)[("A", "renewal")].status == "failed"
    assert report.exit_code == ExitCode.REFUSED


def test_the_headers_of_a_mail(store: Store) -> None:
    transport = _one_mail(store, user_name="Anna Berg", user_email="anna@example.com")
    message = transport.sent[0].message
    notice = ledger(store)[("C02XK1", "renewal")]

    assert str(message["From"]) == "IT Support <it@example.com>"
    assert str(message["To"]) == "Anna Berg <anna@example.com>"
    assert str(message["Message-ID"]) == notice.message_id
    assert str(message["Auto-Submitted"]) == "auto-generated"
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/alternative"


def test_a_company_template_replaces_the_built_in_one(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "renewal.en.txt").write_text(
        "Subject: $company: time to renew\n\nHello $name:\n$devices\n$start_step\n",
        encoding="utf-8",
    )
    style = MailStyle(sender="it@example.com", company_name="Acme", templates_dir=folder)
    transport = _one_mail(store, style, user_name="Anna")

    assert str(transport.sent[0].message["Subject"]) == "Acme: time to renew"
    assert transport.text().startswith("Hello Anna:\n  - ThinkPad T14, serial number C02XK1")
    # Without its .html sibling the company's text is the whole mail: no built-in HTML part.
    message = transport.sent[0].message
    assert message.get_content_type() == "text/plain"
    assert message.get_body(preferencelist=("html",)) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Subject: x\n\n$unknown_field\n", "uses $unknown_field"),
        ("Subject: costs 5$\n\nbody\n", "write $$ for a dollar sign"),
        ("No subject line\n\nbody\n", "must start with a line 'Subject: ...'"),
    ],
)
def test_a_broken_template_fails_before_anything_is_claimed(
    store: Store, tmp_path: Path, text: str, message: str
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "reminder.en.txt").write_text(text, encoding="utf-8")
    add_device(store, "A", renewal_date="2026-11-20")
    style = MailStyle(sender="it@example.com", templates_dir=folder)

    with pytest.raises(ConfigError, match=message.replace("$", r"\$").replace("(", r"\(")):
        send(store, FakeTransport(), style=style)

    assert ledger(store) == {}


def test_every_built_in_template_fills_in() -> None:
    for language in ("en", "sv"):
        MailComposer(MailStyle(sender="it@example.com", language=language)).check()


@pytest.mark.parametrize("raw", ["de", "english"])
def test_an_unknown_language_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="language must be one of en, sv"):
        check_language(raw)


def test_the_language_defaults_to_english_and_ignores_case() -> None:
    assert check_language(None) == "en"
    assert check_language(" SV ") == "sv"


@pytest.mark.parametrize("raw", ["javascript:alert(1)", "velory.example.com", "https://a b"])
def test_a_portal_url_must_be_a_web_address(raw: str) -> None:
    with pytest.raises(ConfigError, match="portal_url"):
        check_portal_url(raw)


# ---- the ledger listing -------------------------------------------------------------------


def test_the_ledger_lists_every_notice_with_its_state(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    add_device(store, "B", renewal_date="2026-11-20")
    send(store, FakeTransport(refuse={"b@example.com"}))

    rows = [n.to_dict() for n in list_notices(store)]

    assert list(rows[0]) == [
        "serial",
        "kind",
        "recipient",
        "renewal_date",
        "status",
        "attempts",
        "sent_at",
        "error",
        "message_id",
    ]
    assert [(r["serial"], r["status"]) for r in rows] == [("A", "sent"), ("B", "failed")]
    assert [n.serial for n in list_notices(store, status="failed")] == ["B"]
    assert list_notices(store, kind="personal_data") == []


def test_unknown_filters_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown status"):
        check_status("done")
    with pytest.raises(UsageError, match="unknown kind"):
        check_kind("letter")
    assert check_kind("Reminder_7") == "reminder_7"


# ---- addresses beyond ASCII ------------------------------------------------------------------


@pytest.mark.parametrize("address", ["åsa@exempel.se", "bob@exämple.se", "Åsa.Ek@exämple.se"])
def test_an_address_beyond_ascii_is_composed_as_it_is(store: Store, address: str) -> None:
    transport = _one_mail(store, user_name="Åsa Ek", user_email=address)
    mail = transport.sent[0]
    assert mail.recipient == address
    raw = mail.message.as_bytes(policy=policy.SMTPUTF8)
    assert f"<{address}>".encode() in raw
    parsed = Parser(policy=policy.default).parsestr(raw.decode("utf-8"))
    assert [a.addr_spec for a in parsed["To"].addresses] == [address]
    assert parsed["To"].addresses[0].display_name == "Åsa Ek"


@pytest.mark.parametrize(
    "address",
    ["åsa@exempel.se\nBcc: x@y.z", "åsa@exempel.se, eve@evil.example", "<åsa@x.se>", "å sa@x.se"],
)
def test_an_address_beyond_ascii_still_cannot_add_a_recipient(store: Store, address: str) -> None:
    add_device(store, "A", renewal_date="2026-11-20", user_email=address)
    transport = FakeTransport()
    report = send(store, transport)
    assert transport.sent == []
    assert ledger(store)[("A", "renewal")].status == "failed"
    assert report.exit_code == ExitCode.REFUSED


# ---- a device that changes hands -------------------------------------------------------------


def rows_of(store: Store, serial: str) -> list[tuple[str | None, str]]:
    return [(n.recipient, n.status) for n in list_notices(store) if n.serial == serial]


def test_a_device_that_changes_hands_after_its_notice_went_out_notifies_the_new_user(
    store: Store,
) -> None:
    add_device(store, "A", renewal_date="2026-11-20", user_email="anna@example.com")
    send(store, FakeTransport())
    update_device(store, "A", user_email="bert@example.com", user_name="Bert")
    transport = FakeTransport()

    report = send(store, transport, as_of=date(2026, 11, 2))

    assert transport.recipients() == ["bert@example.com"]
    assert statuses(report) == {"A/renewal": "sent"}
    assert rows_of(store, "A") == [("anna@example.com", "sent"), ("bert@example.com", "sent")]
    again = FakeTransport()
    send(store, again, as_of=date(2026, 11, 3))
    assert again.sent == []  # once


def test_a_change_back_to_an_address_that_got_the_notice_sends_nothing_new(
    store: Store,
) -> None:
    add_device(store, "A", renewal_date="2026-11-20", user_email="anna@example.com")
    send(store, FakeTransport())
    update_device(store, "A", user_email="bert@example.com")
    send(store, FakeTransport(defer={"bert@example.com"}))  # Bert's waits for the next run
    assert rows_of(store, "A") == [("anna@example.com", "sent"), ("bert@example.com", "pending")]
    update_device(store, "A", user_email="Anna@Example.com")
    transport = FakeTransport()

    report = send(store, transport)

    assert transport.sent == []
    assert statuses(report) == {"A/renewal": "cancelled"}
    assert rows_of(store, "A") == [("anna@example.com", "sent"), ("bert@example.com", "cancelled")]
    # And to Bert again: his cancelled notice is due once more.
    update_device(store, "A", user_email="bert@example.com")
    again = FakeTransport()
    send(store, again)
    assert again.recipients() == ["bert@example.com"]


def test_an_email_that_differs_only_in_case_or_unicode_form_is_the_same_user(
    store: Store,
) -> None:
    add_device(store, "A", renewal_date="2026-11-20", user_email="A\u030asa@example.se")
    send(store, FakeTransport())
    update_device(store, "A", user_email="\u00e5SA@EXAMPLE.SE")
    transport = FakeTransport()

    send(store, transport)

    assert transport.sent == []
    assert len(rows_of(store, "A")) == 1


def test_the_new_user_gets_the_renewal_notice_before_any_reminder(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-12-01", user_email="anna@example.com")
    send(store, FakeTransport(), reminder_days=(7,))
    update_device(store, "A", user_email="bert@example.com")
    transport = FakeTransport()

    report = send(store, transport, as_of=date(2026, 11, 25), reminder_days=(7,))

    assert statuses(report) == {"A/renewal": "sent"}
    assert [n.kind for n in list_notices(store) if n.recipient == "bert@example.com"] == ["renewal"]


def test_a_dry_run_shows_the_notice_for_the_new_user(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20", user_email="anna@example.com")
    send(store, FakeTransport())
    update_device(store, "A", user_email="bert@example.com")

    dry = send(store, None)

    assert [(o.recipient, o.status) for o in dry.outcomes] == [("bert@example.com", "pending")]
    assert rows_of(store, "A") == [("anna@example.com", "sent")]


def test_renewals_show_one_row_and_the_new_users_notice(store: Store) -> None:
    from velory_cli import renewals

    add_device(store, "A", renewal_date="2026-11-20", user_email="anna@example.com")
    send(store, FakeTransport())
    update_device(store, "A", user_email="bert@example.com")
    send(store, FakeTransport(defer={"bert@example.com"}))

    due = renewals.renewals_due(store, as_of=AS_OF, within_days=30)

    assert [(r.device.serial, r.notice_status) for r in due] == [("A", "pending")]


# ---- a mail sent again is the same mail ------------------------------------------------------


def _serials(mail: Outgoing) -> list[str]:
    text = _plain(mail)
    return [serial for serial in ("GA", "GB", "GC") if f"serial number {serial}" in text]


def test_a_mail_sent_again_after_an_interrupted_run_carries_the_same_notices(
    store: Store,
) -> None:
    for serial in ("GA", "GB"):
        add_device(store, serial, renewal_date="2026-11-20", user_email="eva@example.com")
    dropped = FakeTransport(
        send_error=TemporaryDelivery("the connection dropped before the server confirmed")
    )
    interrupted = send(store, dropped)
    assert interrupted.exit_code == ExitCode.TEMPORARY
    first_id = ledger(store)[("GA", "renewal")].message_id
    assert first_id and ledger(store)[("GB", "renewal")].message_id == first_id
    add_device(store, "GC", renewal_date="2026-11-21", user_email="eva@example.com")
    transport = FakeTransport()

    report = send(store, transport)

    assert report.exit_code == 0
    by_id = {mail.message_id: _serials(mail) for mail in transport.sent}
    assert by_id[first_id] == ["GA", "GB"]
    assert len(by_id) == 2
    (other,) = set(by_id) - {first_id}
    assert by_id[other] == ["GC"]
    assert ledger(store)[("GC", "renewal")].message_id == other


def test_a_mail_whose_notices_changed_since_it_was_tried_gets_a_message_id_of_its_own(
    store: Store,
) -> None:
    for serial in ("GA", "GB"):
        add_device(store, serial, renewal_date="2026-11-20", user_email="eva@example.com")
    send(store, FakeTransport(send_error=TemporaryDelivery("dropped")))
    first_id = ledger(store)[("GA", "renewal")].message_id
    update_device(store, "GB", status="renewal_started")  # GB is no longer to be sent
    transport = FakeTransport()

    send(store, transport)

    (mail,) = transport.sent
    assert _serials(mail) == ["GA"]
    assert mail.message_id != first_id
    assert ledger(store)[("GA", "renewal")].message_id == mail.message_id
    assert ledger(store)[("GB", "renewal")].message_id == first_id  # what that mail was


# ---- a refusal that is the server's ----------------------------------------------------------


@dataclass
class RefusingTransport(FakeTransport):
    """Answers RCPT with ``answers[recipient]`` (a 5xx), accepts the others."""

    answers: dict[str, str] = field(default_factory=dict)

    def send(self, mail: Outgoing) -> None:
        answer = self.answers.get(mail.recipient)
        if answer is not None:
            raise PermanentDelivery(
                f"the mail server refused {mail.recipient}: {answer}", refusal=answer
            )
        super().send(mail)


def test_the_same_refusal_to_every_recipient_keeps_every_notice_pending(store: Store) -> None:
    for serial in ("A", "B", "C"):
        add_device(store, serial, renewal_date="2026-11-20")
    relaying = "550 5.7.1 Relaying denied"
    transport = RefusingTransport(answers={f"{s}@example.com": relaying for s in "abc"})

    report = send(store, transport)

    assert report.exit_code == ExitCode.CONFIG
    assert [(n.status, n.attempts) for n in list_notices(store)] == [("pending", 1)] * 3
    assert len(report.errors) == 1 and relaying in report.errors[0]


@pytest.mark.parametrize(
    ("answers", "accepted"),
    [
        ({"a@example.com": "550 5.7.1 Relaying denied"}, ["b@example.com"]),
        ({"a@example.com": "550 5.7.1 Relaying denied", "b@example.com": "550 5.7.1 No"}, []),
        (
            {"a@example.com": "550 5.1.1 User unknown", "b@example.com": "550 5.1.1 User unknown"},
            [],
        ),
    ],
    ids=["others-accepted", "different-answers", "about-the-mailbox"],
)
def test_recipients_refused_for_themselves_fail_one_by_one(
    store: Store, answers: dict[str, str], accepted: list[str]
) -> None:
    for serial in ("A", "B"):
        add_device(store, serial, renewal_date="2026-11-20")
    transport = RefusingTransport(answers=answers)

    report = send(store, transport)

    assert report.exit_code == ExitCode.REFUSED
    assert transport.recipients() == accepted
    refused = {
        f"{n.serial.lower()}@example.com" for n in list_notices(store) if n.status == "failed"
    }
    assert refused == set(answers)


def test_a_single_recipient_refused_fails(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-11-20")
    report = send(store, RefusingTransport(answers={"a@example.com": "550 5.7.1 Relaying denied"}))
    assert report.exit_code == ExitCode.REFUSED
    assert [n.status for n in list_notices(store)] == ["failed"]
