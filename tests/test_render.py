"""Rendering: the width of tables, and streams that are closed altogether."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import Run, json_out
from velory_cli import render
from velory_cli.render import PIPE_WIDTH, Column


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal_of_93_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=0: os.terminal_size((93, 30)))


def test_no_color_at_a_terminal_keeps_the_terminals_width(
    monkeypatch: pytest.MonkeyPatch, terminal_of_93_columns: None
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stdout", Terminal())
    out = render.console()
    assert out.width == 93
    assert out.no_color


def test_a_pipe_is_never_cut_to_a_width_and_a_terminal_keeps_columns(
    monkeypatch: pytest.MonkeyPatch, terminal_of_93_columns: None
) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert render.console().width == PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "120")
    assert render.console().width == PIPE_WIDTH  # COLUMNS is a terminal's width, not a pipe's
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert render.console().width == 120


# ---- fitting a table to a terminal ---------------------------------------------------------

FLEET_COLUMNS = [
    Column("Serial", "serial", no_wrap=True, need=1),
    Column("Model", "model", need=4),
    Column("User", "user_name", need=3),
    Column("Email", "user_email", no_wrap=True, need=1),
    Column("Distributor", "distributor", need=5),
    Column("Renewal", "renewal_date", no_wrap=True, need=1),
    Column("Status", "status", need=2),
]
FLEET = [
    {
        "serial": "PF1DQCJU2K",
        "model": 'Apple MacBook Pro 14" M3',
        "user_name": "Åsa Lindström",
        "user_email": "asa.lindstrom@nordlys.se",
        "distributor": "Dustin Sverige AB (own process)",
        "renewal_date": "2026-12-02",
        "status": "Active – pending return",
    },
    {
        "serial": "F2LFV97X4UE",
        "model": "Apple iPhone 15",
        "user_name": "Søren Kjær",
        "user_email": "soren.kjaer@nordlys.se",
        "distributor": "Atea",
        "renewal_date": "2027-01-05",
        "status": "Active",
    },
]


def drawn(width: int, rows: list[dict[str, str]] = FLEET) -> str:
    from rich.console import Console

    out = Console(file=io.StringIO(), width=width, color_system=None)
    render.draw_table(out, FLEET_COLUMNS, rows, title="Company assets")
    shown: str = out.file.getvalue()  # type: ignore[attr-defined]
    return shown


def cells_of(row: dict[str, str]) -> list[str]:
    return [value for key, value in row.items() if key in {c.key for c in FLEET_COLUMNS}]


def test_the_needed_columns_come_first_and_the_rest_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cells = [[render.cell_text(c, row) for c in FLEET_COLUMNS] for row in FLEET]
    layout = render.plan_layout(FLEET_COLUMNS, cells, 60)
    assert not layout.blocks
    shown = [FLEET_COLUMNS[i].header for i in layout.shown]
    assert shown[:1] == ["Serial"] and {"Email", "Renewal"} <= set(shown)
    assert sum(layout.widths.values()) + 2 * (len(shown) - 1) <= 60
    text = drawn(60)
    names = [FLEET_COLUMNS[i].header for i in layout.left_out]
    assert f"not shown: {', '.join(names)}" in " ".join(text.split())
    wide = render.plan_layout(FLEET_COLUMNS, cells, 200)
    assert wide.left_out == []


def test_a_column_empty_in_every_row_gives_way_to_one_with_values() -> None:
    columns = [
        render.Column("Serial", "serial", no_wrap=True, need=1),
        render.Column("Replacement", "replacement", no_wrap=True, need=3),
        render.Column("Notice", "notice", no_wrap=True, need=4),
    ]
    rows = [{"serial": f"PF{n}K2X9Z", "replacement": None, "notice": "sent"} for n in range(3)]
    cells = [[render.cell_text(c, row) for c in columns] for row in rows]
    # Room for the serial and either of the others, not both: the one with something in it.
    room = len("PF0K2X9Z") + 2 + len("Replacement")
    layout = render.plan_layout(columns, cells, room)
    assert [columns[i].header for i in layout.shown] == ["Serial", "Notice"]
    rows[1]["replacement"] = "NEW1"
    cells = [[render.cell_text(c, row) for c in columns] for row in rows]
    layout = render.plan_layout(columns, cells, room)
    assert [columns[i].header for i in layout.shown] == ["Serial", "Replacement"]


@pytest.mark.parametrize("width", [60, 72, 80, 100, 120, 160])
def test_every_cell_shown_is_whole_and_no_line_is_wider_than_the_terminal(width: int) -> None:
    text = drawn(width)
    assert max(len(line) for line in text.splitlines()) <= width
    flat = " ".join(text.split())
    header = text.splitlines()[1]
    left_out = flat.split("not shown: ")[1] if "not shown: " in flat else ""
    for column in FLEET_COLUMNS:
        if column.header in header.split():
            for row in FLEET:
                value = row[column.key]
                # Whole: on one line when it never wraps, else word by word, in order.
                assert (value in text) if column.no_wrap else (" ".join(value.split()) in flat)
        else:
            assert column.header in left_out, column.header
    for key in ("serial", "user_email", "renewal_date"):
        assert all(row[key] in text for row in FLEET)


def test_a_terminal_too_narrow_for_the_needed_columns_gets_one_record_per_block() -> None:
    text = drawn(40)
    assert "not shown" not in text
    blocks = text.split("\n\n")
    assert len(blocks) == 2
    for block, row in zip(blocks, FLEET, strict=True):
        assert row["serial"] in block and row["user_email"] in block
        assert " ".join(row["distributor"].split()) in " ".join(block.split())
    assert max(len(line) for line in text.splitlines()) <= 40


def test_a_pipe_gets_every_column_and_every_cell_whole(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [*FLEET, {**FLEET[0], "serial": "LONG" + "X" * 60, "user_name": "Line\nbreak"}]
    render.table(FLEET_COLUMNS, iter(rows), title="Company assets")
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "Company assets"
    assert lines[1].split() == [c.header for c in FLEET_COLUMNS]
    assert len(lines) == 3 + len(rows)  # title, header, rule: one line a row
    for line, row in zip(lines[3:], rows, strict=True):
        for value in cells_of(row):
            assert value.replace("\n", "\u240a") in line
    assert "not shown" not in text and "more" not in text


def test_a_pipe_streams_rows_as_they_come(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are written a chunk at a time, never all held: a generator that would run out of
    memory if collected is fine, and a wider cell later widens the columns from there on."""
    written_before_the_last_chunk: list[int] = []

    def rows() -> Iterator[dict[str, str]]:
        for number in range(render.PIPE_CHUNK * 3):
            if number == render.PIPE_CHUNK * 2:
                # The first two chunks are out before the third is read from the store.
                written_before_the_last_chunk.append(len(pipe.getvalue().splitlines()))
            serial = "S" * 30 if number == render.PIPE_CHUNK * 2 else f"S{number}"
            yield {"serial": serial, "user_email": "a@x.se", "renewal_date": "2026-12-01"}

    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stdout", pipe)
    render.table(FLEET_COLUMNS[:1] + FLEET_COLUMNS[3:4], rows())
    lines = pipe.getvalue().splitlines()
    assert written_before_the_last_chunk == [2 + render.PIPE_CHUNK * 2]
    assert len(lines) == 2 + render.PIPE_CHUNK * 3
    # The earlier rows keep the widths they were written with; from the wide cell on, wider.
    assert lines[2] == "S0".ljust(len("Serial")) + "  a@x.se"
    assert lines[2 + render.PIPE_CHUNK * 2] == "S" * 30 + "  a@x.se"


def test_a_listing_at_a_terminal_stops_at_the_limit_and_says_how_many_more(
    monkeypatch: pytest.MonkeyPatch, terminal_of_93_columns: None
) -> None:
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    rows = [{"serial": f"S{n:03}", "user_email": "a@x.se"} for n in range(205)]
    columns = [FLEET_COLUMNS[0], FLEET_COLUMNS[3]]
    render.table(columns, rows, noun="device")
    text = screen.getvalue()
    assert "S199" in text and "S200" not in text
    assert "… and 5 more devices: --all shows them all, --json or --csv gives every row" in text
    screen.seek(0)
    screen.truncate()
    render.table(columns, rows, limit=204, noun="device")
    assert "… and 1 more device:" in screen.getvalue()
    screen.seek(0)
    screen.truncate()
    render.table(columns, rows, all_rows=True, noun="device")
    assert "S204" in screen.getvalue() and "more" not in screen.getvalue()


def test_closed_stdout_and_stderr_write_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """`velory ... >&- 2>&-`: Python's sys.stdout and sys.stderr are None."""
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    rows = [{"serial": "A1", "count": 2}]
    render.emit_json(rows)
    render.emit_csv(rows, ["serial", "count"])
    render.table([Column("Serial", "serial")], rows, title="Devices")
    render.key_values([("Serial", "A1")], title="Device A1")
    render.bar_chart([("2026-06", 2)], title="Renewals per month")
    render.heading("Imported")
    render.line("done")
    render.info("a message")
    render.warn("a warning")
    render.error("an error")
    with render.progress_bar(10, "Importing") as update:
        update(5)


def test_titles_and_captions_are_text_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    render.table(
        [Column("[b]Serial", "serial")],
        [{"serial": "[/x]"}],
        title="Device [/x]",
        caption="[blink]Z",
    )
    render.key_values([("[i]Label", "[/]" + " " * 40 + ".")], title="Hardware of [/i]ann@x.se")
    shown = capsys.readouterr().out
    for text in ("Device [/x]", "[blink]Z", "[b]Serial", "[/x]", "Hardware of [/i]ann@x.se"):
        assert text in shown


@pytest.mark.subprocess
def test_a_listing_with_stdout_closed_altogether_ends_normally(run: Run, empty_store: Path) -> None:
    result = run(["devices", "--json"], closed=[1])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json_out(run(["devices", "--json"])) == []


_JSON_TEXT = st.text(
    alphabet=st.sampled_from(["a", "Å", "ß", " ", "\t", "\n", "\r", '"', "\\", "\u200b", "é"]),
    max_size=12,
)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _JSON_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_JSON_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_JSON_VALUES, max_size=6))
@example([])
@example([{"notes": [{"text": "line one\nline two"}]}, {}, [], "  x  ", {"a\nb": []}])
def test_a_streamed_json_array_is_the_text_of_the_whole_list(items: list[Any]) -> None:
    whole, streamed = io.StringIO(), io.StringIO()
    render.emit_json(items, whole)
    assert render.emit_json_array(iter(items), streamed) == len(items)
    assert streamed.getvalue() == whole.getvalue()
    assert json.loads(streamed.getvalue()) == items
