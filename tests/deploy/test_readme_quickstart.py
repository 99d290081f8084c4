"""The README's quickstart, its `sh` blocks extracted from README.md and run in order in one
shell against a live server (with their own database): register, login, an authenticated
call, refresh, an admin call, logout. The README can't drift from the API."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.fixtures.environment import drop_database
from tests.fixtures.server import ROOT, start_server

pytestmark = pytest.mark.slow


def quickstart_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
async def server(environ, tmp_path_factory):
    env = {**environ, "DATABASE_URL": environ["DATABASE_URL"] + "_readme"}
    for command in (["migrate"], ["seed"]):
        subprocess.run(
            [sys.executable, "-m", "manas360.cli", *command], env=env, check=True, capture_output=True, timeout=120
        )
    server = start_server(env, workers=2, tmp_dir=tmp_path_factory.mktemp("readme"))
    yield server, env
    server.stop()
    await drop_database(env["DATABASE_URL"])


def test_the_quickstart_runs_as_written(server):
    server, env = server
    blocks = quickstart_blocks()
    assert len(blocks) == 6 and all("curl" in block for block in blocks)
    assert (ROOT / ".venv" / "bin" / "manas360").exists(), "the quickstart uses the checkout's .venv"
    script = "set -euo pipefail\n" + "\n".join(blocks)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"], **env, "BASE": server.url},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert '"email":"ada@example.com"' in result.stdout.replace(" ", "")
    assert "ada@example.com: role admin" in lines
    assert lines[-2:] == ["204", "401"], lines
