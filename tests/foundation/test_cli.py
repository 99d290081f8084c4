"""The `manas360` command's answers to an operator's mistakes: the real command in a
subprocess, one line on stderr, the exit status the contract gives (1: a store, the
database's existence or schema; 2: configuration or usage), never a traceback."""

from __future__ import annotations

import asyncio
import contextvars
import os
import pty
import signal
import socket
import subprocess
import sys

import asyncpg
import pytest

from manas360.db import create_database_if_missing, migrate
from manas360.settings import load_settings
from tests.fixtures.environment import drop_database, production_environ


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "manas360.cli", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(result: subprocess.CompletedProcess) -> str:
    """stderr, which must be exactly one line and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
async def databases(environ):
    """Three DATABASE_URLs beside the run's own: one that does not exist, one that exists
    and was never migrated, one migrated but a migration short (aerich's record of the last
    one removed: the state of a database behind the code)."""
    missing = environ["DATABASE_URL"] + "_nosuch"
    bare = load_settings({**environ, "DATABASE_URL": environ["DATABASE_URL"] + "_bare"})
    behind = load_settings({**environ, "DATABASE_URL": environ["DATABASE_URL"] + "_behind"})
    await create_database_if_missing(bare)
    # aerich leaves its Tortoise context in the task that ran it: a context of its own.
    applied = await asyncio.create_task(migrate(behind), context=contextvars.Context())
    conn = await asyncpg.connect(**behind.database.connect_kwargs())
    try:
        await conn.execute("DELETE FROM aerich WHERE version = $1", applied[-1])
    finally:
        await conn.close()
    yield {
        "missing": missing,
        "bare": bare.database_url,
        "behind": behind.database_url,
        "last": applied[-1].removesuffix(".py"),
    }
    for url in (bare.database_url, behind.database_url):
        await drop_database(url)


@pytest.mark.parametrize(
    ("database", "command", "fragments"),
    [
        ("bare", ["seed"], ["is not migrated (no migration applied): run `manas360 migrate`"]),
        ("bare", ["warm-cache"], ["is not migrated (no migration applied): run `manas360 migrate`"]),
        ("bare", ["maintenance", "cleanup-tokens"], ["is not migrated (no migration applied): run `manas360 migrate`"]),
        ("bare", ["maintenance", "all"], ["is not migrated (no migration applied): run `manas360 migrate`"]),
        ("behind", ["warm-cache"], ["is not migrated (1 migration(s) pending, first {last})", "`manas360 migrate`"]),
        ("behind", ["maintenance", "refresh-views"], ["1 migration(s) pending", "`manas360 migrate`"]),
        ("missing", ["seed"], ["database '{name}' does not exist", "`manas360 migrate` creates it"]),
        ("missing", ["warm-cache", "--active-days", "3"], ["database '{name}' does not exist", "manas360 migrate"]),
        ("missing", ["maintenance", "all"], ["database '{name}' does not exist", "manas360 migrate"]),
    ],
)
def test_a_missing_or_unmigrated_database_is_one_line_and_exit_1(environ, databases, database, command, fragments):
    url = databases[database]
    result = _cli(*command, env={**environ, "DATABASE_URL": url})
    line = _one_line(result)
    assert result.returncode == 1, result.stderr
    for fragment in fragments:
        assert fragment.format(name=url.rpartition("/")[2], last=databases["last"]) in line
    assert "relation" not in line and "unavailable" not in line


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"ENV": "production"}, "database '{name}' does not exist on PostgreSQL at 127.0.0.1"),
        ({"ENV": "development"}, "database '{name}' does not exist on PostgreSQL at 127.0.0.1"),
    ],
)
def test_serve_names_a_missing_database(environ, databases, env, fragment):
    """Production refuses to start (exit 1, one line); development says the same and serves
    anyway, as it does for any store (stopped here once the warning is out)."""
    url = databases["missing"]
    name = url.rpartition("/")[2]
    if env["ENV"] == "production":
        environment = production_environ(
            DATABASE_URL=url,
            REDIS_URL=environ["REDIS_URL"],
            REDIS_PREFIX=environ["REDIS_PREFIX"],
            PORT=str(_free_port()),
        )
        result = _cli("serve", env=environment)
        assert result.returncode == 1, result.stderr
        assert fragment.format(name=name) in _one_line(result)
        return
    environment = {**environ, **env, "DATABASE_URL": url, "PORT": str(_free_port())}
    process = subprocess.Popen(
        [sys.executable, "-m", "manas360.cli", "serve", "--workers", "1"],
        env={"PATH": "/usr/bin:/bin", **environment, "LOG_LEVEL": "INFO"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # the warning comes before "serving on" (EOF: it died)
            lines.append(line)
            if "serving on" in line:
                break
        warnings = [line for line in lines if "serving anyway" in line]
        assert len(warnings) == 1, "".join(lines)
        assert fragment.format(name=name) in warnings[0] and "cannot reach" not in warnings[0]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(environ):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("serve", "--workers", "1", env={**environ, "PORT": str(port)})
    line = _one_line(result)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in line and "Address already in use" in line
    assert "serving on" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (["seed", "--users", "abc"], "argument --users: expects a whole number >= 0, not 'abc'"),
        (["seed", "--users", "-3"], "argument --users: expects a whole number >= 0, not -3"),
        (["seed", "--batch-size", "0"], "argument --batch-size: expects a whole number >= 1, not 0"),
        (["maintenance", "archive-audit", "--days", "-1"], "argument --days: expects a whole number >= 0, not -1"),
        (["maintenance", "all", "--mail-days", "soon"], "argument --mail-days: expects a whole number >= 0"),
        (["maintenance", "cleanup-tokens", "--batch-size", "x"], "argument --batch-size: expects a whole number >= 1"),
        (["warm-cache", "--active-days", "x"], "argument --active-days: expects a whole number >= 0, not 'x'"),
        (["warm-cache", "--batch-size", "0"], "argument --batch-size: expects a whole number >= 1, not 0"),
        (["serve", "--port", "70000"], "argument --port: expects a whole number 1..65535, not 70000"),
        (["serve", "--workers", "0"], "argument --workers: expects a whole number 1..256, not 0"),
        (["maintenance"], "required: <job>"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_a_usage_error_names_the_option_and_what_it_accepts_in_one_line_exit_2(command, fragment):
    result = _cli(*command, env={})
    line = _one_line(result)
    assert result.returncode == 2, result.stderr
    assert fragment in line and line.startswith("manas360")
    assert "_count" not in line and "_positive" not in line and "usage:" not in line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_on_a_terminal_prints_no_sanic_production_mode_notice(environ, database):
    """On a terminal Sanic told the operator it "is running in PRODUCTION mode" and to use
    --debug or --dev, options `manas360 serve` does not have. Run under a pseudo-terminal
    (Sanic only says it on one) until the service says it serves."""
    controller, terminal = pty.openpty()
    env = {
        "PATH": "/usr/bin:/bin",
        **environ,
        "ENV": "development",
        "LOG_LEVEL": "INFO",
        "LOG_JSON": "auto",
        "PORT": str(_free_port()),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "manas360.cli", "serve", "--workers", "1"],
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    output = b""
    try:
        while b"serving on" not in output:
            try:
                chunk = os.read(controller, 65536)  # blocks until the process writes; EOF (OSError) when it ends
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        os.close(controller)
    text = output.decode(errors="replace")
    assert "serving on" in text, text
    assert not text.lstrip().startswith("{"), "not a terminal: the logs were JSON lines"
    assert "PRODUCTION mode" not in text and "--debug" not in text and "--dev" not in text, text
