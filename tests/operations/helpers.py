"""Running the real command line from the operations tests."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.fixtures.server import ROOT


def run_cli(environ: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`manas360 <args>` in a child process with `environ` (its stderr is not a terminal)."""
    env = {**environ, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        [sys.executable, "-m", "manas360.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "manas360.cli", *args]
