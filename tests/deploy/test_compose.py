"""compose.yaml brought up with podman-compose on locally built images (the service's, and
PostgreSQL's and Redis's from Debian packages, deploy/images/): migrate, then seed, then the
service, which answers; `down -v` leaves no container or volume behind."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fixtures import podman
from tests.fixtures.accounts import API, PASSWORD, unique_email
from tests.fixtures.environment import production_environ
from tests.fixtures.server import ROOT, free_port

pytestmark = pytest.mark.slow
COMPOSE = str(Path(sys.executable).with_name("podman-compose"))


def test_compose_up_serves_and_down_cleans_up(image, store_images, tmp_path):
    project = f"m360test{uuid.uuid4().hex[:8]}"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("jwt_secret", "mfa_encryption_key", "superadmin_password"):
        (secrets / name).write_text(production_environ()["JWT_SECRET"] + "\n")
        (secrets / name).chmod(0o644)
    secrets.chmod(0o755)
    tmp_path.chmod(0o755)
    port = free_port()
    settings = production_environ()
    env = {
        **podman.environment(),
        **store_images,
        "MANAS360_IMAGE": image["name"],
        "MANAS360_PORT": str(port),
        "POSTGRES_PASSWORD": uuid.uuid4().hex,
        "SECRETS_DIR": str(secrets),
        "SUPERADMIN_EMAIL": "root@example.com",
        **{name: settings[name] for name in ("PUBLIC_BASE_URL", "ALLOWED_ORIGINS", "SMTP_URL", "MAIL_FROM")},
    }

    def compose(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [COMPOSE, "-p", project, "-f", str(ROOT / "compose.yaml"), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    started = time.monotonic()
    try:
        up = compose("up", "-d")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() - started < 120:
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            logs = compose("logs")
            raise AssertionError(f"compose stack not ready:\n{logs.stdout[-4000:]}{logs.stderr[-2000:]}")
        print(f"\ncompose stack ready {time.monotonic() - started:.1f}s after `up`")
        response = httpx.post(
            f"{url}{API}/auth/register", json={"email": unique_email("compose"), "password": PASSWORD}, timeout=10
        )
        assert response.status_code == 201, response.text
        states = podman.podman(
            "ps",
            "-a",
            "--filter",
            f"label=io.podman.compose.project={project}",
            "--format",
            "{{.Names}} {{.State}} {{.ExitCode}}",
        ).stdout
        assert any("migrate" in line and "Exited (0)" in line for line in states.splitlines()), states
        assert any("seed" in line and "Exited (0)" in line for line in states.splitlines()), states
        # The erasure ledger's volume is there and the service's user may append to it.
        api = next(line.split()[0] for line in states.splitlines() if "api" in line.split()[0])
        podman.podman("exec", api, "python3", "-c", "import os; open(os.environ['ERASURE_LEDGER_PATH'], 'a').close()")
    finally:
        down = compose("down", "-v")
    assert down.returncode == 0, down.stderr[-3000:]
    left = podman.podman("ps", "-a", "--filter", f"label=io.podman.compose.project={project}", "-q").stdout.strip()
    volumes = [
        name
        for name in podman.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
        if name.startswith(project)
    ]
    assert not left and not volumes, (left, volumes)
