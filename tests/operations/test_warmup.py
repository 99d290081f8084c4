"""`manas360 warm-cache`: every active user's context lands in Redis, and their next gated
request runs no SQL."""

from __future__ import annotations

import subprocess
import sys

from manas360.services.access.entitlements import CONTEXT_TTL_S, loaded_ttl_ms
from manas360.services.ops.synthetic import SYNTHETIC_PASSWORD
from manas360.services.ops.warmup import WARM_TTL_SPREAD
from manas360.settings import load_settings
from tests.fixtures.app import client_for, running_app
from tests.fixtures.counting import counting
from tests.fixtures.environment import delete_prefixed_keys


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "manas360.cli", *args],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_warm_cache_loads_every_active_user_then_gated_requests_run_no_sql(
    ops_environ, pg, redis_raw, monkeypatch
):
    environ = {**ops_environ, "REDIS_PREFIX": ops_environ["REDIS_PREFIX"] + "warm:"}
    settings = load_settings(environ)
    assert _cli("seed", "--users", "300", env=environ).returncode == 0
    active = await pg.fetchval("SELECT count(*) FROM user_accounts WHERE deleted_at IS NULL AND status = 'active'")
    try:
        result = _cli("warm-cache", "--batch-size", "128", env=environ)
        assert result.returncode == 0, result.stderr
        assert f"warm-cache: {active} users" in result.stdout
        user_id = str(
            await pg.fetchval("SELECT id FROM user_accounts WHERE email = 'user000001@synthetic.manas360.test'")
        )
        tag = f"{settings.redis_prefix}{{u:{user_id}}}"
        context = await redis_raw.hgetall(f"{tag}:ctx")
        assert context["role"] in ("user", "subscriber", "admin") and context["plan"]
        assert 0 < await redis_raw.ttl(f"{tag}:ctx") and await redis_raw.exists(f"{tag}:revloaded")
        await _assert_ttls_spread(redis_raw, prefix=settings.redis_prefix, settings=settings, users=active)

        async with running_app(settings) as app, client_for(app) as client:
            login = await client.post(
                "/api/v1/auth/login",
                json={"email": "user000001@synthetic.manas360.test", "password": SYNTHETIC_PASSWORD},
            )
            assert login.status_code == 200, login.text
            headers = {"authorization": f"Bearer {login.json()['access_token']}"}
            await client.get("/api/v1/plans")  # the catalog is per worker: load it once
            with counting(monkeypatch) as counts:
                response = await client.get("/api/v1/dashboard", headers=headers)
            assert response.status_code == 200
            assert counts["sql"] == 0
    finally:
        await delete_prefixed_keys(redis_raw, settings.redis_prefix)


async def _assert_ttls_spread(redis_raw, *, prefix: str, settings, users: int) -> None:
    """Warmed users do not all expire together: every TTL within its bound and no shorter than
    the spread allows, and the users' TTLs spread over most of that range."""
    for suffix, bound_ms in ((":ctx", CONTEXT_TTL_S * 1000), (":revloaded", loaded_ttl_ms(settings))):
        keys = [key async for key in redis_raw.scan_iter(match=f"{prefix}{{u:*}}{suffix}", count=1000)]
        assert len(keys) == users
        ttls = [await redis_raw.pttl(key) for key in keys]
        lowest = (1 - WARM_TTL_SPREAD) * bound_ms - 30_000  # the warm-up's own run time, generously
        assert all(lowest <= ttl <= bound_ms for ttl in ttls), (suffix, min(ttls), max(ttls))
        assert max(ttls) - min(ttls) >= 0.6 * WARM_TTL_SPREAD * bound_ms, (suffix, min(ttls), max(ttls))


def test_warm_cache_with_redis_down_is_one_line_exit_1(ops_environ):
    result = _cli("warm-cache", env={**ops_environ, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
