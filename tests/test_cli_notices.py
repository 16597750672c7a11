"""velory notices send and velory notices list, run in-process: exit codes, stdout, stderr."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Invoke, json_out
from tests.factory import add_device
from tests.smtp_server import SmtpServer, free_port, make_test_certificate
from velory_cli.store import Store

StartServer = Callable[..., SmtpServer]
AS_OF = ["--as-of", "2026-11-01"]


def seed(home: Path, *devices: tuple[str, dict[str, Any]]) -> None:
    with Store.open(home / "velory.db") as store:
        for serial, fields in devices:
            add_device(store, serial, **fields)


def write_config(home: Path, text: str, mode: int = 0o600) -> None:
    path = home / "config.toml"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def due(serial: str, renewal_date: str = "2026-11-20", **fields: Any) -> tuple[str, dict[str, Any]]:
    return serial, {"renewal_date": renewal_date, **fields}


# ---- notices send --------------------------------------------------------------------------


def test_without_mail_settings_send_exits_78_naming_the_variables(
    invoke: Invoke, home: Path
) -> None:
    seed(home, due("A"))
    result = invoke(["notices", "send", *AS_OF])
    assert result.exit_code == 78
    assert result.stdout == ""
    assert "VELORY_SMTP_HOST" in result.stderr
    assert "VELORY_MAIL_FROM" in result.stderr
    assert "Traceback" not in result.output


def test_send_mails_the_due_devices_and_prints_one_summary_line(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A"), due("B"), due("LATER", "2027-06-01"))
    result = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    assert sorted(smtp_server.recipients()) == ["a@example.com", "b@example.com"]
    assert result.stdout.strip().splitlines() == [
        "Sent 2 notices in 2 mails; 0 failed, 0 pending, 0 skipped (no email), 0 cancelled."
    ]
    assert result.stderr == ""


def test_nothing_due_says_so(invoke: Invoke, home: Path, smtp_server: SmtpServer) -> None:
    seed(home, due("LATER", "2027-06-01"))
    result = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "No notices due."
    assert smtp_server.messages() == []


def test_json_goes_to_stdout_and_the_summary_to_stderr(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A"), due("NOMAIL", user_email=None))
    result = invoke(["notices", "send", *AS_OF, "--json"], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    data = json_out(result)
    assert {key: data[key] for key in ("sent", "failed", "pending", "skipped", "cancelled")} == {
        "sent": 1,
        "failed": 0,
        "pending": 0,
        "skipped": 1,
        "cancelled": 0,
    }
    assert data["dry_run"] is False
    assert {"serial", "kind", "recipient", "status", "error"} <= set(data["notices"][0])
    sent = [n for n in data["notices"] if n["status"] == "sent"]
    assert sent == [
        {
            "serial": "A",
            "kind": "renewal",
            "recipient": "a@example.com",
            "status": "sent",
            "error": None,
            "renewal_date": "2026-11-20",
        }
    ]
    assert "Sent 1 notice in 1 mail;" in result.stderr
    assert "NOMAIL" in result.stderr


def test_quiet_prints_nothing_when_all_went_well(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A"))
    result = invoke(["notices", "send", *AS_OF, "--quiet"], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert smtp_server.recipients() == ["a@example.com"]


def test_quiet_still_warns_about_a_device_without_email(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A"), due("NOMAIL", user_email=None))
    result = invoke(["notices", "send", *AS_OF, "-q"], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "warning: NOMAIL: due for renewal on 2026-11-20 but has no user email" in result.stderr


def test_a_refused_recipient_fails_alone_and_exits_1(
    invoke: Invoke, home: Path, smtp_factory: StartServer
) -> None:
    server = smtp_factory(refuse={"gone@example.com"})
    seed(home, due("A"), due("GONE", user_email="gone@example.com"), due("C"))
    result = invoke(["notices", "send", *AS_OF, "--json", "--quiet"], extra_env=server.env)
    assert result.exit_code == 1
    data = json_out(result)
    assert (data["sent"], data["failed"]) == (2, 1)
    failed = [n for n in data["notices"] if n["status"] == "failed"]
    assert failed[0]["serial"] == "GONE"
    assert "550 5.1.1" in failed[0]["error"]
    assert "error: GONE: the renewal notice to gone@example.com failed" in result.stderr
    # --quiet speaks when something failed
    assert "Sent 2 notices in 2 mails; 1 failed" in result.stderr


def test_an_unreachable_server_exits_75_and_keeps_every_notice_pending(
    invoke: Invoke, home: Path
) -> None:
    seed(home, due("A"), due("B"))
    env = {
        "VELORY_SMTP_HOST": "127.0.0.1",
        "VELORY_SMTP_PORT": str(free_port()),
        "VELORY_MAIL_FROM": "it@example.com",
    }
    result = invoke(["notices", "send", *AS_OF, "--json"], extra_env=env)
    assert result.exit_code == 75
    assert json_out(result)["pending"] == 2
    assert "cannot reach the mail server 127.0.0.1" in result.stderr
    listed = json_out(invoke(["notices", "list", "--json"]))
    assert [(n["status"], n["attempts"]) for n in listed] == [("pending", 0), ("pending", 0)]


def test_credentials_without_tls_exit_78(invoke: Invoke, home: Path) -> None:
    seed(home, due("A"))
    env = {
        "VELORY_SMTP_HOST": "mail.example.com",
        "VELORY_SMTP_USER": "velory",
        "VELORY_SMTP_PASSWORD": "secret",
        "VELORY_SMTP_TLS": "none",
        "VELORY_MAIL_FROM": "it@example.com",
    }
    result = invoke(["notices", "send", *AS_OF], extra_env=env)
    assert result.exit_code == 78
    assert result.stdout == ""
    assert "credentials without TLS" in result.stderr


def test_a_dry_run_needs_no_mail_server_and_writes_nothing(invoke: Invoke, home: Path) -> None:
    seed(home, due("A"), due("NOMAIL", user_email=None))
    result = invoke(["notices", "send", *AS_OF, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would send" in result.stdout
    assert "a@example.com" in result.stdout
    assert "Dry run: 1 notice would be sent" in result.stdout
    assert "nothing was written or sent" in result.stdout
    assert json_out(invoke(["notices", "list", "--json"])) == []


def test_a_dry_run_in_json(invoke: Invoke, home: Path) -> None:
    seed(home, due("A"))
    result = invoke(["notices", "send", *AS_OF, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    data = json_out(result)
    assert data["dry_run"] is True
    assert data["sent"] == 0
    assert [(n["serial"], n["status"]) for n in data["notices"]] == [("A", "pending")]


def test_the_outbox_gets_one_eml_per_mail(invoke: Invoke, home: Path, tmp_path: Path) -> None:
    seed(home, due("A"), due("B"))
    outbox = tmp_path / "outbox"
    result = invoke(["notices", "send", *AS_OF, "--outbox", str(outbox)])
    assert result.exit_code == 0, result.output
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2
    assert "To: User A <a@example.com>" in files[0].read_text(encoding="utf-8")
    listed = json_out(invoke(["notices", "list", "--json"]))
    assert [n["status"] for n in listed] == ["sent", "sent"]
    assert all(n["message_id"] for n in listed)


def test_an_outbox_that_cannot_be_written_exits_73(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    seed(home, due("A"))
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    result = invoke(["notices", "send", *AS_OF, "--outbox", str(blocker)])
    assert result.exit_code == 73
    assert result.stdout == ""
    assert json_out(invoke(["notices", "list", "--json"])) == []


@pytest.mark.parametrize(
    "args",
    [["--as-of", "next week"], ["--lead-days", "-1"], ["--lead-days", "soon"]],
)
def test_bad_options_are_usage_errors(invoke: Invoke, empty_store: Path, args: list[str]) -> None:
    result = invoke(["notices", "send", "--dry-run", *args])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_lead_days_comes_from_the_option_then_config_toml(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("WEEK", "2026-11-08"), due("MONTH", "2026-11-30"), due("TWO", "2026-12-20"))
    write_config(home, "lead_days = 7\n")
    first = invoke(["notices", "send", *AS_OF, "--json"], extra_env=smtp_server.env)
    assert [n["serial"] for n in json_out(first)["notices"]] == ["WEEK"]
    second = invoke(
        ["notices", "send", *AS_OF, "--lead-days", "60", "--json"], extra_env=smtp_server.env
    )
    assert sorted(n["serial"] for n in json_out(second)["notices"]) == ["MONTH", "TWO"]


def test_renewal_notices_can_be_turned_off_in_config_toml(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A"))
    write_config(home, "renewal_notices = false\n")
    result = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    assert smtp_server.messages() == []
    assert json_out(invoke(["notices", "list", "--json"])) == []


def test_a_run_with_renewal_notices_off_says_so_instead_of_nothing_due(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A"))
    write_config(home, "renewal_notices = false\n")

    result = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert result.stdout.strip().splitlines() == [
        "Renewal notices are turned off (renewal_notices = false): none queued or sent; "
        "no personal-data reminders due."
    ]
    assert result.stderr == ""

    quiet = invoke(["notices", "send", *AS_OF, "--quiet"], extra_env=smtp_server.env)
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""

    dry = invoke(["notices", "send", *AS_OF, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Renewal notices are turned off (renewal_notices = false)" in dry.stdout
    assert "No notices due." not in dry.stdout

    as_json = invoke(["notices", "send", *AS_OF, "--json"], extra_env=smtp_server.env)
    assert as_json.exit_code == 0, as_json.output
    document = json_out(as_json)
    assert document["renewal_notices"] is False
    assert {key: document[key] for key in ("sent", "dry_run", "mails", "notices")} == {
        "sent": 0,
        "dry_run": False,
        "mails": 0,
        "notices": [],
    }
    assert "Renewal notices are turned off" in as_json.stderr
    assert smtp_server.messages() == []


def test_personal_data_reminders_still_go_out_and_the_summary_says_renewals_are_off(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A"), ("OLD", {"renewal_date": "2027-06-01"}))
    for step in (
        ["start", "OLD"],
        ["order", "OLD", "--model", "MacBook Air 13"],
        ["deliver", "OLD", "--new-serial", "NEW"],
    ):
        assert invoke(step).exit_code == 0
    write_config(home, "renewal_notices = false\n")

    result = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    assert smtp_server.recipients() == ["old@example.com"]
    assert result.stdout.strip() == (
        "Sent 1 notice in 1 mail; 0 failed, 0 pending, 0 skipped (no email), 0 cancelled. "
        "Renewal notices are turned off (renewal_notices = false): none queued or sent."
    )


def test_language_company_and_portal_come_from_config_toml(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A", user_name="Åsa"))
    write_config(
        home,
        'language = "sv"\ncompany_name = "Exempel AB"\nportal_url = "https://velory.example.com"\n',
    )
    result = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    received = smtp_server.messages()[0]
    assert str(received.message["Subject"]) == "Åtgärd krävs: Din enhet ska förnyas"
    text = received.text()
    assert text.startswith("Hej Åsa!")
    assert "Öppna https://velory.example.com och klicka" in text
    assert text.rstrip().endswith("IT på Exempel AB")


def test_a_templates_folder_in_the_app_directory_overrides_the_built_in_mail(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A"))
    (home / "templates").mkdir()
    (home / "templates" / "renewal.en.txt").write_text(
        "Subject: Renew your $company laptop\n\n$greeting\n$devices\n", encoding="utf-8"
    )
    write_config(home, 'company_name = "Acme"\n')
    result = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert result.exit_code == 0, result.output
    assert str(smtp_server.messages()[0].message["Subject"]) == "Renew your Acme laptop"


def test_a_broken_template_exits_78_before_anything_is_sent(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A"))
    (home / "templates").mkdir()
    (home / "templates" / "renewal.en.html").write_text("<p>$nonsense</p>", encoding="utf-8")
    result = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert result.exit_code == 78
    assert "renewal.en.html uses $nonsense" in result.stderr
    assert smtp_server.messages() == []


def test_a_config_file_with_a_password_others_can_read_is_warned_about(
    invoke: Invoke, home: Path, empty_store: Path
) -> None:
    write_config(
        home,
        'smtp_host = "mail.example.com"\nsmtp_user = "velory"\nsmtp_password = "secret"\n'
        'smtp_tls = "starttls"\nmail_from = "it@example.com"\n',
        mode=0o644,
    )
    result = invoke(["notices", "send", *AS_OF, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "holds the SMTP password and can be read by other users" in result.stderr


# ---- notices list --------------------------------------------------------------------------


def _seed_ledger(invoke: Invoke, home: Path, server: SmtpServer) -> None:
    seed(home, due("A"), due("GONE", user_email="gone@example.com"))
    invoke(["notices", "send", *AS_OF, "--quiet"], extra_env=server.env)


def test_list_prints_every_notice_as_json(
    invoke: Invoke, home: Path, smtp_factory: StartServer
) -> None:
    _seed_ledger(invoke, home, smtp_factory(refuse={"gone@example.com"}))
    result = invoke(["notices", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json_out(result)
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
    assert [(r["serial"], r["status"], r["attempts"]) for r in rows] == [
        ("A", "sent", 1),
        ("GONE", "failed", 1),
    ]
    assert rows[0]["sent_at"] and rows[1]["sent_at"] is None
    assert rows[0]["message_id"].startswith("<velory.")


def test_list_filters_by_status_and_kind(
    invoke: Invoke, home: Path, smtp_factory: StartServer
) -> None:
    _seed_ledger(invoke, home, smtp_factory(refuse={"gone@example.com"}))
    failed = json_out(invoke(["notices", "list", "--status", "failed", "--json"]))
    assert [r["serial"] for r in failed] == ["GONE"]
    assert json_out(invoke(["notices", "list", "--kind", "personal_data", "--json"])) == []


def test_list_as_csv_and_as_a_table(invoke: Invoke, home: Path, smtp_server: SmtpServer) -> None:
    _seed_ledger(invoke, home, smtp_server)
    as_csv = invoke(["notices", "list", "--csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["serial"] for r in rows] == ["A", "GONE"]
    assert rows[0]["status"] == "sent"
    table = invoke(["notices", "list"])
    assert table.exit_code == 0, table.output
    assert "gone@example.com" in table.stdout


def test_an_empty_ledger(invoke: Invoke, empty_store: Path) -> None:
    result = invoke(["notices", "list"])
    assert result.exit_code == 0, result.output
    assert "No notices." in result.stdout


@pytest.mark.parametrize("args", [["--status", "done"], ["--kind", "letter"], ["--json", "--csv"]])
def test_list_usage_errors(invoke: Invoke, empty_store: Path, args: list[str]) -> None:
    result = invoke(["notices", "list", *args])
    assert result.exit_code == 2
    assert result.stdout == ""


# ---- settings that do not match the server -------------------------------------------------


@pytest.mark.parametrize(
    ("tls", "words"),
    [("ssl", "does not speak TLS on connect"), ("starttls", "does not offer STARTTLS")],
)
def test_a_tls_setting_the_server_does_not_match_exits_78_and_keeps_the_notices(
    invoke: Invoke, home: Path, smtp_server: SmtpServer, tls: str, words: str
) -> None:
    seed(home, due("A"), due("B"))
    env = {**smtp_server.env, "VELORY_SMTP_TLS": tls}
    result = invoke(["notices", "send", *AS_OF, "--quiet"], extra_env=env)
    assert result.exit_code == 78, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0] and "VELORY_SMTP_TLS" in errors[0]
    assert smtp_server.messages() == []
    listed = json_out(invoke(["notices", "list", "--json"]))
    assert [(n["status"], n["attempts"]) for n in listed] == [("pending", 0), ("pending", 0)]
    # The next run with the right setting sends them.
    fixed = invoke(["notices", "send", *AS_OF, "--quiet"], extra_env=smtp_server.env)
    assert fixed.exit_code == 0, fixed.output
    assert fixed.exception is None
    assert sorted(smtp_server.recipients()) == ["a@example.com", "b@example.com"]


# ---- addresses beyond ASCII ----------------------------------------------------------------


def test_addresses_beyond_ascii_are_sent_with_smtputf8(
    invoke: Invoke, home: Path, smtp_factory: StartServer
) -> None:
    server = smtp_factory(smtputf8=True)
    seed(home, due("A", user_email="åsa@exempel.se"), due("B", user_email="bob@exämple.se"))
    result = invoke(["notices", "send", *AS_OF], extra_env=server.env)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert sorted(server.recipients()) == ["bob@exämple.se", "åsa@exempel.se"]
    again = invoke(["notices", "send", *AS_OF], extra_env=server.env)
    assert again.stdout.strip() == "No notices due."


def test_a_server_without_smtputf8_fails_those_notices_and_sends_the_others(
    invoke: Invoke, home: Path, smtp_server: SmtpServer
) -> None:
    seed(home, due("A", user_email="åsa@exempel.se"), due("C"))
    result = invoke(["notices", "send", *AS_OF, "--json"], extra_env=smtp_server.env)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    data = json_out(result)
    assert (data["sent"], data["failed"]) == (1, 1)
    (failed,) = [n for n in data["notices"] if n["status"] == "failed"]
    assert failed["serial"] == "A" and "SMTPUTF8" in failed["error"]
    assert smtp_server.recipients() == ["c@example.com"]


def test_the_outbox_writes_addresses_beyond_ascii(
    invoke: Invoke, home: Path, tmp_path: Path
) -> None:
    seed(home, due("A", user_email="åsa@exempel.se", user_name="Åsa Ek"))
    outbox = tmp_path / "outbox"
    result = invoke(["notices", "send", *AS_OF, "--outbox", str(outbox)])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    (written,) = outbox.glob("*.eml")
    assert "<åsa@exempel.se>" in written.read_text(encoding="utf-8")


# ---- a device that changes hands -----------------------------------------------------------


def test_an_import_that_gives_a_device_a_new_user_gets_the_new_user_their_notice(
    invoke: Invoke, home: Path, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    first = tmp_path / "first.csv"
    first.write_text(
        "Serial,Email,Full Name,Renewal Date\nPF1,anna@example.com,Anna,2026-11-20\n",
        encoding="utf-8",
    )
    moved = tmp_path / "moved.csv"
    moved.write_text(
        "Serial,Email,Full Name,Renewal Date\nPF1,bert@example.com,Bert,2026-11-20\n",
        encoding="utf-8",
    )
    assert invoke(["import", str(first)]).exit_code == 0
    assert invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env).exit_code == 0
    imported = invoke(["import", str(moved)])
    assert imported.exit_code == 0, imported.output

    result = invoke(["notices", "send", *AS_OF, "--json"], extra_env=smtp_server.env)

    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert smtp_server.recipients() == ["anna@example.com", "bert@example.com"]
    assert smtp_server.to("bert@example.com")[0].text().startswith("Hi Bert,")
    listed = json_out(invoke(["notices", "list", "--json"]))
    assert [(n["recipient"], n["status"]) for n in listed] == [
        ("anna@example.com", "sent"),
        ("bert@example.com", "sent"),
    ]
    again = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert again.stdout.strip() == "No notices due."


# ---- a refusal that is the server's, not the recipient's -----------------------------------


def _ledger_states(invoke: Invoke) -> list[tuple[str, str, int]]:
    listed = json_out(invoke(["notices", "list", "--json"]))
    return [(n["serial"], n["status"], n["attempts"]) for n in listed]


@pytest.mark.parametrize(
    ("server", "words"),
    [
        ({"rcpt_answer": "550 5.7.1 Relaying denied"}, "550 5.7.1 Relaying denied"),
        ({"data_answer": "554 5.7.1 Message refused by policy"}, "554 5.7.1 Message refused"),
        ({"mail_answer": "553 5.7.1 Sender address rejected"}, "553 5.7.1 Sender address"),
    ],
    ids=["every-rcpt", "data", "mail-from"],
)
def test_a_refusal_that_is_the_servers_exits_78_and_loses_nothing(
    invoke: Invoke,
    home: Path,
    smtp_factory: StartServer,
    smtp_server: SmtpServer,
    server: dict[str, str],
    words: str,
) -> None:
    refusing = smtp_factory(**server)
    seed(home, due("A"), due("B"), due("C"))

    result = invoke(["notices", "send", *AS_OF, "--json"], extra_env=refusing.env)

    assert result.exit_code == 78, result.output
    assert isinstance(result.exception, SystemExit)
    assert json_out(result)["failed"] == 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0]
    assert [status for _, status, _ in _ledger_states(invoke)] == ["pending"] * 3
    # Once the server is put right, the next run sends every one.
    fixed = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert fixed.exit_code == 0, fixed.output
    assert sorted(smtp_server.recipients()) == [f"{s}@example.com" for s in "abc"]


def test_a_single_recipient_refused_at_rcpt_fails_with_exit_1(
    invoke: Invoke, home: Path, smtp_factory: StartServer
) -> None:
    server = smtp_factory(rcpt_answer="550 5.7.1 Relaying denied")
    seed(home, due("A"))
    result = invoke(["notices", "send", *AS_OF], extra_env=server.env)
    assert result.exit_code == 1, result.output
    assert _ledger_states(invoke) == [("A", "failed", 1)]


def test_recipients_that_each_do_not_exist_fail_one_by_one(
    invoke: Invoke, home: Path, smtp_factory: StartServer
) -> None:
    server = smtp_factory(refuse={"a@example.com", "b@example.com"})
    seed(home, due("A"), due("B"))
    result = invoke(["notices", "send", *AS_OF], extra_env=server.env)
    assert result.exit_code == 1, result.output
    assert [status for _, status, _ in _ledger_states(invoke)] == ["failed", "failed"]


def test_a_recipient_refused_before_the_server_accepts_another_fails_alone(
    invoke: Invoke, home: Path, smtp_factory: StartServer
) -> None:
    server = smtp_factory(refuse={"gone@example.com"})
    seed(home, due("A", user_email="gone@example.com"), due("B"))
    result = invoke(["notices", "send", *AS_OF], extra_env=server.env)
    assert result.exit_code == 1, result.output
    assert _ledger_states(invoke) == [("A", "failed", 1), ("B", "sent", 1)]
    assert server.recipients() == ["b@example.com"]


# ---- notices retry -------------------------------------------------------------------------


def _fail_all(invoke: Invoke, home: Path, server: SmtpServer) -> None:
    """A and B refused one by one (no such user): both failed."""
    seed(home, due("A"), due("B"), due("C"))
    with Store.open(home / "velory.db") as store:
        device = store.device("C")
        assert device is not None
        with store.transaction():
            store.queue_notice(
                device.id,
                kind="personal_data",
                renewal_date="2026-11-20",
                recipient="gone@example.com",
                at="2026-11-01T00:00:00Z",
            )
    invoke(["notices", "send", *AS_OF], extra_env=server.env)


def test_retry_puts_failed_notices_back_for_the_next_run(
    invoke: Invoke, home: Path, smtp_factory: StartServer, smtp_server: SmtpServer
) -> None:
    refusing = smtp_factory(refuse={"a@example.com", "b@example.com", "gone@example.com"})
    _fail_all(invoke, home, refusing)
    assert ("A", "failed", 1) in _ledger_states(invoke)

    result = invoke(["notices", "retry", "a"])

    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "1 notice of 1 device back to pending" in result.stderr
    assert "A" in result.stdout
    states = _ledger_states(invoke)
    assert ("A", "pending", 1) in states and ("B", "failed", 1) in states
    listed = json_out(invoke(["notices", "list", "--json"]))
    assert "550" in next(n["error"] for n in listed if n["serial"] == "A")  # history kept
    sent = invoke(["notices", "send", *AS_OF], extra_env=smtp_server.env)
    assert sent.exit_code == 0, sent.output
    assert smtp_server.recipients() == ["a@example.com"]
    assert ("A", "sent", 2) in _ledger_states(invoke)


def test_retry_all_in_json_takes_every_failed_notice_personal_data_too(
    invoke: Invoke, home: Path, smtp_factory: StartServer
) -> None:
    refusing = smtp_factory(refuse={"a@example.com", "b@example.com", "gone@example.com"})
    _fail_all(invoke, home, refusing)

    result = invoke(["notices", "retry", "--all", "--json"])

    assert result.exit_code == 0, result.output
    assert result.exception is None
    data = json_out(result)
    assert (data["action"], data["succeeded"], data["unchanged"], data["failed"]) == (
        "notices retry",
        3,
        0,
        0,
    )
    assert data["retried"] == 3
    assert sorted((n["serial"], n["kind"]) for n in data["notices"]) == [
        ("A", "renewal"),
        ("B", "renewal"),
        ("C", "personal_data"),
    ]
    assert {r["serial"]: r["ok"] for r in data["results"]} == {"A": True, "B": True, "C": True}
    assert [status for _, status, _ in _ledger_states(invoke)].count("failed") == 0


def test_retry_reports_unknown_serials_and_devices_without_a_failed_notice(
    invoke: Invoke, home: Path, smtp_factory: StartServer
) -> None:
    _fail_all(invoke, home, smtp_factory(refuse={"a@example.com"}))
    result = invoke(["notices", "retry", "A", "C", "NOPE", "--json"])
    assert result.exit_code == 1
    data = json_out(result)
    assert [(r["serial"], r["ok"], r["changed"]) for r in data["results"]] == [
        ("A", True, True),
        ("C", True, False),
        ("NOPE", False, False),
    ]
    assert "error: NOPE: no such device" in result.stderr


@pytest.mark.parametrize("args", [[], ["A", "--all"]])
def test_retry_needs_serials_or_all(invoke: Invoke, home: Path, args: list[str]) -> None:
    seed(home, due("A"))
    result = invoke(["notices", "retry", *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--all" in result.stderr


def test_an_untrusted_certificate_exits_78_and_keeps_the_notices(
    invoke: Invoke, home: Path, tmp_path: Path, smtp_factory: StartServer
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    server = smtp_factory(tls_cert=make_test_certificate(tmp_path), implicit_tls=True)
    seed(home, due("A"))
    env = {**server.env, "VELORY_SMTP_TLS": "ssl"}
    result = invoke(["notices", "send", *AS_OF, "--quiet"], extra_env=env)
    assert result.exit_code == 78, result.output
    assert isinstance(result.exception, SystemExit)
    assert "cannot be trusted" in result.stderr
    assert _ledger_states(invoke) == [("A", "pending", 0)]
