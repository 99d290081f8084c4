"""deploy/systemd passes `systemd-analyze verify` without a warning (an unknown key is only
a warning there, so any output fails), with the installed command standing in for
/srv/manas360's; each maintenance job has a timer and the timers' jobs are the command's."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from manas360.cli import _parser
from tests.fixtures.server import ROOT

UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/srv/manas360/.venv/bin/manas360"


def test_the_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing (apt-get install systemd; .ci/run does)")
    command = Path(sys.executable).with_name("manas360")
    assert command.exists()
    for unit in UNITS.iterdir():
        text = (
            unit.read_text()
            .replace(INSTALLED, str(command))
            .replace("WorkingDirectory=/srv/manas360", f"WorkingDirectory={tmp_path}")
        )
        (tmp_path / unit.name).write_text(text)
    units = sorted(path.name for path in tmp_path.iterdir())
    result = subprocess.run(
        [analyze, "verify", *units],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_a_timer_for_every_maintenance_job():
    parser = _parser()
    maintenance = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    jobs = next(
        action
        for action in maintenance.choices["maintenance"]._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    timers = {path.name.removeprefix("manas360-maintenance@").removesuffix(".timer") for path in UNITS.glob("*.timer")}
    # replay-erasures runs after a restore (and `serve` runs it before serving), never on a timer.
    assert timers == set(jobs.choices) - {"all", "replay-erasures"}
    service = (UNITS / "manas360.service").read_text()
    assert "TimeoutStopSec=25" in service and "KillSignal=SIGTERM" in service


def test_the_api_and_the_maintenance_jobs_share_one_erasure_ledger_they_may_write():
    # purge-deleted appends to it and serve replays it: the same file, in the units' own state
    # directory (the only writable place under ProtectSystem=strict besides the private /tmp).
    settings = {}
    for name in ("manas360.service", "manas360-maintenance@.service"):
        lines = (UNITS / name).read_text().splitlines()
        ledger = next(line.split("=", 2)[2] for line in lines if line.startswith("Environment=ERASURE_LEDGER_PATH="))
        assert "StateDirectory=manas360" in lines and "ProtectSystem=strict" in lines, name
        assert ledger.startswith("/var/lib/manas360/"), name
        settings[name] = ledger
    assert len(set(settings.values())) == 1
