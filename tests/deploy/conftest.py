"""The images the deployment tests run, each built once per test run (podman's layer cache
makes a re-run's build take seconds; the debootstrap base is built only when missing)."""

from __future__ import annotations

import functools
import http.server
import threading
import time

import pytest

from tests.fixtures import podman
from tests.fixtures.server import ROOT

IMAGE = "localhost/manas360:test"
POSTGRES_IMAGE = "localhost/manas360-ci/postgres:15"
REDIS_IMAGE = "localhost/manas360-ci/redis:7"
WHEELHOUSE_PORT = 38765


@pytest.fixture(scope="session")
def container_base():
    problem = podman.missing()
    if problem:
        pytest.fail(f"the deployment tests need podman: {problem}")
    return podman.ensure_base_image()


@pytest.fixture(scope="session")
def image(container_base) -> dict[str, object]:
    """The Containerfile built on the Debian base (Python 3.11.2) from a wheelhouse served on
    loopback: --require-hashes checks every wheel inside the build, and no index is needed."""
    wheels = podman.wheelhouse()
    handler = functools.partial(_Quiet, directory=str(wheels))
    try:  # a fixed port keeps PIP_OPTIONS, and so podman's cache of the install layer, the same
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", WHEELHOUSE_PORT), handler)
    except OSError:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        seconds = podman.build(
            IMAGE,
            containerfile=ROOT / "Containerfile",
            context=ROOT,
            build_args={
                "BASE_IMAGE": container_base,
                "PIP_OPTIONS": f"--no-index --find-links http://127.0.0.1:{httpd.server_address[1]}/",
            },
        )
    finally:
        httpd.shutdown()
    size = int(podman.podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout.strip())
    print(f"\nimage {IMAGE}: built in {seconds:.1f}s, {size / 1e6:.0f} MB")
    return {"name": IMAGE, "build_s": seconds, "size": size}


@pytest.fixture(scope="session")
def store_images(container_base) -> dict[str, str]:
    """PostgreSQL and Redis images from Debian's packages (deploy/images/), for compose."""
    started = time.monotonic()
    for name, folder in ((POSTGRES_IMAGE, "postgres"), (REDIS_IMAGE, "redis")):
        podman.build(
            name,
            containerfile=ROOT / "deploy" / "images" / folder / "Containerfile",
            context=ROOT / "deploy" / "images" / folder,
            build_args={"BASE_IMAGE": container_base},
        )
    print(f"\nstore images built in {time.monotonic() - started:.1f}s")
    return {"POSTGRES_IMAGE": POSTGRES_IMAGE, "REDIS_IMAGE": REDIS_IMAGE}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass
