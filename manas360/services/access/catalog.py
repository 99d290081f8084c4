"""The reference catalog each worker holds in memory: role -> (level, permissions),
plan -> (tier, price, features). A gate check is a set lookup here, never a query.

Freshness: a change bumps a version in Redis and publishes it; `CatalogHolder` reloads on
the message, compares versions on a timer (safety net), and the request guard compares
the version it reads in its Redis round trip, so a change applies to the very next
request on every worker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from loguru import logger

from manas360.db import Database
from manas360.queries.access import catalog as catalog_queries
from manas360.store import Store
from manas360.store.catalog import get_catalog_version, listen_catalog_changes


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    display_name: str
    tier: int
    price_cents: int
    features: frozenset[str]


@dataclass(frozen=True, slots=True)
class Catalog:
    version: int = -1
    role_levels: dict[str, int] = field(default_factory=dict)
    role_permissions: dict[str, frozenset[str]] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)  # in tier order

    def permissions_of(self, role: str) -> frozenset[str]:
        return self.role_permissions.get(role, frozenset())

    def level_of(self, role: str) -> int:
        return self.role_levels.get(role, 0)

    def features_of(self, plan: str) -> frozenset[str]:
        found = self.plans.get(plan)
        return found.features if found else frozenset()

    def cheapest_plan_with(self, features: frozenset[str] | set[str]) -> Plan | None:
        """The lowest-tier plan that includes every one of `features`."""
        for plan in self.plans.values():
            if features <= plan.features:
                return plan
        return None


async def load_catalog(*, db: Database, version: int) -> Catalog:
    """Read the whole catalog from PostgreSQL (two small queries)."""
    conn = db.connection
    roles = await catalog_queries.roles_with_permissions(conn=conn)
    plans = await catalog_queries.plans_with_features(conn=conn)
    return Catalog(
        version=version,
        role_levels={r.name: r.privilege_level for r in roles},
        role_permissions={r.name: frozenset(r.permissions) for r in roles},
        plans={p.name: Plan(p.name, p.display_name, p.tier, p.price_cents, frozenset(p.features)) for p in plans},
    )


class CatalogHolder:
    """One per worker: the current catalog and the single-flight reload around it."""

    def __init__(self, db: Database) -> None:
        self.catalog = Catalog()
        self._db = db
        self._lock = asyncio.Lock()

    def at(self, version: int) -> Catalog | None:
        """The catalog if it is at `version` (no await: the hot path's usual case), else None."""
        catalog = self.catalog
        return catalog if catalog.version == version else None

    async def ensure(self, *, version: int) -> Catalog:
        """The catalog at `version` or newer, reloading from PostgreSQL if behind."""
        if self.catalog.version != version:
            async with self._lock:  # concurrent requests wait for one reload
                if self.catalog.version != version:
                    self.catalog = await load_catalog(db=self._db, version=version)
                    logger.debug("reference catalog reloaded at version {}", version)
        return self.catalog

    async def reload(self) -> Catalog:
        """Re-read PostgreSQL now, keeping the version label (after a local change)."""
        async with self._lock:
            self.catalog = await load_catalog(db=self._db, version=self.catalog.version)
        return self.catalog


async def watch_reference(holder: CatalogHolder, store: Store, *, poll_s: float = 5.0) -> None:
    """Keep `holder` current: reload on every published bump, and poll the version every
    `poll_s` seconds in case a message was missed (Redis restarted, connection dropped)."""

    async def on_change(version: int) -> None:
        await holder.ensure(version=version)

    listener = asyncio.get_running_loop().create_task(listen_catalog_changes(store, on_change))
    try:
        while True:
            await asyncio.sleep(poll_s)
            try:
                await holder.ensure(version=await get_catalog_version(store))
            except Exception as exc:  # Redis or PostgreSQL down: the next poll tries again
                logger.debug("reference version poll failed: {!r}", exc)
    finally:
        listener.cancel()
