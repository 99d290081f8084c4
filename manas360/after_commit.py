"""The Redis step after a PostgreSQL commit: run to completion, retried in the background.

`run_to_completion` protects the step from the request's cancellation: a client that
disconnects after the commit cancels its handler, and without this the revocation or
invalidation that must follow the commit would be skipped.

`retry_in_background` is used where a committed change must reach Redis (a revocation, a
reference-version bump) but Redis failed at that moment: the request has its answer; this
keeps trying, backing off from 0.5 s to 60 s, for at most `for_s` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from loguru import logger

from manas360.store import StoreUnavailable

_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 60.0
_tasks: set[asyncio.Future[Any]] = set()
T = TypeVar("T")


async def run_to_completion(step: Awaitable[T]) -> T:
    """Await `step` in a task of its own that the caller's cancellation cannot stop (the
    caller still sees CancelledError; the step goes on and its outcome is logged)."""
    task = asyncio.ensure_future(step)
    _tasks.add(task)
    task.add_done_callback(_finished)
    return await asyncio.shield(task)


def _finished(task: asyncio.Future[Any]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # Retrieved here so a step whose awaiting caller was cancelled is not reported as
        # "never retrieved"; the caller (if still there) saw the same exception.
        logger.debug("post-commit step failed: {!r}", task.exception())


def retry_in_background(action: Callable[[], Awaitable[object]], *, what: str, for_s: float) -> None:
    task = asyncio.get_running_loop().create_task(_retry(action, what=what, for_s=for_s))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _retry(action: Callable[[], Awaitable[object]], *, what: str, for_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + for_s
    delay = _FIRST_DELAY_S
    while loop.time() < deadline:
        await asyncio.sleep(delay)
        try:
            await action()
            logger.info("{} reached Redis after a failed write", what)
            return
        except StoreUnavailable:
            delay = min(delay * 2, _MAX_DELAY_S)
    logger.warning("{} never reached Redis within {} s", what, for_s)
