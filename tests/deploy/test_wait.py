"""`seed --wait` and `serve --wait` wait for a migration running beside them (compose and
Kubernetes may start them at once), and give up after S seconds with the usual one line."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.fixtures.environment import drop_database

pytestmark = pytest.mark.slow


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "manas360.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_seed_waits_for_the_migration_started_after_it(environ):
    env = {**environ, "DATABASE_URL": environ["DATABASE_URL"] + "_wait"}
    try:
        seed = _cli("seed", "--wait", "60", env=env)
        time.sleep(1)  # seed is waiting on a database that does not exist yet
        assert seed.poll() is None
        migrate = _cli("migrate", env=env)
        assert migrate.wait(120) == 0, migrate.stderr.read()
        assert seed.wait(60) == 0, seed.stderr.read()
    finally:
        await drop_database(env["DATABASE_URL"])


def test_the_wait_ends_with_the_commands_own_line(environ):
    env = {**environ, "DATABASE_URL": environ["DATABASE_URL"] + "_never"}
    started = time.monotonic()
    seed = _cli("seed", "--wait", "1", env=env)
    assert seed.wait(60) == 1
    assert time.monotonic() - started >= 1
    (line,) = seed.stderr.read().strip().splitlines()
    assert "does not exist" in line and "manas360 migrate" in line
