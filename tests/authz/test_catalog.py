"""The in-memory reference catalog: loaded from PostgreSQL, reloaded when the version moves."""

from __future__ import annotations

import asyncio

from manas360.services.access.catalog import CatalogHolder, load_catalog
from manas360.store.catalog import bump_catalog_version, get_catalog_version, listen_catalog_changes
from manas360.store.client import close_store, open_store
from tests.fixtures.gates import eventually


async def test_catalog_holds_levels_permissions_and_plans_in_tier_order(db):
    catalog = await load_catalog(db=db, version=1)
    assert catalog.level_of("admin") == 90 and catalog.level_of("nobody") == 0
    assert "dashboard.read" in catalog.permissions_of("user")
    assert "roles.manage" in catalog.permissions_of("superadmin")
    assert "roles.manage" not in catalog.permissions_of("admin")
    assert list(catalog.plans) == ["free", "basic", "premium", "professional", "enterprise"]
    assert "premium_dashboard" in catalog.features_of("premium")
    assert catalog.cheapest_plan_with({"premium_dashboard"}).name == "premium"
    assert catalog.cheapest_plan_with({"premium_dashboard", "api_access"}).name == "professional"
    assert catalog.cheapest_plan_with({"no-such-feature"}) is None


async def test_holder_reloads_once_for_concurrent_requests_at_a_new_version(db, monkeypatch):
    import manas360.services.access.catalog as module

    loads = []
    real_load = module.load_catalog

    async def counting_load(*, db, version):
        loads.append(version)
        return await real_load(db=db, version=version)

    monkeypatch.setattr(module, "load_catalog", counting_load)
    holder = CatalogHolder(db)
    catalogs = await asyncio.gather(*(holder.ensure(version=7) for _ in range(20)))
    assert loads == [7] and all(c.version == 7 for c in catalogs)
    await holder.ensure(version=7)
    assert loads == [7]
    await holder.ensure(version=8)
    assert loads == [7, 8]


async def test_a_permission_change_is_seen_after_reload(db):
    conn = db.connection
    holder = CatalogHolder(db)
    before = await holder.ensure(version=100)
    assert "analytics.read" not in before.permissions_of("subscriber")
    await conn.execute_query(
        "INSERT INTO role_permissions (role_id, permission_id) SELECT r.id, p.id FROM roles r, permissions p "
        "WHERE r.name = 'subscriber' AND p.name = 'analytics.read'"
    )
    try:
        assert (await holder.ensure(version=100)).version == 100  # same version: no query
        assert "analytics.read" not in holder.catalog.permissions_of("subscriber")
        assert "analytics.read" in (await holder.ensure(version=101)).permissions_of("subscriber")
    finally:
        await conn.execute_query(
            "DELETE FROM role_permissions WHERE role_id = (SELECT id FROM roles WHERE name = 'subscriber') "
            "AND permission_id = (SELECT id FROM permissions WHERE name = 'analytics.read')"
        )


async def test_version_bump_is_published_to_listeners(settings, redis_raw):
    store = open_store(url=settings.redis_url, prefix=settings.redis_prefix + "ref:")
    received: asyncio.Queue[int] = asyncio.Queue()

    async def on_change(version: int) -> None:
        await received.put(version)

    listener = asyncio.create_task(listen_catalog_changes(store, on_change))
    try:
        start = await get_catalog_version(store)
        channel = store.keys.catalog_channel()

        async def subscribed() -> bool:
            return await store.redis.pubsub_numsub(channel) != [(channel, 0)]

        await eventually(subscribed, what="the listener subscribed")  # a bump before it would go unheard
        version = await bump_catalog_version(store)
        assert version > start and version == await get_catalog_version(store)
        assert await asyncio.wait_for(received.get(), 2) == version
    finally:
        listener.cancel()
        await store.redis.delete(store.keys.catalog_version())
        await close_store(store)
