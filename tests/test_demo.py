"""velory demo: the whole flow on the sample data, meaningful whatever day it runs."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_DATA, Invoke, Run
from velory_cli.commands.demo import wrap_mail
from velory_cli.demo import SAMPLE_ANCHOR, choose_cast, sample_inventory, write_shifted_sample
from velory_cli.store import Store


def test_the_packaged_sample_is_the_repository_sample() -> None:
    shipped = sample_inventory()
    assert shipped == (SAMPLE_DATA / "devices.csv").read_text(encoding="utf-8-sig")


@pytest.mark.parametrize(
    "today", [date(2026, 12, 1), date(2024, 2, 29), date(2031, 7, 15), date(2026, 1, 1)]
)
def test_the_shifted_sample_has_a_device_due_whatever_the_day(
    invoke: Invoke, tmp_path: Path, today: date
) -> None:
    target = tmp_path / "devices.csv"
    count = write_shifted_sample(target, today)
    assert count == 50
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw
    rows = list(csv.DictReader(target.open(encoding="utf-8-sig", newline=""), delimiter=";"))
    shift = today - SAMPLE_ANCHOR
    original = list(
        csv.DictReader(
            (SAMPLE_DATA / "devices.csv").open(encoding="utf-8-sig", newline=""), delimiter=";"
        )
    )
    first = next(row for row in original if row["Renewal Date"])
    moved = next(row for row in rows if row["Serial Number"] == first["Serial Number"])
    day, month, year = (int(part) for part in first["Renewal Date"].split("."))
    expected = date(year, month, day) + timedelta(days=shift.days)
    assert moved["Renewal Date"] == expected.strftime("%d.%m.%Y")
    imported = invoke(["--db", str(tmp_path / "velory.db"), "import", str(target)])
    assert imported.exit_code == 0, imported.output
    with Store.open(tmp_path / "velory.db") as store:
        cast = choose_cast(store.devices(), today)
    assert not cast.renewing.dustin
    assert cast.renewing.user_email
    assert cast.renewing.renewal_date is not None
    assert today.isoformat() <= cast.renewing.renewal_date <= (today + timedelta(30)).isoformat()
    assert cast.dustin is not None and cast.dustin.dustin


def test_demo_runs_the_whole_flow(invoke: Invoke, home: Path) -> None:
    result = invoke(["demo"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    out = result.stdout
    for step in range(1, 18):
        assert f"Step {step}." in out
    # A device changes hands, and a lost Dustin device is retired, each in a step of its own.
    assert "$ velory edit " in out and ": edited (Active)" in out
    assert "$ velory retire " in out and ": retired (Removed – lost)" in out
    assert "Sent 2 notices in 2 mails" in out  # the new user's notice, and the reminder
    assert "Action required" in out  # the renewal mail is shown
    assert "Dustin's own process" in out + result.stderr
    assert "Bought out" in out
    assert "Removed" in out
    # Every step found the store its first import created.
    assert "no store at" not in out + result.stderr
    assert "The first import creates the store" in out
    # The demo never touches the admin's own store.
    assert not (home / "velory.db").exists()


@pytest.mark.subprocess
def test_installed_demo_leaves_nothing_behind(run: Run, tmp_path: Path) -> None:
    result = run(["demo", "--keep"])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    kept = [line for line in result.stdout.splitlines() if "are kept in" in line]
    assert kept
    folder = Path(kept[0].rsplit(" in ", 1)[1].rstrip("."))
    assert (folder / "home" / "velory.db").exists()
    assert list((folder / "outbox").glob("*.eml"))
    import shutil

    shutil.rmtree(folder)


def test_a_mail_is_wrapped_at_words_and_keeps_its_lists() -> None:
    text = (
        "Hi Åsa,\n"
        "\n"
        "What happens next\n"
        "1. Soon after you start the process, the distributor of the device contacts you by email\n"
        "   about the options for the old device: return it or buy it out.\n"
        "2. Once the process is started, the Velory store opens.\n"
        "  - Dell Latitude 5440, serial number PF75EFT6ED\n"
        "    Renewal date: 2 December 2026 (today)\n"
    )
    wrapped = wrap_mail(text, 60)
    lines = wrapped.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert lines[:3] == ["Hi Åsa,", "", "What happens next"]
    assert lines[3].startswith("1. Soon after")
    assert all(line.startswith("   ") for line in lines[4:6])
    assert " ".join(wrapped.split()) == " ".join(text.split())  # every word, none broken
    assert "  - Dell Latitude 5440, serial number PF75EFT6ED" in lines
    assert "    Renewal date: 2 December 2026 (today)" in lines


@pytest.mark.subprocess
def test_the_demo_mail_reads_whole_at_80_columns(tmp_path: Path) -> None:
    import re
    from email import policy
    from email.parser import BytesParser

    from tests.terminal import run_in_terminal

    env = {"VELORY_HOME": str(tmp_path / "home"), "VELORY_ACTOR": "tester"}
    screen = run_in_terminal(["demo", "--keep"], columns=80, env=env, timeout=120)
    assert screen.returncode == 0, screen.text
    shown = screen.text.split("The one to ", 1)[1].split("Step 4.", 1)[0].splitlines()
    email, subject, body_lines = shown[0].rstrip(":"), shown[1], shown[2:]
    assert subject.startswith("Subject: Action required: ")
    assert max(len(line.rstrip()) for line in body_lines) <= 78
    kept = [line for line in screen.lines if "are kept in" in line]
    folder = Path(kept[0].rsplit(" in ", 1)[1].rstrip("."))
    mails = [
        BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        for path in (folder / "outbox").glob("*.eml")
    ]
    (mail,) = [m for m in mails if email in str(m["To"]) and f"Subject: {m['Subject']}" == subject]
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    text = str(body.get_content())
    # The mail as sent, every word of it, wrapped to the terminal and nothing else.
    assert " ".join(" ".join(body_lines).split()) == " ".join(text.split())
    # In the mail itself a paragraph is one line, naming the device's distributor.
    step = next(line for line in text.splitlines() if line.startswith("1. Soon after"))
    found = re.fullmatch(
        r"1\. Soon after you start the process, (.+) will contact you by email about the "
        r"options for the old device: return it or buy it out\. You settle that directly "
        r"with (.+)\.",
        step,
    )
    assert found is not None, step
    assert found.group(1) == found.group(2) != "the distributor"
    import shutil

    shutil.rmtree(folder)
