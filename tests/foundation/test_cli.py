"""The `manas360` command's answers to an operator's mistakes: the real command in a
subprocess, one line on stderr, the exit status the contract gives (1: a store, the
database's existence or schema; 2: configuration or usage), never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "manas360.cli", *args], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=60)


def _one_line(result: subprocess.CompletedProcess) -> str:
    """stderr, which must be exactly one line and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(("command", "fragment"), [
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
])
def test_a_usage_error_names_the_option_and_what_it_accepts_in_one_line_exit_2(command, fragment):
    result = _cli(*command, env={})
    line = _one_line(result)
    assert result.returncode == 2, result.stderr
    assert fragment in line and line.startswith("manas360")
    assert "_count" not in line and "_positive" not in line and "usage:" not in line
