"""A stop signal that meets `manas360 serve` while it starts, in the main process.

From the first moment of `serve` until Sanic's manager takes the signals, a SIGTERM's
default action killed the process halfway (status -15, workers perhaps already spawned).
`record_early_stops` records it instead; `serve` checks it between its steps and hands it
to the graceful stop once that is in place (manas360.server).

Workers are spawned with the stop signals blocked (`block_stop_signals_for_spawned_workers`,
the technique CPython's own resource tracker uses around its spawn), so that a worker still
importing or opening its pools is not interrupted by a KeyboardInterrupt wherever it is;
it unblocks them once its own handlers are in place (manas360.edge.startup_stop).

This module imports nothing heavy: the command line installs the recording first thing.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_early_stops: list[int] = []


def record_early_stops() -> None:
    """Until Sanic's manager takes them, SIGTERM/SIGINT are recorded (see
    `early_stop_requested`) instead of killing the process halfway through starting."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _record_stop)


def _record_stop(signum: int, frame: FrameType | None) -> None:
    _early_stops.append(signum)  # signal context: nothing that takes a lock


def early_stop_requested() -> bool:
    return bool(_early_stops)


def block_stop_signals_for_spawned_workers() -> None:
    """Block SIGTERM/SIGINT in the main thread, which spawns the workers: a child inherits
    the mask. The main process still gets them: a thread started here with them unblocked
    receives them, and Python runs the handlers in the main thread as always."""
    threading.Thread(target=threading.Event().wait, name="stop-signal-receiver", daemon=True).start()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
