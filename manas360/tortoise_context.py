"""The one place that reaches into Tortoise's private API: making a context current.

Tortoise 1.x keeps the current ORM context in a private ContextVar
(`tortoise.context._current_context`); its public ways to set it are a context manager
(meant to be exited) and a process-wide "global fallback" (one per process: two apps in
one test process would share and close each other's pools). The app keeps a context of its
own and makes it current for each request task, which costs one ContextVar set (~50 ns).
tests/foundation/test_tortoise_context.py fails loudly if a Tortoise upgrade moves this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise.context import _current_context

if TYPE_CHECKING:
    from tortoise.context import TortoiseContext


def activate(ctx: TortoiseContext) -> None:
    """Make the Tortoise context `ctx` the current one for the calling task (per request:
    the import is at module level, not repeated here)."""
    _current_context.set(ctx)
