"""A worker stops when its main process is gone.

Sanic's workers do not notice their main process dying (SIGKILL, the OOM killer): they
serve on as orphans, holding the port, database connections and the mail sender of a
server that no longer exists, and one whose listener had already been shut down spun at
100 % CPU in its accept loop (found on this machine: an orphan of a killed test server,
busy for 90 minutes). Each worker checks its parent once a second and stops itself, the
graceful way, when the parent changed.
"""

from __future__ import annotations

import asyncio
import os

from loguru import logger
from sanic import Sanic

CHECK_S = 1.0


async def stop_when_orphaned(app: Sanic, *, parent_pid: int, check_s: float = CHECK_S) -> None:  # type: ignore[type-arg]
    while os.getppid() == parent_pid:
        await asyncio.sleep(check_s)
    logger.warning("the main process {} is gone: this worker stops", parent_pid)
    app.stop(terminate=False)
