"""`manas360 serve`: preflight checks, then Sanic's worker manager with N workers.

Each worker process re-runs the app factory (settings come from the environment, which
the workers inherit), opens its own PostgreSQL and Redis pools, and closes them on stop.
SIGTERM/SIGINT: the listening socket is shut at once (`GracefulStop`), the workers answer
what is in flight and close each connection after its response (`DrainingHttpProtocol`)
within GRACEFUL_SHUTDOWN_TIMEOUT, run the stop listeners (pools close), and the process
exits 0. A worker that dies (SIGKILL, the OOM killer, a crash) is started again by
`WorkerWatchdog`. tests/drills prove each of these under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from loguru import logger

from manas360 import early_stop
from manas360.logs import configure_logging
from manas360.metrics_dir import MULTIPROC_ENV, prepare_metrics_dir
from manas360.settings import Settings

if TYPE_CHECKING:
    from sanic.worker.manager import WorkerManager

    from manas360.http.sanic_types import App

EXIT_UNAVAILABLE = 1
EXIT_CONFIG = 2
RESTARTS_PER_WINDOW, RESTART_WINDOW_S = 3, 30.0
"""At most this many restarts of one worker per window: a worker that dies on start
waits out the window instead of spinning."""


def create_app_from_environment() -> App:
    """Factory used in every worker process (must be importable, hence module level)."""
    from manas360.app import create_app

    return create_app()


async def _preflight(settings: Settings) -> list[str]:
    """What is wrong with the stores, one phrase each (checked once before workers start):
    a store that does not answer, a database that does not exist or is not migrated."""
    from manas360.configured_store import open_configured_store
    from manas360.db import DatabaseNotReady, check_schema
    from manas360.services.ops.health import check_redis
    from manas360.store import close_store

    problems = []
    try:
        await check_schema(settings)
    except DatabaseNotReady as exc:
        problems.append(str(exc))
    except Exception:  # unreachable or refused during connect
        problems.append(f"cannot reach PostgreSQL at {settings.database.where}")
    store = open_configured_store(settings)
    try:
        if await check_redis(store) != "ok":
            problems.append(f"cannot reach Redis at {settings.redis.where}")
    finally:
        await close_store(store)
    if not problems:
        problems.extend(await _replay_erasures(settings))
    return problems


async def _replay_erasures(settings: Settings) -> list[str]:
    """Erase again what ERASURE_LEDGER_PATH lists (a database restored from an older backup)."""
    from manas360.services.ops.purge import replay_before_serving

    if settings.is_production and not settings.erasure_ledger_path:
        logger.warning(
            "ERASURE_LEDGER_PATH is unset: restoring a backup taken before a purge would bring those accounts back"
        )
    try:
        replayed = await replay_before_serving(settings)
    except Exception as exc:  # a database error, an unreadable ledger file
        return [f"cannot replay the erasure ledger {settings.erasure_ledger_path}: {exc}"]
    if replayed is not None and replayed.counts["accounts erased again"]:
        logger.warning("erased again {} account(s) the erasure ledger lists", replayed.counts["accounts erased again"])
    return []


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    factory: Callable[[], App] = create_app_from_environment,
) -> int:
    """Serve until SIGTERM/SIGINT. `factory` builds the app in each worker (module level)."""
    early_stop.record_early_stops()  # a stop before Sanic takes the signals ends start-up cleanly
    host, port, workers = host or settings.host, port or settings.port, workers or settings.workers
    # Before anything starts: Sanic binds in the main process once the workers are being
    # set up, and a port in use was a "serving on" line followed by a screenful of OSError.
    unusable = listen_problem(host, port)
    if unusable:
        print(f"manas360: configuration error: {unusable}", file=sys.stderr)
        return EXIT_CONFIG
    # Shared memory-mapped files for prometheus-client: every worker sums into them. Must
    # exist before anything (here or in a worker) imports prometheus-client.
    own_metrics_dir = not os.environ.get(MULTIPROC_ENV)
    metrics_dir = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="manas360-metrics-")
    prepare_metrics_dir(metrics_dir)
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from manas360.edge.drain import DrainingHttpProtocol

    configure_logging(settings)
    problems = asyncio.run(_preflight(settings))
    if problems:
        message = "; ".join(problems)
        if settings.is_production:
            print(f"manas360: {message}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        logger.warning("{}; serving anyway", message)

    # On a terminal Sanic's prepare() warns that it "is running in PRODUCTION mode" and
    # suggests --debug/--dev, flags of its own CLI that `manas360 serve` does not have; its
    # debug mode is never what this command runs. Sanic's own switch for the notice:
    os.environ["SANIC_IGNORE_PRODUCTION_WARNING"] = "true"
    loader = AppLoader(factory=factory)
    app = loader.load()
    app.prepare(
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        motd=False,
        protocol=DrainingHttpProtocol,
    )
    watchdog = WorkerWatchdog()
    app.register_listener(share_stopping_event, "main_process_start")
    app.register_listener(watchdog.start, "main_process_ready")
    app.register_listener(GracefulStop(on_stop=watchdog.halt).install, "main_process_ready")
    app.register_listener(lambda app: early_stop.block_stop_signals_for_spawned_workers(), "main_process_ready")
    app.register_listener(lambda app: watchdog.halt(), "main_process_stop")
    try:
        if early_stop.early_stop_requested():  # met the preflight or the app's set-up
            logger.info("stop signal during start-up: not serving")
            return 0
        logger.info("serving on http://{}:{} with {} worker(s)", host, port, workers)
        Sanic.serve(primary=app, app_loader=loader)
    finally:
        if own_metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def listen_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, or None: a socket bound with the options
    Sanic's own `bind_socket` uses (SO_REUSEADDR, so a port left in TIME_WAIT is no
    problem), then closed at once."""
    from sanic.server.socket import bind_socket

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        sock = bind_socket(host, port)
    except OSError as exc:  # in use, not an address of this host, a privileged port, a host name unknown
        return f"cannot listen on {where} (HOST/PORT or --host/--port): {exc.strerror or exc}"
    sock.close()
    return None


def share_stopping_event(app: App) -> None:
    """The event the main process sets when it stops: the workers' second witness of a stop
    whose signal met them while they were starting (manas360.edge.startup_stop)."""
    import multiprocessing

    app.shared_ctx.stopping = multiprocessing.get_context("spawn").Event()
    if early_stop.early_stop_requested():
        app.shared_ctx.stopping.set()


class GracefulStop:
    """The main process's SIGTERM/SIGINT handler (the first signal; a second one goes to
    Sanic's, which kills the workers). Sanic's own handler has two faults, both seen in the
    SIGTERM drill:

    - The workers close their listeners as they start draining, but the main process holds
      the shared socket until every worker has exited; meanwhile the kernel keeps
      completing connections nobody accepts, which hang and are then reset. Here the
      socket is shut down first, so new connections are refused at once.
    - It stops the workers from inside the handler, through the worker-state manager
      connection that the interrupted monitor loop may be halfway through using; the
      replies then go to the wrong caller, the main process dies with a traceback (exit 1)
      and the workers are killed undrained. Here the handler only posts `__TERMINATE__`,
      which the monitor loop itself handles exactly like Sanic's shutdown.
    """

    def __init__(self, *, on_stop: Callable[[], None]) -> None:
        self._on_stop = on_stop
        self._stopping = False

    def install(self, app: App) -> None:
        manager = app.manager
        sockets = [info.settings["sock"] for info in app.state.server_info if info.settings.get("sock")]
        # What signal.getsignal answers: a callable, SIG_DFL or SIG_IGN, or None (set outside Python).
        sanic_handlers: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {
            signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)
        }

        def handle(signum: int, frame: FrameType | None) -> None:
            # Signal context: no logging here (the logger's lock may be held by this thread).
            if self._stopping:
                previous = sanic_handlers[signum]
                if callable(previous):
                    previous(signum, frame)
                elif previous == signal.SIG_DFL:  # the default disposition: restore it, signal again
                    signal.signal(signum, signal.SIG_DFL)
                    os.kill(os.getpid(), signum)
                return
            self._stopping = True
            self._on_stop()
            stopping = getattr(app.shared_ctx, "stopping", None)
            if stopping is not None:  # before the workers are told: none may miss it
                stopping.set()
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)
            manager.monitor_publisher.send("__TERMINATE__")

        for signum in sanic_handlers:
            signal.signal(signum, handle)
        # A signal that met start-up: recorded before Sanic's manager existed, or taken by
        # its handler in the instant between the manager's creation and this listener.
        if early_stop.early_stop_requested() or getattr(manager, "_shutting_down", False):
            handle(signal.SIGTERM, None)  # the workers stop as soon as they serve


class WorkerWatchdog:
    """Restarts server workers that died. Sanic's manager only marks such a worker FAILED
    and serves on with one fewer; this thread in the main process asks the manager to
    restart it, with the message `app.m.restart(name)` sends (processed by the manager's
    own monitor loop, so no process is touched from this thread)."""

    def __init__(self, *, interval_s: float = 0.1) -> None:
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._restarts: dict[str, deque[float]] = {}
        self._asked: dict[str, tuple[int, float]] = {}  # name -> (its start count, when we asked)

    def start(self, app: App) -> None:
        threading.Thread(target=self._run, args=(app.manager,), name="worker-watchdog", daemon=True).start()

    def halt(self) -> None:
        """Restart nothing more (the service is stopping)."""
        self._stopping.set()

    def _run(self, manager: WorkerManager) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self._restart_dead_workers(manager)
            except (OSError, EOFError):  # the state manager or the pipe is gone: Sanic is stopping
                return

    def _restart_dead_workers(self, manager: WorkerManager) -> None:
        for name, state in dict(manager.worker_state).items():
            if state.get("server") and state.get("state") == "FAILED" and self._may_restart(name, state):
                logger.warning("worker {} (pid {}) died; restarting it", name, state.get("pid"))
                manager.monitor_publisher.send(f"{name}:")

    def _may_restart(self, name: str, state: dict[str, Any]) -> bool:
        now = time.monotonic()
        starts = state.get("starts", 0)
        asked = self._asked.get(name)
        if asked and asked[0] == starts and now - asked[1] < RESTART_WINDOW_S:
            return False  # our request is still pending (the start count moves once it ran)
        recent = self._restarts.setdefault(name, deque())
        while recent and now - recent[0] > RESTART_WINDOW_S:
            recent.popleft()
        if len(recent) >= RESTARTS_PER_WINDOW:
            return False
        recent.append(now)
        self._asked[name] = (starts, now)
        return True
