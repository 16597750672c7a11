"""velory notices send as cron runs it: the installed command, a minimal environment, no
terminal, stdin closed, against a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import velory_command
from tests.factory import add_device
from tests.smtp_server import SmtpServer, free_port
from velory_cli.store import Store

pytestmark = pytest.mark.subprocess

StartServer = Callable[..., SmtpServer]


@pytest.fixture
def cron_home(tmp_path: Path) -> Path:
    """HOME of the cron job; velory's app directory is the default one below it."""
    path = tmp_path / "cronhome"
    path.mkdir()
    return path


def store_path(home: Path) -> Path:
    return home / ".config" / "velory" / "velory.db"


def seed(home: Path, devices: Mapping[str, Mapping[str, Any]]) -> None:
    with Store.open(store_path(home)) as store:
        for serial, fields in devices.items():
            add_device(store, serial, **fields)


def cron_env(home: Path, settings: Mapping[str, str]) -> dict[str, str]:
    """What cron gives a job: PATH=/usr/bin:/bin and HOME, plus the VELORY_* settings."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), **settings}


def cron(
    home: Path, args: list[str], settings: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*velory_command(), *args],
        env=cron_env(home, settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=home,
        timeout=timeout,
    )


def start_cron(home: Path, args: list[str], settings: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*velory_command(), *args],
        env=cron_env(home, settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home,
    )


def ledger(home: Path, settings: Mapping[str, str]) -> list[dict[str, Any]]:
    result = cron(home, ["notices", "list", "--json"], settings)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def send(as_of: str, *extra: str) -> list[str]:
    return ["notices", "send", "--as-of", as_of, *extra]


def many(count: int, renewal_date: str = "2026-11-20") -> dict[str, dict[str, Any]]:
    return {f"D{n:02d}": {"renewal_date": renewal_date} for n in range(count)}


def addresses(count: int) -> list[str]:
    return [f"d{n:02d}@example.com" for n in range(count)]


# ---- day by day ----------------------------------------------------------------------------


def test_each_due_device_gets_exactly_one_mail_on_the_day_it_becomes_due(
    cron_home: Path, smtp_server: SmtpServer
) -> None:
    seed(
        cron_home,
        {
            "DUE": {"renewal_date": "2026-12-01"},  # 30 days after 1 November
            "OVERDUE": {"renewal_date": "2026-10-25"},
            "NEXTDAY": {"renewal_date": "2026-12-02"},
            "DUSTIN": {"renewal_date": "2026-11-10", "distributor": "Dustin AB"},
            "STARTED": {"renewal_date": "2026-11-10", "status": "renewal_started"},
            "REMOVED": {"renewal_date": "2026-11-10", "status": "removed"},
            "STORE": {"renewal_date": "2026-11-10", "source": "store", "distributor": "Velory"},
        },
    )
    settings = smtp_server.env

    first = cron(cron_home, send("2026-11-01", "--quiet"), settings)
    assert first.returncode == 0, first.stderr
    assert (first.stdout, first.stderr) == ("", "")
    assert sorted(smtp_server.recipients()) == ["due@example.com", "overdue@example.com"]
    overdue = smtp_server.to("overdue@example.com")[0]
    assert "overdue by 7 days" in overdue.text()
    assert "overdue" in str(overdue.message["Subject"])
    assert "in 30 days" in smtp_server.to("due@example.com")[0].text()

    again = cron(cron_home, send("2026-11-01", "--quiet"), settings)
    assert again.returncode == 0, again.stderr
    assert len(smtp_server.messages()) == 2

    next_day = cron(cron_home, send("2026-11-02", "--quiet"), settings)
    assert next_day.returncode == 0, next_day.stderr
    assert Counter(smtp_server.recipients()) == Counter(
        {"due@example.com": 1, "overdue@example.com": 1, "nextday@example.com": 1}
    )


def test_cron_with_stdin_closed_altogether(cron_home: Path, smtp_server: SmtpServer) -> None:
    seed(cron_home, {"A": {"renewal_date": "2026-11-20"}})
    result = subprocess.run(
        [*velory_command(), *send("2026-11-01", "--quiet")],
        env=cron_env(cron_home, smtp_server.env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cron_home,
        timeout=120,
        preexec_fn=lambda: os.close(0),
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert smtp_server.recipients() == ["a@example.com"]


def test_cron_with_stdout_closed_altogether_sends_and_records(cron_home: Path) -> None:
    """`velory notices send --outbox DIR >&-`: the mails are written and recorded; the summary
    goes nowhere, and the run ends normally."""
    seed(cron_home, {"A": {"renewal_date": "2026-11-20"}})
    outbox = cron_home / "outbox"
    result = subprocess.run(
        [*velory_command(), *send("2026-11-01", "--outbox", str(outbox))],
        env=cron_env(cron_home, {"VELORY_MAIL_FROM": "it@example.com"}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cron_home,
        timeout=120,
        preexec_fn=lambda: os.close(1),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(list(outbox.glob("*.eml"))) == 1
    assert [row["status"] for row in ledger(cron_home, {})] == ["sent"]


def test_cron_without_mail_settings_exits_78_with_a_useful_message(cron_home: Path) -> None:
    seed(cron_home, {"A": {"renewal_date": "2026-11-20"}})
    result = cron(cron_home, send("2026-11-01", "--quiet"), {})
    assert result.returncode == 78
    assert result.stdout == ""
    assert "VELORY_SMTP_HOST" in result.stderr and "VELORY_MAIL_FROM" in result.stderr
    assert "Traceback" not in result.stderr
    assert ledger(cron_home, {}) == []


# ---- failures ------------------------------------------------------------------------------


def test_server_down_then_up_sends_every_notice_exactly_once(
    cron_home: Path, smtp_factory: StartServer
) -> None:
    seed(cron_home, many(4))
    port = free_port()
    settings = {**SmtpServer(port=port).env}

    down = cron(cron_home, send("2026-11-01", "--quiet"), settings)
    assert down.returncode == 75
    assert "cannot reach the mail server" in down.stderr
    assert {row["status"] for row in ledger(cron_home, settings)} == {"pending"}

    server = smtp_factory(port=port)
    up = cron(cron_home, send("2026-11-01", "--quiet"), settings)
    assert up.returncode == 0, up.stderr
    assert sorted(server.recipients()) == addresses(4)
    assert {row["status"] for row in ledger(cron_home, settings)} == {"sent"}


def test_one_recipient_refused_for_good_fails_alone(
    cron_home: Path, smtp_factory: StartServer
) -> None:
    seed(cron_home, many(3))
    server = smtp_factory(refuse={"d01@example.com"})

    result = cron(cron_home, send("2026-11-01", "--quiet"), server.env)

    assert result.returncode == 1
    assert "d01@example.com" in result.stderr and "550" in result.stderr
    assert sorted(server.recipients()) == ["d00@example.com", "d02@example.com"]
    states = {row["serial"]: row["status"] for row in ledger(cron_home, server.env)}
    assert states == {"D00": "sent", "D01": "failed", "D02": "sent"}


# ---- at most once --------------------------------------------------------------------------


@pytest.mark.faults
def test_three_runs_at_once_against_a_slow_server_send_nothing_twice(
    cron_home: Path, smtp_factory: StartServer
) -> None:
    seed(cron_home, many(9))
    server = smtp_factory(delay=0.3)

    runs = [start_cron(cron_home, send("2026-11-01", "--json"), server.env) for _ in range(3)]
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]

    assert all(code == 0 for code, _, _ in results), results
    assert max(Counter(server.recipients()).values()) == 1
    sent_by_runs = sum(json.loads(stdout)["sent"] for _, stdout, _ in results)

    later = cron(cron_home, send("2026-11-01", "--json"), server.env)
    assert later.returncode == 0, later.stderr
    assert sent_by_runs + json.loads(later.stdout)["sent"] == 9
    assert sorted(server.recipients()) == addresses(9)
    assert {row["status"] for row in ledger(cron_home, server.env)} == {"sent"}


@pytest.mark.faults
def test_a_run_killed_mid_batch_loses_nothing_and_resends_at_most_its_claim(
    cron_home: Path, smtp_factory: StartServer
) -> None:
    seed(cron_home, many(6))
    server = smtp_factory(delay=1.0)
    run = start_cron(cron_home, send("2026-11-01"), server.env)
    deadline = time.monotonic() + 60
    while not server.messages() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.messages(), "the first mail never arrived"
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    time.sleep(1.5)  # let the server finish the mail the killed run was sending
    before = server.messages()
    interrupted = [row for row in ledger(cron_home, server.env) if row["status"] == "sending"]
    assert len(interrupted) <= 1
    server.delay = 0.0

    after = cron(cron_home, send("2026-11-01"), server.env)

    assert after.returncode == 0, after.stderr
    counts = Counter(server.recipients())
    assert sorted(counts) == addresses(6)  # nothing lost
    twice = [address for address, count in counts.items() if count > 1]
    assert len(twice) <= 1 and max(counts.values()) <= 2
    if interrupted:
        assert "may get it twice" in after.stderr
        assert interrupted[0]["message_id"] in after.stderr
        resent = [m for m in server.messages()[len(before) :] if m.rcpt_tos[0] in twice]
        for mail in resent:
            assert mail.message_id == interrupted[0]["message_id"]
    if twice:
        ids = {m.message_id for m in server.to(twice[0])}
        assert len(ids) == 1  # the same mail, recognisably, not a second one
    assert {row["status"] for row in ledger(cron_home, server.env)} == {"sent"}
