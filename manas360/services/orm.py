"""Tortoise for command-line work (scripts, seeding): open, yield, close."""

from __future__ import annotations

from contextlib import asynccontextmanager

from manas360.db import close_orm, open_orm
from manas360.settings import Settings


@asynccontextmanager
async def orm(settings: Settings, *, pool_max: int = 4):
    ctx = await open_orm(settings, pool_min=1, pool_max=pool_max)
    try:
        yield ctx
    finally:
        await close_orm(ctx)
