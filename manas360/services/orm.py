"""Tortoise for command-line work (scripts, seeding): open, yield, close."""

from __future__ import annotations

from contextlib import asynccontextmanager

from tortoise import Tortoise

from manas360.db import tortoise_config
from manas360.settings import Settings


@asynccontextmanager
async def orm(settings: Settings, *, pool_max: int = 4):
    await Tortoise.init(config=tortoise_config(settings, pool_min=1, pool_max=pool_max), _enable_global_fallback=True)
    try:
        yield
    finally:
        await Tortoise.close_connections()
