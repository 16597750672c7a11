"""The docs cannot drift: every command is in the README, the Quick start is what CI runs."""

from __future__ import annotations

import re
from typing import Any

import typer

from tests.conftest import REPO
from velory_cli.cli import app

README = (REPO / "README.md").read_text(encoding="utf-8")


def command_paths() -> list[str]:
    def walk(command: Any, prefix: str) -> list[str]:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            return [prefix]
        paths = []
        for name, sub in subcommands.items():
            paths += walk(sub, f"{prefix} {name}".strip())
        return paths

    return walk(typer.main.get_command(app), "")


def test_every_command_is_in_the_readme() -> None:
    paths = command_paths()
    assert "import" in paths and "devices" in paths
    missing = [path for path in paths if f"velory {path}" not in README]
    assert missing == []


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    commands = [line for block in blocks for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("velory demo")
    test_command = commands[1].split("&&")[-1].strip()
    assert test_command == ".venv/bin/python -m pytest -q"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert '"$venv/bin/python" -m pytest -q' in ci


def test_every_exit_code_is_documented() -> None:
    from velory_cli.errors import ExitCode

    for code in ExitCode:
        assert f"| {int(code)} |" in README, code
