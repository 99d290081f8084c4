"""The adapter over Tortoise's private current-context variable: if a Tortoise upgrade
renames or reshapes it, this fails first and says where to look."""

from __future__ import annotations

import contextvars

import tortoise
from tortoise import connections
from tortoise.context import get_current_context

from manas360.tortoise_context import activate


def test_tortoise_still_keeps_the_current_context_where_the_adapter_sets_it():
    import tortoise.context as module

    assert isinstance(getattr(module, "_current_context", None), contextvars.ContextVar), (
        f"tortoise {tortoise.__version__} moved its current-context variable: update manas360/tortoise_context.py")


async def test_an_activated_context_is_the_one_queries_use(app):
    def in_fresh_context():
        activate(app.ctx.orm)
        return get_current_context(), connections.get("default")

    current, connection = contextvars.Context().run(in_fresh_context)
    assert current is app.ctx.orm
    assert connection is app.ctx.orm.connections.get("default")
