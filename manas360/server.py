"""`manas360 serve`: preflight checks, then Sanic's worker manager with N workers.

Each worker process re-runs the app factory (settings come from the environment, which
the workers inherit), opens its own PostgreSQL and Redis pools, and closes them on stop.
SIGTERM/SIGINT: Sanic stops accepting, lets in-flight requests finish within
GRACEFUL_SHUTDOWN_TIMEOUT, runs the stop listeners (pools close) and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

from loguru import logger

from manas360.logs import configure_logging
from manas360.settings import Settings

EXIT_UNAVAILABLE = 1


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir(path: str) -> None:
    """Create or empty prometheus-client's shared directory, before anything imports it
    (prometheus-client picks its storage at import time)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    os.environ[MULTIPROC_ENV] = path


def create_app_from_environment():
    """Factory used in every worker process (must be importable, hence module level)."""
    from manas360.app import create_app

    return create_app()


async def _preflight(settings: Settings) -> list[str]:
    """Names of the stores that do not answer (checked once before workers start)."""
    from manas360.services.health import check_database, check_redis
    from manas360.services.orm import orm
    from store import close_store, open_store

    down = []
    try:
        async with orm(settings, pool_max=1):
            if await check_database() != "ok":
                down.append(f"PostgreSQL at {settings.database_url.split('@')[-1]}")
    except Exception:  # unreachable or refused during connect
        down.append(f"PostgreSQL at {settings.database_url.split('@')[-1]}")
    store = open_store(url=settings.redis_url, prefix=settings.redis_prefix, cluster=settings.redis_cluster,
                       socket_timeout_s=settings.redis_socket_timeout_s,
                       connect_timeout_s=settings.redis_connect_timeout_s)
    try:
        if await check_redis(store) != "ok":
            down.append(f"Redis at {settings.redis_url.split('@')[-1]}")
    finally:
        await close_store(store)
    return down


def serve(settings: Settings, *, host: str | None = None, port: int | None = None, workers: int | None = None,
          factory=create_app_from_environment) -> int:
    """Serve until SIGTERM/SIGINT. `factory` builds the app in each worker (module level)."""
    # Shared memory-mapped files for prometheus-client: every worker sums into them. Must
    # exist before anything (here or in a worker) imports prometheus-client.
    prepare_metrics_dir(os.environ.get(MULTIPROC_ENV) or
                        os.path.join(tempfile.gettempdir(), f"manas360-metrics-{port or settings.port}-{os.getpid()}"))
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from manas360.edge.protocol import EdgeHttpProtocol

    configure_logging(settings)
    down = asyncio.run(_preflight(settings))
    if down:
        message = f"cannot reach {', '.join(down)}"
        if settings.is_production:
            print(f"manas360: {message}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        logger.warning("{}; serving anyway (requests that need it answer 503)", message)

    loader = AppLoader(factory=factory)
    app = loader.load()
    app.prepare(
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        access_log=False,
        motd=False,
        protocol=EdgeHttpProtocol,  # request deadlines a slow client cannot stretch
    )
    logger.info("serving on http://{}:{} with {} worker(s)", host or settings.host, port or settings.port,
                workers or settings.workers)
    Sanic.serve(primary=app, app_loader=loader)
    return 0
