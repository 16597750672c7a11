"""Rendering: the width of tables, and streams that are closed altogether."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

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


def test_a_pipe_gets_the_wide_width_and_columns_wins(
    monkeypatch: pytest.MonkeyPatch, terminal_of_93_columns: None
) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert render.console().width == PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "120")
    assert render.console().width == 120
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert render.console().width == 120


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
