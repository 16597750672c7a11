"""Shared fixtures: a private app directory per test, the CLI runner, the installed command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from velory_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "sample_data"
# Real exports of other systems (Snipe-IT, MDMs), kept beside the repository rather than in it;
# VELORY_REALDATA points elsewhere.
REALDATA = Path(os.environ.get("VELORY_REALDATA", REPO.parent / "shared" / "realdata"))
SNIPE_IT = REALDATA / "snipe-it"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The app directory of this test (VELORY_HOME): config.toml and the default store."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def empty_store(home: Path) -> Path:
    """The test's default store, there and empty, as ``velory db init`` leaves it: every command
    but import and db init needs one to be there."""
    from velory_cli.store import Store

    path = home / "velory.db"
    Store.open(path).close()
    return path


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """The environment a test's velory sees: its own app directory, no mail settings."""
    return {
        "VELORY_HOME": str(home),
        "VELORY_ACTOR": "tester",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


Invoke = Callable[..., Result]


@pytest.fixture
def invoke(env: dict[str, str]) -> Invoke:
    """Run velory in-process with CliRunner; a crash (not a clean exit) fails the test."""

    def run(
        args: Sequence[str],
        input: str | bytes | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> Result:
        clean = {key: None for key in os.environ if key.startswith("VELORY_")}
        runner = CliRunner(env={**clean, **env, **(extra_env or {})})
        result = runner.invoke(app, list(args), input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


def velory_command() -> list[str]:
    """The installed ``velory`` of this environment."""
    script = Path(sys.executable).parent / "velory"
    if script.exists():
        return [str(script)]
    found = shutil.which("velory")
    return [found] if found else [sys.executable, "-m", "velory_cli"]


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(env: dict[str, str], tmp_path: Path) -> Run:
    """Run the installed velory in a subprocess, with stdin closed unless input is given.
    ``closed``: file descriptors closed altogether in the child (0 for cron's ``<&-``, 1 for
    ``>&-``), where /dev/null would still be an open stream."""

    def call(
        args: Sequence[str],
        input: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 120,
        closed: Sequence[int] = (),
    ) -> subprocess.CompletedProcess[str]:
        base = {key: value for key, value in os.environ.items() if not key.startswith("VELORY_")}

        def close_fds() -> None:
            for fd in closed:
                os.close(fd)

        return subprocess.run(
            [*velory_command(), *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**base, **env, **(extra_env or {})},
            cwd=tmp_path,
            timeout=timeout,
            preexec_fn=close_fds if closed else None,
        )

    return call


def json_out(result: Result | subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a --json run printed on stdout."""
    return json.loads(result.stdout)


# ---- notices: a real SMTP server on 127.0.0.1 ----------------------------------------------


@pytest.fixture
def smtp_factory() -> Any:
    """Start SMTP servers with settings of the test's choosing (refusing, deferring, slow,
    STARTTLS with a login); every one is stopped when the test ends."""
    from tests.smtp_server import SmtpServer

    started: list[SmtpServer] = []

    def start(**settings: Any) -> SmtpServer:
        server = SmtpServer(**settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp_server(smtp_factory: Any) -> Any:
    """A plain SMTP server that accepts every mail; ``.env`` points velory at it."""
    return smtp_factory()
