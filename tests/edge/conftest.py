"""Apps and servers with small limits of their own: a test policy table that also puts the
probe routes under `auth`, and a Redis prefix per app so counters never collide."""

from __future__ import annotations

import itertools
import re
from contextlib import asynccontextmanager
from uuid import uuid4

import pytest

from manas360.settings import load_settings
from tests.edge.probes import probe_blueprint
from tests.fixtures.app import running_app

# The shipped table, with the probe route standing in for POST /api/v1/auth/register.
POLICY_TABLE = """
exempt = ["/health", "/metrics"]

[policies.global]
key = "ip"
applies = "every-request"
limit = 100
window_s = 900

[policies.auth]
key = "ip+route"
applies = "routes"
routes = ["POST /probe/register"]
limit = 5
window_s = 900
fail_open = false

[policies.api]
key = "user"
applies = "authenticated"
limit = 1000
window_s = 3600
"""

RATELIMIT_HEADER = re.compile(r'^"(?P<policy>[a-z_]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')
_addresses = itertools.count(1)


def fresh_ip() -> str:
    """A client address no other test used (198.18.0.0/15, the benchmarking range)."""
    n = next(_addresses)
    return f"198.18.{n // 256}.{n % 256}"


def parse_ratelimit(value: str) -> list[dict]:
    """The items of a single- or multi-policy RateLimit header."""
    items = []
    for item in value.split(", "):
        match = RATELIMIT_HEADER.match(item)
        assert match, value
        items.append({"policy": match["policy"], "r": int(match["r"]), "t": int(match["t"])})
    return items


@pytest.fixture(scope="session")
def policy_table(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("edge") / "ratelimits.toml"
    path.write_text(POLICY_TABLE)
    return str(path)


@pytest.fixture(scope="session")
def edge_environ(environ, policy_table):
    """`environ` with the test policy table, its own Redis prefix, and `overrides`."""

    def build(**overrides: str) -> dict[str, str]:
        return {
            **environ,
            "REDIS_PREFIX": f"{environ['REDIS_PREFIX']}edge-{uuid4().hex[:8]}:",
            "RATE_LIMITS_FILE": policy_table,
            **overrides,
        }

    return build


@pytest.fixture(scope="session")
def edge_app(edge_environ, database, redis_raw):
    """`async with edge_app(RATE_LIMIT_GLOBAL="5/3600", ...) as app`: the real app plus probes."""

    @asynccontextmanager
    async def start(**overrides: str):
        settings = load_settings(edge_environ(**overrides))
        async with running_app(settings, extra_blueprints=(probe_blueprint(),)) as app:
            yield app

    return start
