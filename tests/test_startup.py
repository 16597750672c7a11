"""Start-up stays fast: the commands' modules import no heavy library until they need it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import velory_command

HEAVY = ("rich", "sqlite_utils", "dateutil", "smtplib", "email")


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
    for name in ("rich", "sqlite_utils", "dateutil", "smtplib"):
        assert not any(f"import '{name}'" in line for line in imports), name


def test_python_dash_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "velory_cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("velory ")
