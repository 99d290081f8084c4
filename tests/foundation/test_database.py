"""The database collaborator (manas360.db.Database), the one adapter over Tortoise's
private current-context variable: if a Tortoise upgrade renames or reshapes it, this fails
first and says where to look."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
import tortoise
from tortoise.context import get_current_context


def test_tortoise_still_keeps_the_current_context_where_the_adapter_sets_it():
    import tortoise.context as module

    assert isinstance(getattr(module, "_current_context", None), contextvars.ContextVar), (
        f"tortoise {tortoise.__version__} moved its current-context variable: update manas360.db.Database"
    )


async def test_a_transaction_leaves_no_hidden_context_behind(db):
    async with db.transaction() as conn:
        assert (await conn.execute_query_dict("SELECT 1 AS one")) == [{"one": 1}]
    assert get_current_context() is None


async def test_a_transaction_that_raises_rolls_back(db, pg):
    name = "probe-database-rollback"
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute_query("INSERT INTO features (name, description) VALUES ($1, 'probe')", [name])
            raise RuntimeError("roll back")
    assert await pg.fetchval("SELECT count(*) FROM features WHERE name = $1", name) == 0


async def test_a_task_with_a_fresh_context_needs_no_setup(db):
    async def query() -> int:
        async with db.transaction() as conn:
            rows = await conn.execute_query_dict("SELECT 2 AS two")
        return int(rows[0]["two"])

    task = asyncio.get_running_loop().create_task(query(), context=contextvars.Context())
    assert await task == 2
