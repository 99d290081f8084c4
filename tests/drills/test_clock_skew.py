"""A server whose clock is 10 s behind or ahead of PostgreSQL and Redis (libfaketime): a
plan ends when it ends, to within a second, and the pair a password change or a login after
logout-all returns is accepted at once. Every time-bound rule is decided on a shared clock
(docs/architecture.md, "Clocks")."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from manas360.services.ops.seeding import seed_superadmin
from tests.fixtures.accounts import PASSWORD, unique_email
from tests.fixtures.server import start_server

pytestmark = pytest.mark.slow
LIBFAKETIME = next(
    iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), Path("/usr/lib/faketime/libfaketime.so.1")
)
ROOT_EMAIL = "root-clock-skew@example.com"


def _skewed(drill_environ, skew: str) -> dict[str, str]:
    assert LIBFAKETIME.exists() and shutil.which("faketime"), (
        "libfaketime is missing: scripts/test.sh installs it (apt-get install faketime)"
    )
    # DONT_FAKE_MONOTONIC: the offset is the point, not a clock that jumps under the event loop.
    return drill_environ(LD_PRELOAD=str(LIBFAKETIME), FAKETIME=skew, DONT_FAKE_MONOTONIC="1", LOG_LEVEL="INFO")


@pytest.fixture(params=["-10s", "+10s"], ids=["10 s behind", "10 s ahead"])
def skewed(request, drill_environ, tmp_path):
    before = time.time()
    server = start_server(_skewed(drill_environ, request.param), workers=2, tmp_dir=tmp_path)
    server.started_between = (before, time.time())  # the real clock around the start
    server.skew_s = int(request.param.removesuffix("s"))
    yield server
    server.stop()


def _register(http: httpx.Client) -> dict:
    response = http.post("/api/v1/auth/register", json={"email": unique_email("skew"), "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()


def _me(http: httpx.Client, pair: dict) -> httpx.Response:
    return http.get("/api/v1/me", headers={"authorization": f"Bearer {pair['access_token']}"})


def test_the_server_really_runs_on_a_skewed_clock(skewed):
    """The drill proves nothing unless it does: the server's own log lines carry its time."""
    line = next(line for line in skewed.log().splitlines() if '"serving on' in line)
    logged = datetime.fromisoformat(json.loads(line)["time"]).timestamp()
    before, after = skewed.started_between
    assert before + skewed.skew_s - 1 <= logged <= after + skewed.skew_s + 1, (logged, before, after)


def test_fresh_pairs_after_every_epoch_move_are_accepted_at_once(skewed):
    with httpx.Client(base_url=skewed.url, timeout=10) as http:
        pair = _register(http)
        email = pair["user"]["email"]
        changed = http.post(
            "/api/v1/auth/password",
            headers={"authorization": f"Bearer {pair['access_token']}"},
            json={"current_password": PASSWORD, "new_password": "a second passphrase"},
        )
        assert changed.status_code == 200, changed.text
        assert _me(http, changed.json()).status_code == 200, _me(http, changed.json()).text
        assert (
            http.post(
                "/api/v1/auth/logout-all", headers={"authorization": f"Bearer {changed.json()['access_token']}"}
            ).status_code
            == 204
        )
        login = http.post("/api/v1/auth/login", json={"email": email, "password": "a second passphrase"})
        assert login.status_code == 200, login.text
        assert _me(http, login.json()).status_code == 200
        refreshed = http.post("/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})
        assert _me(http, refreshed.json()).status_code == 200


async def test_a_plan_ends_when_it_ends_whatever_the_workers_clock(skewed, app, db, pg):
    await seed_superadmin(
        db=app.ctx.deps.db,
        settings=app.ctx.deps.settings,
        store=app.ctx.deps.store,
        email=ROOT_EMAIL,
        password=PASSWORD,
    )
    with httpx.Client(base_url=skewed.url, timeout=10) as http:
        root = http.post("/api/v1/auth/login", json={"email": ROOT_EMAIL, "password": PASSWORD}).json()
        member = _register(http)
        ends_at = await pg.fetchval("SELECT now() + interval '3 seconds'")
        granted = http.put(
            f"/api/v1/admin/users/{member['user']['id']}/subscription",
            headers={"authorization": f"Bearer {root['access_token']}"},
            json={"plan": "premium", "ends_at": ends_at.isoformat()},
        )
        assert granted.status_code == 200, granted.text
        premium = {"authorization": f"Bearer {member['access_token']}"}
        assert http.get("/api/v1/premium/dashboard", headers=premium).status_code == 200
        deadline = time.monotonic() + 20
        while (answer := http.get("/api/v1/premium/dashboard", headers=premium)).status_code == 200:
            assert time.monotonic() < deadline, "the plan never ended"
            time.sleep(0.05)
        refused_at = await pg.fetchval("SELECT now()")
    assert answer.json()["error"] == "FeatureNotAvailable"
    assert abs((refused_at - ends_at).total_seconds()) <= 1.0, (refused_at, ends_at)
