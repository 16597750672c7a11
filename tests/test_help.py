"""--help teaches: placeholders that say what goes there, examples, the exit codes, completion."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import Invoke, velory_command
from tests.test_docs import command_paths
from velory_cli.cli import COMMANDS
from velory_cli.errors import MEANINGS, ExitCode

COMMAND_PATHS = command_paths()


@pytest.mark.parametrize("path", COMMAND_PATHS)
def test_every_command_has_placeholders_and_examples(invoke: Invoke, path: str) -> None:
    result = invoke([*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    text = result.stdout
    assert not re.search(r"<[a-z ]+>", text), text  # Click's own <str>, <path>, <int range>
    usage = text.splitlines()[0]
    assert "{" not in usage, usage
    assert "Examples:" in text
    examples = text.split("Examples:", 1)[1]
    assert f"velory {path}" in examples


def test_placeholders_name_what_goes_there(invoke: Invoke) -> None:
    def usage_and_options(*args: str) -> str:
        return invoke([*args, "--help"]).stdout

    assert "Usage: velory db backup [OPTIONS] FILE" in usage_and_options("db", "backup")
    assert "Usage: velory show [OPTIONS] SERIAL" in usage_and_options("show")
    assert "Usage: velory hardware [OPTIONS] EMAIL" in usage_and_options("hardware")
    assert "[SERIAL...]" in usage_and_options("release")
    renewals = usage_and_options("renewals")
    for option in ("--as-of DATE", "--within N", "--user EMAIL", "--limit N", "--all"):
        assert option in renewals
    assert "--model TEXT" in usage_and_options("order")
    assert "--file FILE" in usage_and_options("release")


def test_the_root_help_has_whole_summaries_and_the_exit_codes(invoke: Invoke) -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    text = result.stdout
    flat = " ".join(text.split())
    assert "..." not in text.split("Commands:", 1)[1]
    for summary in (summary for _, summary in COMMANDS.values()):
        assert summary in flat
    assert "Exit codes:" in text
    for code in ExitCode:
        assert f"{int(code)} {MEANINGS[code]}" in flat
    assert "--install-completion" in text


@pytest.mark.subprocess
def test_shell_completion_completes_commands_and_options() -> None:
    env = {**os.environ, "_VELORY_COMPLETE": "complete_bash", "COMP_CWORD": "1"}
    commands = subprocess.run(
        velory_command(), env={**env, "COMP_WORDS": "velory ren"}, capture_output=True, text=True
    )
    assert commands.returncode == 0, commands.stderr
    assert commands.stdout.split() == ["renewals"]
    options = subprocess.run(
        velory_command(),
        env={**env, "COMP_WORDS": "velory renewals --as", "COMP_CWORD": "2"},
        capture_output=True,
        text=True,
    )
    assert options.stdout.split() == ["--as-of"]
