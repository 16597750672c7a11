"""The admin digest as library calls with the day passed in: what each section holds and in
which order, the cap, the subject's counts, and how the mail reads in English and Swedish."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.factory import add_device
from tests.mdm_exports import intune_csv
from velory_cli.digest import (
    CHASE,
    CONFIRM_RETURN,
    FAILED_NOTICES,
    MDM,
    RELEASE,
    Digest,
    DigestItem,
    Section,
    compose_digest,
    digest_recipients,
    digest_subject,
    gather_digest,
)
from velory_cli.errors import ConfigError, UsageError
from velory_cli.importer import Source
from velory_cli.mails import MailStyle
from velory_cli.mdm.snapshot import import_snapshot
from velory_cli.store import Store

TODAY = date(2026, 12, 7)
STYLE = MailStyle(sender="IT <it@example.com>")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "velory.db") as opened:
        yield opened


def serials(digest: Digest, name: str) -> list[str]:
    section = digest.section(name)
    assert section is not None
    return [item.serial for item in section.items]


def fail_notice(store: Store, device_id: int, at: str, error: str) -> None:
    """A renewal notice the mail server refused for good at ``at``."""
    with store.transaction():
        store.insert_notices([(device_id, "renewal", "2026-12-01", "x@example.com", at)])
        [notice] = [n for n in store.list_notices() if n.device_id == device_id]
        store.claim_notices([notice.id], owner="test:1", at=at)
        store.finish_notices([notice.id], owner="test:1", status="failed", at=at, error=error)


def seed_every_section(store: Store) -> None:
    # Users to chase: renewal date passed, process not started; the longest overdue first.
    add_device(store, "LATE2", renewal_date="2026-11-30", user_name="Bo Ek")
    add_device(store, "LATE1", renewal_date="2026-11-01", user_name="Åsa Berg")
    # Not to chase: renews today, started, Dustin's, a store device, removed.
    add_device(store, "TODAY1", renewal_date="2026-12-07")
    add_device(store, "STARTED1", renewal_date="2026-11-01", status="renewal_started")
    add_device(store, "DUSTIN1", renewal_date="2026-11-01", distributor="Dustin AB")
    add_device(store, "STORE1", renewal_date="2026-11-01", source="store", distributor="Velory")
    add_device(store, "GONE1", renewal_date="2026-11-01", status="removed")
    # A return to confirm (the replacement arrived), a device to release, one still waiting.
    add_device(
        store,
        "OLD1",
        status="renewal_started",
        replacement_serial="NEW1",
        delivered_at="2026-12-02T10:00:00Z",
        status_changed_at="2026-11-20T10:00:00Z",
    )
    add_device(store, "NEW1", source="store", distributor="Velory", renewal_date="2029-12-02")
    add_device(store, "DONE1", status="return_confirmed", status_changed_at="2026-12-04T08:00:00Z")
    add_device(store, "WAITING1", status="renewal_started", renewal_date="2027-01-10")
    # A notice the server refused.
    refused = add_device(store, "FAIL1", renewal_date="2027-01-05")
    fail_notice(store, refused, "2026-12-05T07:15:00Z", "550 5.1.1 User unknown")


def test_each_section_holds_what_waits_the_longest_waiting_first(store: Store) -> None:
    seed_every_section(store)
    digest = gather_digest(store, today=TODAY)

    assert serials(digest, CHASE) == ["LATE1", "LATE2"]
    assert serials(digest, CONFIRM_RETURN) == ["OLD1"]
    assert serials(digest, RELEASE) == ["DONE1"]
    assert serials(digest, FAILED_NOTICES) == ["FAIL1"]
    assert digest.section(MDM) is None  # no snapshot: the section is left out
    assert digest.counts() == {
        CHASE: 2,
        CONFIRM_RETURN: 1,
        RELEASE: 1,
        FAILED_NOTICES: 1,
        MDM: None,
    }
    chase = digest.section(CHASE)
    assert chase is not None
    late1 = chase.items[0]
    assert (late1.user_name, late1.user_email, late1.since, late1.waited_days) == (
        "Åsa Berg",
        "late1@example.com",
        "2026-11-01",
        36,
    )
    confirm = digest.section(CONFIRM_RETURN)
    assert confirm is not None
    assert (confirm.items[0].since, confirm.items[0].waited_days) == ("2026-12-02", 5)
    failed = digest.section(FAILED_NOTICES)
    assert failed is not None
    assert (failed.items[0].since, failed.items[0].note) == ("2026-12-05", "550 5.1.1 User unknown")
    assert not digest.all_clear


def test_the_day_decides_who_is_overdue(store: Store) -> None:
    add_device(store, "A", renewal_date="2026-12-07")
    assert serials(gather_digest(store, today=TODAY), CHASE) == []
    assert serials(gather_digest(store, today=date(2026, 12, 8)), CHASE) == ["A"]


def test_the_mdm_section_lists_what_the_check_finds(store: Store, tmp_path: Path) -> None:
    add_device(store, "GONE1", status="removed")
    add_device(store, "NOMDM1", renewal_date="2027-06-01")
    path = intune_csv(
        tmp_path / "intune.csv",
        [{"serial": "GONE1", "state": "Retire pending", "check_in": "2026-12-01T08:00:00Z"}],
    )
    with path.open("rb") as handle:
        source = Source(name=path.name, stream=handle, size=None, suffix=".csv")
        import_snapshot(store, source, source_given=None, now="2026-12-07T06:00:00Z", actor="t")

    digest = gather_digest(store, today=TODAY)

    mdm = digest.section(MDM)
    assert mdm is not None
    assert [(item.serial, item.note) for item in mdm.items] == [
        ("GONE1", "released_but_enrolled"),
        ("NOMDM1", "missing_from_mdm"),
    ]
    assert digest.counts()[MDM] == 2
    text = compose_digest(digest, STYLE).text
    assert "MDM check (2)" in text
    assert "GONE1" in text and "released in velory, still enrolled in the MDM" in text


def test_an_empty_store_is_all_clear_and_still_a_mail(store: Store) -> None:
    digest = gather_digest(store, today=TODAY)
    assert digest.all_clear
    mail = compose_digest(digest, STYLE)
    assert mail.subject == "velory: all clear"
    assert "All clear: nothing waits for the admins on 7 December 2026." in mail.text
    assert "the job did not run" in mail.text
    assert "All clear" in mail.html
    sv = compose_digest(digest, MailStyle(sender="it@example.com", language="sv"))
    assert sv.subject == "velory: allt klart"
    assert "Allt klart: inget väntar på administratörerna den 7 december 2026." in sv.text


def test_the_subject_says_the_counts_in_english_and_swedish(store: Store) -> None:
    seed_every_section(store)
    digest = gather_digest(store, today=TODAY)
    assert digest_subject(digest, "en") == (
        "velory: 2 users to chase, 1 return to confirm, 1 device to release, 1 failed notice"
    )
    assert digest_subject(digest, "sv") == (
        "velory: 2 användare att påminna, 1 retur att bekräfta, 1 enhet att släppa, "
        "1 misslyckat utskick"
    )
    found = tuple(DigestItem(serial, None, None, None, None, "stale") for serial in ("M1", "M2"))
    several = Digest(TODAY, (Section(CHASE, ()), Section(MDM, found)))
    assert digest_subject(several, "en") == "velory: 2 discrepancies with MDM"
    assert digest_subject(several, "sv") == "velory: 2 avvikelser mot MDM"


def test_the_mail_names_each_device_its_user_and_how_long_it_waited(store: Store) -> None:
    seed_every_section(store)
    mail = compose_digest(gather_digest(store, today=TODAY), STYLE)
    lines = mail.text.splitlines()
    assert lines[0] == "What waits for the admins on 7 December 2026."
    chase = lines.index("Users to chase (2)")
    assert lines[chase + 2 : chase + 4] == [
        "- LATE1, Åsa Berg <late1@example.com>: 36 days since the renewal date, 2026-11-01",
        "- LATE2, Bo Ek <late2@example.com>: 7 days since the renewal date, 2026-11-30",
    ]
    assert (
        "- OLD1, User OLD1 <old1@example.com>: 5 days since the replacement arrived, 2026-12-02"
        in lines
    )
    assert (
        "- DONE1, User DONE1 <done1@example.com>: 3 days since the return was confirmed, "
        "2026-12-04" in lines
    )
    assert (
        "- FAIL1, User FAIL1 <fail1@example.com>: 2 days since it failed, 2026-12-05; "
        "550 5.1.1 User unknown" in lines
    )
    assert not any(line.startswith("and ") for line in lines)  # nothing capped
    assert "WAITING1" not in mail.text and "TODAY1" not in mail.text
    # The HTML part says the same, escaped.
    assert "<h2>Users to chase (2)</h2>" in mail.html
    assert "Åsa Berg &lt;late1@example.com&gt;" in mail.html


def test_swedish_mail(store: Store) -> None:
    seed_every_section(store)
    mail = compose_digest(
        gather_digest(store, today=TODAY),
        MailStyle(sender="it@example.com", language="sv", company_name="Exempel AB"),
    )
    assert mail.text.startswith("Det här väntar på administratörerna den 7 december 2026.\n")
    assert "Användare att påminna (2)" in mail.text
    assert "- LATE2, Bo Ek <late2@example.com>: 7 dagar sedan förnyelsedatumet, 2026-11-30" in (
        mail.text
    )
    assert "1 dag" not in mail.text
    assert mail.text.rstrip().endswith("velory för Exempel AB")
    assert '<html lang="sv">' in mail.html


def test_a_section_is_capped_with_how_many_more_and_where(store: Store) -> None:
    for n in range(25):
        add_device(store, f"D{n:02d}", renewal_date=f"2026-11-{n + 1:02d}")
    mail = compose_digest(gather_digest(store, today=TODAY), STYLE)
    listed = [line for line in mail.text.splitlines() if line.startswith("- ")]
    assert len(listed) == 20
    assert listed[0].startswith("- D00,")  # the longest overdue first
    assert "Users to chase (25)" in mail.text
    assert "and 5 more: velory todo" in mail.text
    assert "and 5 more: velory todo" in mail.html
    assert mail.subject == "velory: 25 users to chase"
    short = compose_digest(gather_digest(store, today=TODAY), STYLE, cap=3)
    assert "and 22 more: velory todo" in short.text
    sv = compose_digest(
        gather_digest(store, today=TODAY), MailStyle(sender="x@y.se", language="sv")
    )
    assert "och 5 till: velory todo" in sv.text


def test_recipients_from_to_else_the_setting() -> None:
    assert digest_recipients(["a@example.com", "A@Example.com", "b@example.com"], None) == [
        "a@example.com",
        "b@example.com",
    ]
    assert digest_recipients([], "it@example.com, ops@example.com") == [
        "it@example.com",
        "ops@example.com",
    ]
    assert digest_recipients([], ["it@example.com"]) == ["it@example.com"]
    assert digest_recipients(["me@example.com"], "it@example.com") == ["me@example.com"]
    with pytest.raises(ConfigError, match="no recipient for the digest: give --to"):
        digest_recipients([], None)
    with pytest.raises(ConfigError, match="admin_email"):
        digest_recipients([], "not an address")
    with pytest.raises(UsageError, match="--to"):
        digest_recipients(["a@example.com\nBcc: x@example.com"], None)


def test_large_counts_read_as_the_language_writes_them(store: Store) -> None:
    found = tuple(DigestItem(f"D{n}", None, None, "2026-11-01", 36, None) for n in range(12_345))
    digest = Digest(TODAY, (Section(CHASE, found),))
    en = compose_digest(digest, STYLE)
    assert en.subject == "velory: 12,345 users to chase"
    assert "Users to chase (12,345)" in en.text
    assert "and 12,325 more: velory todo" in en.text
    sv = compose_digest(digest, MailStyle(sender="it@example.com", language="sv"))
    assert sv.subject == "velory: 12\u00a0345 användare att påminna"
    assert "och 12\u00a0325 till: velory todo" in sv.text


def test_store_data_stays_text_in_both_parts_and_never_a_header(store: Store) -> None:
    from datetime import UTC, datetime

    from velory_cli.digest import build_message

    add_device(
        store, "X1", renewal_date="2026-11-01", user_name="<b>Eve</b>\r\nBcc: evil@example.com"
    )
    mail = compose_digest(gather_digest(store, today=TODAY), STYLE)
    [line] = [line for line in mail.text.splitlines() if line.startswith("- X1,")]
    assert line.startswith("- X1, <b>Eve</b> Bcc: evil@example.com <x1@example.com>: ")
    assert "&lt;b&gt;Eve&lt;/b&gt; Bcc: evil@example.com" in mail.html
    assert "<b>Eve</b>" not in mail.html
    outgoing = build_message(
        mail,
        sender=STYLE.sender,
        recipient="it@example.com",
        message_id="<m@example.com>",
        now=datetime(2026, 12, 7, 7, tzinfo=UTC),
    )
    assert outgoing.recipient == "it@example.com"
    assert outgoing.message["Bcc"] is None
    assert outgoing.message["From"] == "IT <it@example.com>"
