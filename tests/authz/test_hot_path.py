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
    client, member, monkeypatch, redis_raw, settings
):
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
    import manas360.services.access.entitlements as entitlements

    loads = []
    real = entitlements._read_and_fill

    async def counted(*, user_id, **collaborators):
        loads.append(user_id)
        return await real(user_id=user_id, **collaborators)

    monkeypatch.setattr(entitlements, "_read_and_fill", counted)
    responses = await asyncio.gather(*(client.get(f"{API}/dashboard", headers=member.headers) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert loads == [member.id]


async def test_a_request_never_uses_a_load_begun_before_an_invalidation(
    app, client, superadmin, monkeypatch, redis_raw, settings
):
    """A demoted admin's request must not be answered from a load that read PostgreSQL before
    the demotion: the load is held right after its SELECT, the demotion commits (and bumps
    the user's cache generation), and a new request must load again, not join the old load."""
    import manas360.queries.access.entitlements as entitlement_queries
    from tests.authz.conftest import make_admin

    admin = await make_admin(client, superadmin)
    await delete_prefixed_keys(redis_raw, settings.redis_prefix)  # cold: the next request loads
    real = entitlement_queries.fetch_user_state
    read, release = asyncio.Event(), asyncio.Event()
    calls = []

    async def held_after_select(**kwargs):
        row = await real(**kwargs)
        if kwargs["user_id"] != admin.id:
            return row
        calls.append(kwargs["user_id"])
        if len(calls) == 1:  # the admin's first load: it has read the admin role, and waits
            read.set()
            await release.wait()
        return row

    monkeypatch.setattr(entitlement_queries, "fetch_user_state", held_after_select)
    before = asyncio.create_task(client.get(f"{API}/admin/users", headers=admin.headers))
    await asyncio.wait_for(read.wait(), 10)
    demoted = await client.put(f"{API}/admin/users/{admin.id}/role", json={"role": "user"}, headers=superadmin.headers)
    assert demoted.status_code == 200
    after = await asyncio.wait_for(client.get(f"{API}/admin/users", headers=admin.headers), 10)
    assert (after.status_code, after.json()["error"]) == (403, "InsufficientPrivileges")
    assert calls == [admin.id, admin.id]  # a load of its own, at the new generation
    release.set()
    assert (await before).status_code == 200  # it began before the change committed: either answer is right
