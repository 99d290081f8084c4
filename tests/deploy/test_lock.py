"""The lock files install, every package checked against its hash, on the lowest Python
pyproject.toml claims as it ships on servers: Debian 12's /usr/bin/python3.11, 3.11.2, where
redis still needs async-timeout (python_full_version < "3.11.3"). The running interpreter
(newer) installs both in scripts/test.sh already; requirements/test.txt comes from the same
universal resolution (scripts/lock)."""

from __future__ import annotations

import subprocess

import pytest

from tests.fixtures.podman import SYSTEM_PYTHON
from tests.fixtures.server import ROOT

pytestmark = pytest.mark.slow


def test_the_lock_files_install_with_hashes_on_python_3_11_2(tmp_path):
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
    )
    if version.returncode != 0:
        pytest.fail(f"{SYSTEM_PYTHON} is missing (Debian 12: apt-get install python3.11 python3.11-venv)")
    assert version.stdout.strip() == "3.11.2"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(tmp_path / "venv")], check=True)
    pip = [str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--require-hashes"]
    main = subprocess.run(
        [*pip, "-r", str(ROOT / "requirements" / "main.txt")], capture_output=True, text=True, timeout=600
    )
    assert main.returncode == 0, main.stderr[-3000:]
    installed = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-c", "import async_timeout, redis"], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr
