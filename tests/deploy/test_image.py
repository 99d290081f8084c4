"""The container image (Containerfile) built and run as an operator would: with host
networking against the test PostgreSQL and Redis, configured for production with its
secrets mounted as files; migrate and seed one-shot, then serve: ready, register, login,
a gated request; the processes are not root; SIGTERM drains and exits 0."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.fixtures.accounts import API, PASSWORD, bearer, unique_email
from tests.fixtures.environment import drop_database, production_environ
from tests.fixtures.podman import podman
from tests.fixtures.server import free_port

pytestmark = pytest.mark.slow
DRAIN_S = 15  # GRACEFUL_SHUTDOWN_TIMEOUT_S's default


@pytest.fixture(scope="module")
async def configured(environ, tmp_path_factory):
    secrets_dir = tmp_path_factory.mktemp("image-secrets")
    secrets_dir.chmod(0o755)
    for name in ("jwt_secret", "mfa_encryption_key", "superadmin_password"):
        (secrets_dir / name).write_text(production_environ()["JWT_SECRET"] + "\n")
        (secrets_dir / name).chmod(0o644)
    database_url = environ["DATABASE_URL"] + "_image"
    port = free_port()
    env = production_environ(
        DATABASE_URL=database_url,
        REDIS_URL=environ["REDIS_URL"],
        REDIS_PREFIX=environ["REDIS_PREFIX"] + "image:",
        HOST="127.0.0.1",
        PORT=str(port),
        WORKERS="2",
        SUPERADMIN_EMAIL="root@example.com",
        JWT_SECRET_FILE="/run/secrets/jwt_secret",
        MFA_ENCRYPTION_KEY_FILE="/run/secrets/mfa_encryption_key",
        SUPERADMIN_PASSWORD_FILE="/run/secrets/superadmin_password",
    )
    del env["JWT_SECRET"], env["MFA_ENCRYPTION_KEY"]
    args = ["--network", "host", "-v", f"{secrets_dir}:/run/secrets:ro"]
    for name, value in env.items():
        args += ["-e", f"{name}={value}"]
    yield {"args": args, "url": f"http://127.0.0.1:{port}"}
    await drop_database(database_url)


def test_the_image_migrates_seeds_and_serves_as_a_user_that_is_not_root(image, configured):
    name = f"manas360-test-{uuid.uuid4().hex[:8]}"
    for command in ("migrate", "seed"):
        result = podman("run", "--rm", *configured["args"], image["name"], command, check=False, timeout=120)
        assert result.returncode == 0, result.stderr
    started = time.monotonic()
    # --read-only: the root filesystem as Kubernetes runs it (deploy/k8s); /tmp is a tmpfs.
    podman("run", "-d", "--read-only", "--name", name, *configured["args"], image["name"])
    try:
        ready_s = _wait_ready(configured["url"], name)
        print(f"\ncontainer ready {ready_s:.1f}s after `podman run`")
        assert time.monotonic() - started < 60
        with httpx.Client(base_url=configured["url"], timeout=10) as http:
            email = unique_email("image")
            assert http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
            login = http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            headers = bearer(login.json()["access_token"])
            me = http.get(f"{API}/me", headers=headers)
            assert me.status_code == 200 and email in me.text, me.text
            assert http.get(f"{API}/premium/dashboard", headers=headers).status_code == 403  # the plan gate
        users = podman("top", name, "user", "huser").stdout.split()[2:]
        assert users and set(users[::2]) == {"manas360"} and set(users[1::2]) == {"10001"}, users
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        stopping = time.monotonic()
        podman("stop", "-t", str(DRAIN_S + 5), name)
        stop_s = time.monotonic() - stopping
        print(f"SIGTERM to exit: {stop_s:.1f}s")
        assert podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
        assert stop_s < DRAIN_S
    finally:
        logs = podman("logs", name, check=False)
        podman("rm", "-f", name, check=False)
    assert "Traceback" not in logs.stdout + logs.stderr


def test_the_image_is_small_and_holds_no_build_tools(image):
    assert image["size"] < 600e6
    listing = podman(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        image["name"],
        "-c",
        "command -v gcc cc make pip pip3 apt-get; id -u; ls /opt/manas360/bin",
        check=False,
    ).stdout
    found = listing.split()
    assert not {"/usr/bin/gcc", "/usr/bin/cc", "/usr/bin/make", "/opt/manas360/bin/pip"} & set(found), listing
    assert "10001" in found and "manas360" in found
    labels = podman("image", "inspect", image["name"], "--format", "{{json .Labels}}").stdout
    for label in (
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.source",
        "org.opencontainers.image.licenses",
    ):
        assert label in labels
    health = podman("image", "inspect", image["name"], "--format", "{{json .HealthCheck}}").stdout
    assert "/health/live" in health


def _wait_ready(url: str, name: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 60:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if podman("inspect", name, "--format", "{{.State.Running}}").stdout.strip() != "true":
            break
        time.sleep(0.1)
    raise AssertionError(f"not ready:\n{podman('logs', name, check=False).stderr[-3000:]}")
