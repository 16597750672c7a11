"""Start-up stays fast: the commands' modules import no heavy library until they need it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import velory_command

HEAVY = ("rich", "sqlite_utils", "dateutil", "smtplib", "email", "python_calamine", "xlsxwriter")


def imported_modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_importing_the_app_loads_no_heavy_module() -> None:
    loaded = imported_modules("import velory_cli.cli")
    assert not [name for name in loaded if name.split(".")[0] in HEAVY or name in HEAVY]


@pytest.mark.subprocess
def test_version_is_printed_without_heavy_imports() -> None:
    result = subprocess.run(
        [*velory_command(), "--version"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONVERBOSE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("velory ")
    imports = [line for line in result.stderr.splitlines() if line.startswith("import ")]
    assert imports, "PYTHONVERBOSE should list the imports"
    for name in ("rich", "sqlite_utils", "dateutil", "smtplib", "python_calamine", "xlsxwriter"):
        assert not any(f"import '{name}'" in line for line in imports), name


def test_python_dash_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "velory_cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("velory ")


def test_version_and_help_build_no_command_and_open_no_store() -> None:
    for flag in ("--version", "--help"):
        code = (
            "import sys\n"
            f"sys.argv = ['velory', '{flag}']\n"
            "from velory_cli import cli\n"
            "try:\n"
            "    cli.main()\n"
            "except SystemExit:\n"
            "    pass\n"
        )
        loaded = imported_modules(code)
        assert not [name for name in loaded if name.startswith("velory_cli.commands")], flag
        assert "sqlite3" not in loaded, flag


def test_the_command_table_is_the_commands_the_modules_register() -> None:
    """cli.COMMANDS lets --help list the commands without building them: it names every
    command, in the order Typer would list them, with the first paragraph of its help."""
    import typer

    from velory_cli import cli

    modules = dict.fromkeys(module for module, _ in cli.COMMANDS.values())
    built = {name: command for module in modules for name, command in cli._build(module).items()}
    assert set(built) == set(cli.COMMANDS)
    for name, (module, first_line) in cli.COMMANDS.items():
        assert name in cli._build(module), name
        assert (built[name].help or "").split("\n\n")[0] == first_line, name
    # Typer lists commands before groups, each in the order registered.
    groups = [name for name, command in built.items() if isinstance(command, typer.core.TyperGroup)]
    commands = [name for name in built if name not in groups]
    expected = [*sorted(commands, key=list(cli.COMMANDS).index), *groups]
    assert list(cli.COMMANDS) == expected


def test_help_lists_every_command_with_its_whole_summary() -> None:
    """The lazy root lists every command, in Typer's order, with its summary whole (wrapped
    onto more lines when long, never cut short with "...")."""
    import typer

    from velory_cli import cli

    lazy = typer.main.get_command(cli.app)
    assert isinstance(lazy, cli.VeloryGroup)
    context = typer.Context(lazy)
    formatter = context.make_formatter()
    lazy.format_commands(context, formatter)
    listing = formatter.getvalue()
    assert "..." not in listing
    flat = " ".join(listing.split())
    for name, (_, summary) in cli.COMMANDS.items():
        assert f"{name} {summary}" in flat, name
    names = [line.split()[0] for line in listing.splitlines()[1:] if line[2:3].strip()]
    assert names == list(cli.COMMANDS)
