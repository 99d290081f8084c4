"""A stop asked for while a worker is still starting must not be lost.

Sanic's manager stops a worker by sending it SIGINT, and the worker's handler (`app.stop`,
which calls `loop.stop()`) is installed before the `after_server_start` listeners run inside
`loop.run_until_complete(...)`. Met during that start-up, the stop went missing two ways,
both seen in the SIGTERM test (about one run in five when the signal met a starting
worker): a `loop.stop()` ended a run_until_complete that was ending anyway, and asyncio
forgot it; or uvloop never ran the handler for a signal that landed between the start-up's
run_until_complete calls. Either way the worker entered `run_forever()` and served on until
the manager killed it at GRACEFUL_SHUTDOWN_TIMEOUT: a 15-20 s stop instead of ~2 s.

So the main process says it is stopping a second way, one that cannot be dropped: it sets
a shared event (`app.shared_ctx.stopping`, made by `manas360.server`) before it asks the
manager to stop the workers. In each worker, `install` (first thing in
`after_server_start`) takes over the stop signals and starts a small task: while the worker
starts, a signal only records the stop; once it serves (`app.state.is_running`, set right
before `run_forever`), the task stops it if a stop was recorded or the event is set, and
keeps watching the event for WATCH_S before it ends. Once serving, a signal stops the worker
directly, as Sanic's handler would.

A worker that got the manager's SIGINT while still importing or opening its pools raised
KeyboardInterrupt wherever it was (a traceback in the log), so workers are spawned with the
stop signals blocked (`manas360.early_stop`) and `install` unblocks them once its handlers
are in place; the shared event covers a signal Sanic discarded meanwhile.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from sanic import Sanic

from manas360.early_stop import STOP_SIGNALS

WATCH_S = 5.0
"""How long after it starts serving a worker still watches for a stop whose signal it missed."""
_POLL_S = 0.02


class StartupStop:
    """One worker's stop handling around its start (see the module docstring)."""

    def __init__(self, app: Sanic, *, stopping: Any = None) -> None:  # type: ignore[type-arg]
        self._app = app
        self._stopping = stopping
        """The main process's event (multiprocessing.Event), or None outside `manas360 serve`."""
        self.recorded = False
        """A stop signal arrived while the worker was starting."""
        self.stopped = False
        """The worker was told to stop (by the handler or by the watch)."""
        self._starting = True

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.on_signal)
        # Spawned with them blocked (see the module docstring); one that is pending arrives now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        loop.create_task(self._stop_once_serving(), name="startup-stop-watch")

    def on_signal(self) -> None:
        if self._starting:
            self.recorded = True
        else:
            self._stop()

    async def _stop_once_serving(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._app.state.is_running:
            await asyncio.sleep(_POLL_S)
        # Inside run_forever from here on: a stop is not lost any more.
        self._starting = False
        deadline = loop.time() + WATCH_S
        while not self.stopped:
            if self.recorded or (self._stopping is not None and self._stopping.is_set()):
                self._stop()
                return
            if loop.time() >= deadline:
                return
            await asyncio.sleep(_POLL_S)

    def _stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._app.stop(terminate=False)  # what Sanic's own handler does


def install(app: Sanic) -> StartupStop:  # type: ignore[type-arg]
    """Take over the worker's stop signals (call it first in `after_server_start`)."""
    guard = StartupStop(app, stopping=getattr(app.shared_ctx, "stopping", None))
    guard.install()
    return guard
