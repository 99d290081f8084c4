"""Retrying a Redis write in the background after PostgreSQL has committed.

Used where a committed change must reach Redis (a revocation, a reference-version bump)
but Redis failed at that moment: the request has its answer; this keeps trying, backing
off from 0.5 s to 60 s, for at most `for_s` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from loguru import logger

from store import StoreUnavailable

_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 60.0
_tasks: set[asyncio.Task] = set()


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
