"""The hot path's budget, counted: a warm gated request runs 0 SQL statements and makes
exactly one Redis round trip for the user; a cold one reads PostgreSQL once."""

from __future__ import annotations

import asyncio

from tests.fixtures.accounts import API
from tests.fixtures.counting import counting
from tests.fixtures.environment import delete_prefixed_keys


async def test_warm_gated_request_runs_no_sql_and_one_redis_round_trip(client, member, monkeypatch):
    await client.get(f"{API}/dashboard", headers=member.headers)  # warms context and catalog
    with counting(monkeypatch) as counts:
        for _ in range(5):
            response = await client.get(f"{API}/dashboard", headers=member.headers)
            assert response.status_code == 200
    assert counts["sql"] == 0
    # Per request: ONE round trip, the per-IP `global` limit included (checked first, in the
    # same script as the user's revocation, context and `api` limit).
    assert counts["redis"] == 5
    assert [item.split(";")[0] for item in response.headers["ratelimit"].split(", ")] == ['"global"', '"api"']


async def test_cold_gated_request_reads_postgresql_once_and_refills_the_cache(
        client, member, monkeypatch, redis_raw, settings):
    await client.get(f"{API}/dashboard", headers=member.headers)
    await delete_prefixed_keys(redis_raw, settings.redis_prefix)
    with counting(monkeypatch) as counts:
        assert (await client.get(f"{API}/dashboard", headers=member.headers)).status_code == 200
    assert counts["sql"] >= 1
    cold_sql = counts["sql"]
    with counting(monkeypatch) as counts:
        assert (await client.get(f"{API}/dashboard", headers=member.headers)).status_code == 200
    assert counts["sql"] == 0, f"a refilled cache must be warm (cold took {cold_sql})"


async def test_concurrent_misses_for_one_user_do_one_load(client, member, monkeypatch, redis_raw, settings):
    await client.get(f"{API}/dashboard", headers=member.headers)
    await delete_prefixed_keys(redis_raw, settings.redis_prefix)
    import manas360.services.entitlements as entitlements

    loads = []
    real = entitlements._read_and_fill

    async def counted(*, user_id, **collaborators):
        loads.append(user_id)
        return await real(user_id=user_id, **collaborators)

    monkeypatch.setattr(entitlements, "_read_and_fill", counted)
    responses = await asyncio.gather(*(client.get(f"{API}/dashboard", headers=member.headers) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert loads == [member.id]
