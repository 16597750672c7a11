"""velory as an admin sees it: the installed command under a real pseudo-terminal of 60, 80 and
120 columns, and the same listings written to a pipe."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Run, json_out
from tests.terminal import Screen, run_in_terminal
from velory_cli.demo import write_shifted_sample

pytestmark = pytest.mark.subprocess

AS_OF = date(2026, 12, 2)
RENEWAL_HEADERS = [
    "Days left",
    "Renewal",
    "Serial",
    "Model",
    "User",
    "Email",
    "Distributor",
    "Status",
    "Notice",
]
DEVICE_HEADERS = [
    "Serial",
    "Model",
    "Category",
    "User",
    "Email",
    "Distributor",
    "Source",
    "Renewal",
    "Status",
]


@pytest.fixture
def fleet(run: Run, tmp_path: Path) -> None:
    """The sample inventory, its renewals around AS_OF."""
    inventory = tmp_path / "devices.csv"
    write_shifted_sample(inventory, AS_OF)
    result = run(["import", str(inventory)])
    assert result.returncode == 0, result.stderr


def read_table(screen: Screen, headers: list[str]) -> tuple[list[dict[str, str]], list[str]]:
    """The table as a person reads it: each row's cells (a wrapped cell's lines joined, column
    by column), and the headers the "not shown" line names."""
    lines = screen.lines
    rule = next(n for n, line in enumerate(lines) if line.startswith("─"))
    head = lines[1:rule]  # a header may wrap at its words over two lines
    starts: dict[str, int] = {}
    for name in headers:
        first = name.split()[0]
        for line in head:
            found = re.search(rf"(?<!\S){re.escape(first)}(?!\S)", line)
            if found:
                starts[name] = min(starts.get(name, found.start()), found.start())
    shown = sorted(starts, key=starts.__getitem__)
    edges = [starts[name] for name in shown] + [10_000]
    body = []
    for line in lines[rule + 1 :]:
        if line.startswith("not shown: ") or line.startswith("…") or not line.strip():
            break
        body.append(line)
    rows: list[dict[str, str]] = []
    for line in body:
        # A right-justified first column may start left of its header: take from 0.
        cells = [line[(edges[i] if i else 0) : edges[i + 1]].strip() for i in range(len(shown))]
        if cells[shown.index("Serial")]:
            rows.append(dict(zip(shown, cells, strict=True)))
        else:
            for name, cell in zip(shown, cells, strict=True):
                if cell:
                    rows[-1][name] = f"{rows[-1][name]} {cell}".strip()
    flat = " ".join(screen.text.split())
    left_out = []
    if "not shown: " in flat:
        named = flat.split("not shown: ", 1)[1].split(" — ", 1)[0]
        left_out = named.split(", ")
    return rows, left_out


def check_cells_whole(
    screen: Screen, headers: list[str], rows: list[dict[str, Any]], keys: dict[str, str]
) -> list[str]:
    drawn, left_out = read_table(screen, headers)
    shown = list(drawn[0]) if drawn else []
    # Every column is drawn with its header or named as left out: none is drawn blank.
    assert sorted(shown + left_out) == sorted(headers), (shown, left_out)
    assert len(drawn) == len(rows)
    for row, cells in zip(rows, drawn, strict=True):
        for header in shown:
            if header in keys and row[keys[header]] is not None:
                assert cells[header] == " ".join(str(row[keys[header]]).split()), header
    return left_out


RENEWAL_KEYS = {
    "Days left": "days_left",
    "Renewal": "renewal_date",
    "Serial": "serial",
    "Model": "model",
    "User": "user_name",
    "Email": "user_email",
}


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_renewals_at_a_terminal_shows_every_cell_whole(
    run: Run, env: dict[str, str], fleet: None, columns: int
) -> None:
    args = ["renewals", "--as-of", AS_OF.isoformat()]
    rows = json_out(run([*args, "--json"]))
    assert len(rows) > 10
    screen = run_in_terminal(args, columns=columns, env=env)
    assert screen.returncode == 0, screen.text
    assert "Traceback" not in screen.text
    assert max(len(line.rstrip()) for line in screen.lines) <= columns
    left_out = check_cells_whole(screen, RENEWAL_HEADERS, rows, RENEWAL_KEYS)
    if columns < 120:
        assert left_out, "at this width some columns are left out, and said so"
        assert "a wider terminal, --json or --csv shows them" in " ".join(screen.text.split())
    for header in ("Serial", "Email", "Renewal", "Days left"):
        assert header not in left_out


@pytest.mark.parametrize("columns", [60, 80])
def test_a_users_devices_at_a_narrow_terminal(
    run: Run, env: dict[str, str], fleet: None, columns: int
) -> None:
    rows = json_out(run(["devices", "--json"]))
    email = rows[0]["user_email"]
    mine = [row for row in rows if row["user_email"] == email]
    screen = run_in_terminal(["devices", "--user", email], columns=columns, env=env)
    assert screen.returncode == 0, screen.text
    assert max(len(line.rstrip()) for line in screen.lines) <= columns
    keys = {"Serial": "serial", "Model": "model", "Email": "user_email", "Renewal": "renewal_date"}
    check_cells_whole(screen, DEVICE_HEADERS, mine, keys)


def test_a_terminal_narrower_than_the_needed_columns_shows_records_as_blocks(
    run: Run, env: dict[str, str], fleet: None
) -> None:
    rows = json_out(run(["renewals", "--as-of", AS_OF.isoformat(), "--json"]))
    screen = run_in_terminal(["renewals", "--as-of", AS_OF.isoformat()], columns=44, env=env)
    assert screen.returncode == 0, screen.text
    for row in rows:
        assert f"Serial     {row['serial']}" in screen.text or row["serial"] in screen.text
        assert row["user_email"] in screen.text
    assert "not shown" not in screen.text


def test_a_long_listing_at_a_terminal_stops_at_the_limit(
    run: Run, env: dict[str, str], fleet: None
) -> None:
    total = len(json_out(run(["devices", "--json"])))
    screen = run_in_terminal(["devices", "--limit", "5"], columns=100, env=env)
    assert screen.returncode == 0, screen.text
    flat = " ".join(screen.text.split())
    assert f"… and {total - 5} more devices: --all shows them all" in flat
    everything = run_in_terminal(["devices", "--all"], columns=100, env=env)
    assert "more devices" not in everything.text
    serials = [row["serial"] for row in json_out(run(["devices", "--json"]))]
    assert all(serial in everything.text for serial in serials)


def test_a_listing_to_a_pipe_has_every_column_and_every_cell_whole(run: Run, fleet: None) -> None:
    rows = json_out(run(["renewals", "--as-of", AS_OF.isoformat(), "--json"]))
    result = run(["renewals", "--as-of", AS_OF.isoformat()])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[1]
    assert all(name in header for name in RENEWAL_HEADERS)
    assert len(lines) == 3 + len(rows)
    for line, row in zip(lines[3:], rows, strict=True):
        for key in ("serial", "model", "user_name", "user_email", "renewal_date"):
            assert str(row[key]) in line, key
    assert "not shown" not in result.stdout + result.stderr


def test_the_release_prompt_names_what_it_releases_and_what_it_refuses(
    run: Run, env: dict[str, str], fleet: None
) -> None:
    rows = [
        row for row in json_out(run(["devices", "--json"])) if "Dustin" not in row["distributor"]
    ]
    ready, other = rows[0]["serial"], rows[1]["serial"]
    for step in (["start", ready], ["confirm-return", ready]):
        assert run(step).returncode == 0
    args = ["release", ready, other, "NOPE"]
    declined = run_in_terminal(args, columns=80, env=env, answer=("[y/N]", "n\n"))
    assert declined.returncode == 1, declined.text
    flat = " ".join(declined.text.split())
    assert f"error: will be refused: {other} is active" in flat
    assert "error: will be refused: NOPE: no such device" in flat
    assert f"{other} and NOPE will be refused (see above)." in flat
    assert f"Release {ready}? [y/N]" in flat
    assert "Nothing released." in flat
    assert json_out(run(["show", ready, "--json"]))["status"] == "return_confirmed"
    accepted = run_in_terminal(args, columns=80, env=env, answer=("[y/N]", "y\n"))
    assert accepted.returncode == 1  # two were refused
    assert "1 released, 0 unchanged, 2 refused." in accepted.text
    assert json_out(run(["show", ready, "--json"]))["status"] == "removed"


def test_retiring_a_device_the_mdm_still_lists_warns_once_at_a_terminal(
    run: Run, env: dict[str, str], fleet: None, tmp_path: Path
) -> None:
    from tests.mdm_exports import intune_csv

    serial = json_out(run(["devices", "--json"]))[0]["serial"]
    export = intune_csv(tmp_path / "intune.csv", [{"serial": serial}])
    assert run(["mdm", "import", str(export)]).returncode == 0
    args = ["retire", serial, "--outcome", "stolen", "--note", "Taken from a car"]
    screen = run_in_terminal(args, columns=80, env=env, answer=("[y/N]", "y\n"))
    assert screen.returncode == 0, screen.text
    flat = " ".join(screen.text.split())
    assert f"Retire {serial} as stolen? [y/N]" in flat
    # Said with the question, where it helps decide; not again after the answer.
    assert flat.count("wipe it or remove it from the MDM") == 1, screen.text
    assert json_out(run(["show", serial, "--json"]))["outcome"] == "stolen"


def test_the_release_prompt_counts_many_devices(run: Run, env: dict[str, str], fleet: None) -> None:
    rows = json_out(run(["devices", "--json"]))
    serials = [row["serial"] for row in rows if "Dustin" not in row["distributor"]][:8]
    for serial in serials:
        assert run(["start", serial]).returncode == 0
        assert run(["confirm-return", serial]).returncode == 0
    screen = run_in_terminal(["release", *serials], columns=80, env=env, answer=("[y/N]", "n\n"))
    flat = " ".join(screen.text.split())
    first = ", ".join(serials[:3])
    assert f"Release 8 devices ({first}, … and 5 more)? [y/N]" in flat
    assert screen.returncode == 1


def test_the_demo_reads_well_at_80_columns(env: dict[str, str]) -> None:
    from email import policy
    from email.parser import BytesParser

    screen = run_in_terminal(["demo", "--keep"], columns=80, env=env, timeout=120)
    assert screen.returncode == 0, screen.text
    assert "Traceback" not in screen.text
    assert max(len(line.rstrip()) for line in screen.lines) <= 80
    steps = re.split(r"\n(?=Step \d+\. )", screen.text)
    assert len(steps) == 18  # the introduction and 17 steps
    assert max(len(step.splitlines()) for step in steps) <= 40  # about a screenful each
    kept = next(line for line in screen.lines if "are kept in" in line)
    folder = Path(kept.rsplit(" in ", 1)[1].rstrip("."))
    recipient = re.search(r"The one to (\S+):", screen.text)
    subject = re.search(r"Subject: (.*)", screen.text)
    assert recipient is not None and subject is not None
    try:
        for path in (folder / "outbox").glob("*.eml"):
            message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            if recipient[1] in str(message["To"]) and message["Subject"] == subject[1]:
                body = message.get_body(preferencelist=("plain",))
                assert body is not None
                mail = body.get_content()
                break
        else:
            raise AssertionError("the mail shown is not in the outbox")
    finally:
        import shutil

        shutil.rmtree(folder)
    # The mail shown is the mail sent, word for word: wrapped at words, never inside one.
    shown = screen.text.split("Subject: ", 1)[1].split("\nStep 4. ", 1)[0]
    shown = shown.split("\n", 1)[1]  # after the subject line
    assert shown.split() == mail.split()


TODO_HEADERS = [
    "Action",
    "Since",
    "Serial",
    "Model",
    "User",
    "Email",
    "Status",
    "Replacement",
    "Notice",
]
TODO_KEYS = {
    "Action": "action",
    "Since": "since",
    "Serial": "serial",
    "Model": "model",
    "User": "user_name",
    "Email": "user_email",
    "Notice": "notice_status",
}


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_todo_with_users_to_chase_at_a_terminal(
    run: Run, env: dict[str, str], fleet: None, columns: int
) -> None:
    args = ["todo", "--as-of", AS_OF.isoformat()]
    rows = json_out(run([*args, "--json"]))
    assert {row["action"] for row in rows} == {"chase-user"}, rows
    screen = run_in_terminal(args, columns=columns, env=env)
    assert screen.returncode == 0, screen.text
    assert "Traceback" not in screen.text
    assert max(len(line.rstrip()) for line in screen.lines) <= columns
    left_out = check_cells_whole(screen, TODO_HEADERS, rows, TODO_KEYS)
    for header in ("Action", "Serial", "Email"):
        assert header not in left_out
