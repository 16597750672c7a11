"""velory digest through the CLI (CliRunner) against a tmp_path store: whom it goes to, the dry
run, the outbox, once a day, --json and --quiet; and the ledger as library calls (a run that
stopped after the server accepted the mail)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import stat
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import Invoke
from tests.factory import add_device
from velory_cli.digest import DigestReport, compose_digest, gather_digest, send_digest
from velory_cli.mailer import Outgoing, TemporaryDelivery
from velory_cli.mails import MailStyle
from velory_cli.store import Store

AS_OF = ["--as-of", "2026-12-07"]


def seed(home: Path) -> None:
    with Store.open(home / "velory.db") as store:
        add_device(store, "LATE1", renewal_date="2026-11-01", user_name="Åsa Berg")
        add_device(store, "DONE1", status="return_confirmed", status_changed_at="2026-12-04")


def read_eml(path: Path) -> EmailMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage, kind: str = "plain") -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None
    return str(part.get_content())


def write_config(home: Path, text: str) -> None:
    (home / "config.toml").write_text(text, encoding="utf-8")


def test_no_recipient_exits_78_saying_how_to_set_one(invoke: Invoke, empty_store: Path) -> None:
    result = invoke(["digest", "--outbox", "out"])
    assert result.exit_code == 78, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--to ADDRESS" in lines[0] and "VELORY_ADMIN_EMAIL" in lines[0]
    assert "admin_email" in lines[0]


def test_a_to_that_is_no_address_is_a_usage_error(invoke: Invoke, empty_store: Path) -> None:
    result = invoke(["digest", "--to", "nobody", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "--to:" in result.stderr and "Traceback" not in result.output


def test_the_dry_run_shows_the_mail_and_sends_and_records_nothing(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    seed(home)
    outbox = tmp_path / "outbox"
    dry = invoke(["digest", *AS_OF, "--to", "it@example.com", "--dry-run"])
    assert dry.exception is None, dry.output
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith(
        "To: it@example.com\nSubject: velory: 1 user to chase, 1 device to release\n\n"
        "What waits for the admins on 7 December 2026.\n"
    )
    assert "- LATE1, Åsa Berg <late1@example.com>: 36 days since the renewal date" in dry.stdout
    assert "Dry run: the digest would go to it@example.com" in dry.stdout
    # Nothing was claimed: the real run still sends it.
    sent = invoke(["digest", *AS_OF, "--to", "it@example.com", "--outbox", str(outbox)])
    assert sent.exit_code == 0, sent.output
    assert sent.stdout == (
        "Digest sent to it@example.com (1 user to chase, 1 device to release).\n"
    )
    assert len(list(outbox.glob("*.eml"))) == 1
    # A dry run after it says it would not send again.
    again = invoke(["digest", *AS_OF, "--to", "it@example.com", "--dry-run", "--json"])
    assert again.exit_code == 0, again.output
    document = json.loads(again.stdout)
    assert document["dry_run"] is True
    assert document["recipients"][0]["status"] == "skipped"


def test_the_outbox_gets_one_private_eml_and_a_second_run_the_same_day_sends_nothing(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    seed(home)
    outbox = tmp_path / "outbox"
    args = ["digest", *AS_OF, "--to", "it@example.com", "--outbox", str(outbox)]
    first = invoke(args)
    assert first.exception is None, first.output
    assert first.exit_code == 0, first.output
    [path] = outbox.glob("*.eml")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    message = read_eml(path)
    assert message["Subject"] == "velory: 1 user to chase, 1 device to release"
    assert message["To"] == "it@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "en"
    assert "Users to chase (1)" in text_of(message)
    assert "Devices to release (1)" in text_of(message)
    assert "<h2>Devices to release (1)</h2>" in text_of(message, "html")

    second = invoke(args)
    assert second.exit_code == 0, second.output
    assert second.stdout == "Digest already sent today to it@example.com.\n"
    assert len(list(outbox.glob("*.eml"))) == 1
    # Addresses compare as serials do: IT@Example.com had it already.
    third = invoke(["digest", *AS_OF, "--to", "IT@Example.com", "--outbox", str(outbox)])
    assert third.stdout == "Digest already sent today to IT@Example.com.\n"
    # The next day is a new digest.
    next_day = invoke(
        ["digest", "--as-of", "2026-12-08", "--to", "it@example.com", "--outbox", str(outbox)]
    )
    assert next_day.exit_code == 0, next_day.output
    assert len(list(outbox.glob("*.eml"))) == 2


def test_json_is_one_document_with_the_counts_and_each_recipient(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    seed(home)
    args = ["digest", *AS_OF, "--outbox", str(tmp_path / "o"), "--json"]
    result = invoke([*args, "--to", "a@example.com", "--to", "b@example.com"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    text = document.pop("text")
    assert "Users to chase (1)" in text and "Devices to release (1)" in text
    assert document == {
        "day": "2026-12-07",
        "dry_run": False,
        "sent": 2,
        "skipped": 0,
        "failed": 0,
        "pending": 0,
        "subject": "velory: 1 user to chase, 1 device to release",
        "all_clear": False,
        "sections": {
            "chase": 1,
            "confirm_return": 0,
            "release": 1,
            "failed_notices": 0,
            "mdm": None,
        },
        "recipients": [
            {
                "recipient": "a@example.com",
                "status": "sent",
                "error": None,
                "message_id": document["recipients"][0]["message_id"],
            },
            {
                "recipient": "b@example.com",
                "status": "sent",
                "error": None,
                "message_id": document["recipients"][1]["message_id"],
            },
        ],
    }
    ids = [r["message_id"] for r in document["recipients"]]
    assert len(set(ids)) == 2 and all(i.startswith("<velory.digest.20261207.") for i in ids)
    assert "Digest sent to a@example.com" in result.stderr


def test_the_environment_wins_over_config_toml_and_to_over_both(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    seed(home)
    write_config(home, 'admin_email = ["file@example.com"]\nlanguage = "sv"\n')
    outbox = ["--outbox", str(tmp_path / "o")]
    from_file = invoke(["digest", *AS_OF, *outbox, "--dry-run"])
    assert from_file.stdout.startswith("To: file@example.com\nSubject: velory: 1 användare")
    from_env = invoke(
        ["digest", *AS_OF, *outbox, "--dry-run"],
        extra_env={"VELORY_ADMIN_EMAIL": "env@example.com"},
    )
    assert from_env.stdout.startswith("To: env@example.com\n")
    given = invoke(
        ["digest", *AS_OF, *outbox, "--dry-run", "--to", "me@example.com"],
        extra_env={"VELORY_ADMIN_EMAIL": "env@example.com"},
    )
    assert given.stdout.startswith("To: me@example.com\n")


def test_quiet_prints_nothing_when_all_went_well(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    seed(home)
    args = ["digest", *AS_OF, "--to", "it@example.com", "--outbox", str(tmp_path / "o"), "-q"]
    for _ in range(2):  # sent, then already sent: both went well
        result = invoke(args)
        assert result.exit_code == 0, result.output
        assert (result.stdout, result.stderr) == ("", "")


def test_an_outbox_that_cannot_be_written_exits_73_and_claims_nothing(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    seed(home)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke(["digest", *AS_OF, "--to", "it@example.com", "--outbox", str(blocker)])
    assert result.exit_code == 73, result.output
    assert "is a file, not a folder" in result.stderr
    with Store.open(home / "velory.db") as store:
        assert store.digest_row("it@example.com", "2026-12-07") is None


# ---- the ledger, as library calls ------------------------------------------------------------


class Recording:
    """A transport that keeps what it was given; ``fail``: raise this on send instead."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.sent: list[Outgoing] = []
        self.fail = fail

    def open(self) -> None:
        return None

    def send(self, mail: Outgoing) -> None:
        self.sent.append(mail)
        if self.fail is not None:
            raise self.fail

    def close(self) -> None:
        return None


class Killed(BaseException):
    """The run is killed after the server accepted the mail, before it is recorded."""


DAY = date(2026, 12, 7)
STYLE = MailStyle(sender="IT <it@example.com>")


def run_digest(store: Store, transport: Recording, owner: str, live: bool = False) -> DigestReport:
    found = gather_digest(store, today=DAY)
    return send_digest(
        store,
        found,
        compose_digest(found, STYLE),
        ["it@example.com"],
        sender=STYLE.sender,
        transport=transport,
        clock=lambda: "2026-12-07T07:00:00+00:00",
        owner=owner,
        claim_is_live=lambda claimed_by: live,
    )


def test_a_run_killed_after_the_server_accepted_sends_again_with_the_same_message_id(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        add_device(store, "LATE1", renewal_date="2026-11-01")
        killed = Recording(fail=Killed())
        with pytest.raises(Killed):
            run_digest(store, killed, owner="host:1")
        row = store.digest_row("it@example.com", "2026-12-07")
        assert row is not None and row.status == "sending"

        # While that run's process lives, another run leaves the digest alone.
        alive = Recording()
        report = run_digest(store, alive, owner="host:2", live=True)
        assert alive.sent == []
        assert report.outcomes[0].status == "skipped"

        again = Recording()
        report = run_digest(store, again, owner="host:3")
        assert [mail.message_id for mail in again.sent] == [killed.sent[0].message_id]
        assert report.exit_code == 0
        [warning] = report.warnings
        assert "was being sent by a run that stopped (host:1" in warning
        assert f"same Message-ID {killed.sent[0].message_id}" in warning
        row = store.digest_row("it@example.com", "2026-12-07")
        assert row is not None and (row.status, row.attempts) == ("sent", 2)


def test_a_server_that_is_down_leaves_the_digest_for_the_next_run(tmp_path: Path) -> None:
    with Store.open(tmp_path / "velory.db") as store:
        down = Recording(fail=TemporaryDelivery("cannot reach the mail server", connection=True))
        report = run_digest(store, down, owner="host:1")
        assert report.exit_code == 75
        row = store.digest_row("it@example.com", "2026-12-07")
        assert row is not None and row.status == "pending"

        up = Recording()
        report = run_digest(store, up, owner="host:2")
        assert report.exit_code == 0
        assert [mail.message_id for mail in up.sent] == [down.sent[0].message_id]
        # What the store says changed since: the same day's digest gets its own Message-ID.
    with Store.open(tmp_path / "other.db") as store:
        first = Recording(fail=TemporaryDelivery("down", connection=True))
        run_digest(store, first, owner="host:1")
        add_device(store, "LATE1", renewal_date="2026-11-01")
        second = Recording()
        run_digest(store, second, owner="host:2")
        assert second.sent[0].message_id != first.sent[0].message_id


def test_the_mdm_section_is_what_mdm_check_finds_in_real_exports(
    invoke: Invoke, home: Path
) -> None:
    from tests.conftest import REALDATA

    seed(home)
    for export in ("intune/graph-managedDevices.json", "google/chromeos-devices.json"):
        imported = invoke(["mdm", "import", str(REALDATA / "mdm" / export)])
        assert imported.exit_code == 0, imported.output
    check = invoke(["mdm", "check", *AS_OF, "--json"])
    found = json.loads(check.stdout)["discrepancies"]
    assert found  # the register's devices are in neither export, and theirs not in it

    result = invoke(["digest", *AS_OF, "--to", "it@example.com", "--dry-run", "--json"])
    assert result.exception is None, result.output
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["sections"]["mdm"] == len(found)
    mail = invoke(["digest", *AS_OF, "--to", "it@example.com", "--dry-run"]).stdout
    # The JSON carries the same text part the dry run shows.
    assert document["text"].rstrip("\n") in mail
    assert f"MDM check ({len(found)})" in mail
    for item in found[:20]:
        assert f"- {item['serial'] or item['mdm_serial']}," in mail
