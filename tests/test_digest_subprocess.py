"""velory digest as cron runs it: the installed command, a minimal environment, stdin closed,
against a real SMTP server on 127.0.0.1; each mail read as a mail program reads it."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import sqlite3
import stat
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.factory import add_device
from tests.mdm_exports import intune_csv
from tests.smtp_server import Received, SmtpServer, free_port
from tests.test_digest import fail_notice
from tests.test_notices_subprocess import cron, start_cron, store_path
from velory_cli.store import Store

pytestmark = pytest.mark.subprocess

StartServer = Callable[..., SmtpServer]
ADMIN = "it-admins@example.com"
MONDAY = ["--as-of", "2026-12-07"]


@pytest.fixture
def cron_home(tmp_path: Path) -> Path:
    path = tmp_path / "cronhome"
    path.mkdir()
    return path


def settings(server: SmtpServer, **extra: str) -> dict[str, str]:
    return {**server.env, "VELORY_ADMIN_EMAIL": ADMIN, **extra}


def parsed(mail: Received) -> EmailMessage:
    message = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, kind: str) -> str:
    body = message.get_body(preferencelist=(kind,))
    assert body is not None
    return str(body.get_content())


def seed_every_section(home: Path, tmp_path: Path, env: Mapping[str, str]) -> None:
    with Store.open(store_path(home)) as store:
        add_device(store, "LATE1", renewal_date="2026-11-01", user_name="Åsa Berg")
        add_device(store, "LATE2", renewal_date="2026-11-30", user_name="Bo Ek")
        add_device(
            store,
            "OLD1",
            status="renewal_started",
            replacement_serial="NEW1",
            delivered_at="2026-12-02T10:00:00Z",
        )
        add_device(store, "NEW1", source="store", distributor="Velory", renewal_date="2029-12-02")
        add_device(store, "DONE1", status="return_confirmed", status_changed_at="2026-12-04")
        add_device(store, "GONE1", status="removed")
        refused = add_device(store, "FAIL1", renewal_date="2027-01-05")
        fail_notice(store, refused, "2026-12-05T07:15:00Z", "550 5.1.1 User unknown")
    export = intune_csv(
        tmp_path / "intune.csv",
        [
            {"serial": "GONE1", "state": "Retire pending", "check_in": "2026-12-06T08:00:00Z"},
            *(
                {"serial": serial, "check_in": "2026-12-06T08:00:00Z", "user": f"{serial}@x.se"}
                for serial in ("LATE1", "LATE2", "OLD1", "NEW1", "DONE1", "FAIL1")
            ),
        ],
    )
    imported = cron(home, ["mdm", "import", str(export)], env)
    assert imported.returncode == 0, imported.stderr


def digest_rows(home: Path) -> list[tuple[str, str, str, int, str]]:
    with sqlite3.connect(f"file:{store_path(home)}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT recipient, day, status, attempts, message_id FROM digests ORDER BY id"
        ).fetchall()
    return [tuple(row) for row in rows]


def test_the_mail_holds_each_section_as_a_mail_program_shows_it(
    cron_home: Path, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    env = settings(smtp_server)
    seed_every_section(cron_home, tmp_path, env)

    result = cron(cron_home, ["digest", *MONDAY, "--quiet"], env)

    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    [mail] = smtp_server.messages()
    assert mail.rcpt_tos == (ADMIN,)
    message = parsed(mail)
    # Each user's device has another user in the MDM export: six user mismatches, and GONE1.
    assert message["Subject"] == (
        "velory: 2 users to chase, 1 return to confirm, 1 device to release, 1 failed notice, "
        "7 discrepancies with MDM"
    )
    assert message["From"] == "IT Support <it@example.com>"
    assert message["To"] == ADMIN
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text = part(message, "plain")
    lines = text.splitlines()
    assert lines[0] == "What waits for the admins on 7 December 2026."
    chase = lines.index("Users to chase (2)")
    assert lines[chase + 2 : chase + 4] == [
        "- LATE1, Åsa Berg <late1@example.com>: 36 days since the renewal date, 2026-11-01",
        "- LATE2, Bo Ek <late2@example.com>: 7 days since the renewal date, 2026-11-30",
    ]
    assert "Returns to confirm (1)" in lines
    assert (
        "- OLD1, User OLD1 <old1@example.com>: 5 days since the replacement arrived, 2026-12-02"
        in lines
    )
    assert "Devices to release (1)" in lines
    assert "Failed notices (1)" in lines
    assert any(line.startswith("- FAIL1,") and "550 5.1.1 User unknown" in line for line in lines)
    assert "MDM check (7)" in lines
    assert any(
        line.startswith("- GONE1,") and "released in velory, still enrolled in the MDM" in line
        for line in lines
    )
    html = part(message, "html")
    for title in ("Users to chase (2)", "Returns to confirm (1)", "MDM check (7)"):
        assert f"<h2>{title}</h2>" in html
    assert "Åsa Berg &lt;late1@example.com&gt;" in html


def test_swedish_and_all_clear(cron_home: Path, smtp_server: SmtpServer) -> None:
    Store.open(store_path(cron_home)).close()
    result = cron(cron_home, ["digest", *MONDAY], settings(smtp_server, VELORY_LANGUAGE="sv"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Digest sent to {ADMIN} (allt klart).\n"
    message = parsed(smtp_server.messages()[0])
    assert message["Subject"] == "velory: allt klart"
    assert message["Content-Language"] == "sv"
    assert part(message, "plain").startswith(
        "Allt klart: inget väntar på administratörerna den 7 december 2026."
    )


def test_one_mail_a_day_however_often_it_runs(cron_home: Path, smtp_server: SmtpServer) -> None:
    with Store.open(store_path(cron_home)) as store:
        add_device(store, "LATE1", renewal_date="2026-11-01")
    env = settings(smtp_server)
    for _ in range(3):
        result = cron(cron_home, ["digest", *MONDAY], env)
        assert result.returncode == 0, result.stderr
    assert len(smtp_server.messages()) == 1
    assert result.stdout == f"Digest already sent today to {ADMIN}.\n"
    tuesday = cron(cron_home, ["digest", "--as-of", "2026-12-08", "--quiet"], env)
    assert tuesday.returncode == 0, tuesday.stderr
    assert len(smtp_server.messages()) == 2
    assert [row[1:3] for row in digest_rows(cron_home)] == [
        ("2026-12-07", "sent"),
        ("2026-12-08", "sent"),
    ]


def test_two_runs_at_once_send_one_mail(cron_home: Path, smtp_factory: StartServer) -> None:
    Store.open(store_path(cron_home)).close()
    server = smtp_factory(delay=1.5)  # the first run is still sending when the second looks
    env = settings(server)
    runs = [start_cron(cron_home, ["digest", *MONDAY], env) for _ in range(2)]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert len(server.messages()) == 1
    said = "".join(out for out, _ in outputs)
    assert said.count(f"Digest sent to {ADMIN}") == 1
    assert "being sent by another run" in said or f"Digest already sent today to {ADMIN}" in said


def test_the_dry_run_shows_the_mail_and_sends_and_claims_nothing(
    cron_home: Path, smtp_server: SmtpServer
) -> None:
    with Store.open(store_path(cron_home)) as store:
        add_device(store, "LATE1", renewal_date="2026-11-01")
    env = settings(smtp_server)
    dry = cron(cron_home, ["digest", *MONDAY, "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(f"To: {ADMIN}\nSubject: velory: 1 user to chase\n\n")
    assert "- LATE1, User LATE1 <late1@example.com>: 36 days" in dry.stdout
    assert smtp_server.messages() == [] and smtp_server.connections == 0
    assert digest_rows(cron_home) == []
    # No mail server is needed for it.
    bare = cron(cron_home, ["digest", *MONDAY, "--dry-run"], {"VELORY_ADMIN_EMAIL": ADMIN})
    assert bare.returncode == 0, bare.stderr


def test_the_outbox_gets_a_private_eml_once(cron_home: Path, tmp_path: Path) -> None:
    Store.open(store_path(cron_home)).close()
    outbox = tmp_path / "outbox"
    env = {"VELORY_ADMIN_EMAIL": ADMIN}
    for _ in range(2):
        result = cron(cron_home, ["digest", *MONDAY, "--outbox", str(outbox)], env)
        assert result.returncode == 0, result.stderr
    [path] = outbox.glob("*.eml")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "velory: all clear"
    assert path.name == str(message["Message-ID"]).strip("<>").replace("@", "_") + ".eml"


def test_no_recipient_exits_78_in_one_line(cron_home: Path, smtp_server: SmtpServer) -> None:
    Store.open(store_path(cron_home)).close()
    result = cron(cron_home, ["digest", "--quiet"], smtp_server.env)
    assert result.returncode == 78
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "VELORY_ADMIN_EMAIL" in result.stderr
    assert "Traceback" not in result.stderr
    assert smtp_server.connections == 0


def test_a_server_that_is_down_exits_75_and_the_next_run_sends(
    cron_home: Path, smtp_factory: StartServer
) -> None:
    Store.open(store_path(cron_home)).close()
    port = free_port()
    down = SmtpServer(port=port)  # not started: nothing listens there
    env = settings(down)
    first = cron(cron_home, ["digest", *MONDAY, "--quiet"], env)
    assert first.returncode == 75, first.stderr
    assert "cannot reach the mail server" in first.stderr
    assert [row[2] for row in digest_rows(cron_home)] == ["pending"]

    server = smtp_factory(port=port)
    second = cron(cron_home, ["digest", *MONDAY, "--quiet"], env)
    assert second.returncode == 0, second.stderr
    [mail] = server.messages()
    assert mail.message_id == digest_rows(cron_home)[0][4]
    assert [row[2:4] for row in digest_rows(cron_home)] == [("sent", 2)]


def test_a_recipient_refused_for_good_exits_1_and_the_others_get_it(
    cron_home: Path, smtp_factory: StartServer
) -> None:
    Store.open(store_path(cron_home)).close()
    server = smtp_factory(refuse={"gone@example.com"})
    result = cron(
        cron_home,
        ["digest", *MONDAY, "--to", "gone@example.com", "--to", ADMIN, "--quiet"],
        server.env,
    )
    assert result.returncode == 1, result.stderr
    assert "the digest to gone@example.com failed" in result.stderr
    assert server.recipients() == [ADMIN]


@pytest.mark.faults
def test_a_run_killed_before_it_recorded_the_mail_sends_it_again_with_the_same_message_id(
    cron_home: Path, smtp_factory: StartServer
) -> None:
    Store.open(store_path(cron_home)).close()
    server = smtp_factory(delay=3.0)  # the server has the mail and answers late
    env = settings(server)
    run = start_cron(cron_home, ["digest", *MONDAY], env)
    deadline = time.monotonic() + 60
    while not digest_rows(cron_home) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the mail is with the server, which has not answered yet
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    time.sleep(3.5)  # a server that kept the mail has it by now
    before = len(server.messages())  # 0 or 1: the killed run cannot know which
    [(_, _, status, _, message_id)] = digest_rows(cron_home)
    assert status == "sending"
    server.delay = 0.0

    again = cron(cron_home, ["digest", *MONDAY], env)

    assert again.returncode == 0, again.stderr
    assert "was being sent by a run that stopped" in again.stderr
    assert f"same Message-ID {message_id}" in again.stderr
    assert len(server.messages()) == before + 1
    assert {mail.message_id for mail in server.messages()} == {message_id}  # the same mail
    assert digest_rows(cron_home)[0][2] == "sent"
    # A third run the same day sends nothing more.
    third = cron(cron_home, ["digest", *MONDAY, "--quiet"], env)
    assert (third.returncode, third.stdout, third.stderr) == (0, "", "")
    assert len(server.messages()) == before + 1


@pytest.mark.faults
def test_a_full_disk_never_hides_a_digest_that_went_out(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    from tests.faultkit import assert_no_traceback, file_size_limit, run, velory_env

    recipients = ["a@example.com", "b@example.com"]
    to = [arg for address in recipients for arg in ("--to", address)]
    template = tmp_path / "template.db"
    with Store.open(template) as store:
        add_device(store, "LATE1", renewal_date="2026-11-01")
    venv = velory_env({"VELORY_HOME": str(tmp_path)}, smtp_server.env)
    between = 0
    for limit in range(8 << 10, 96 << 10, 2 << 10):
        db = tmp_path / f"limit-{limit}" / "velory.db"
        db.parent.mkdir()
        db.write_bytes(template.read_bytes())
        before = len(smtp_server.messages())
        args = ["--db", str(db), "digest", *MONDAY, *to]

        stopped = run(args, venv, tmp_path, preexec_fn=file_size_limit(limit))

        if stopped.returncode == 0:
            break  # room enough for the whole run
        assert stopped.returncode == 74, str(stopped)
        assert_no_traceback(stopped)
        errors = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, str(stopped)
        mails = smtp_server.messages()[before:]
        if mails:
            assert "nothing was changed" not in errors[0], errors[0]
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = {
                recipient: (status, message_id)
                for recipient, status, message_id in conn.execute(
                    "SELECT recipient, status, message_id FROM digests"
                )
            }
        for mail in mails:
            (address,) = mail.rcpt_tos
            if rows[address][0] != "sent":  # went out, not recorded: the error names it
                between += 1
                assert f"the digest to {address} was sent but could not be recorded" in errors[0]
                assert mail.message_id in errors[0]

        again = run(args, venv, tmp_path)
        assert again.returncode == 0, str(again)
        later = smtp_server.messages()[before:]
        assert sorted({mail.rcpt_tos[0] for mail in later}) == recipients  # nothing lost
        for address in recipients:
            ids = [mail.message_id for mail in later if mail.rcpt_tos == (address,)]
            assert len(set(ids)) == 1 and len(ids) <= 2, (address, ids)
    else:
        pytest.fail("no limit was room enough for the whole run")
    assert between > 0, "no limit stopped a run between a mail and its record"
