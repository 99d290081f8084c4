"""The HTTP protocol `manas360 serve` runs: the edge protocol plus a shutdown drain that
loses no request (see DrainingHttpProtocol)."""

from __future__ import annotations

from sanic import Request
from sanic.http import Http
from sanic.http.constants import Stage

from manas360.edge.protocol import EdgeHttpProtocol


class DrainingHttpProtocol(EdgeHttpProtocol):
    """The edge protocol (request deadlines a slow client cannot stretch) with a shutdown
    drain that loses nothing. On SIGTERM Sanic closes the connections it deems idle and
    waits up to GRACEFUL_SHUTDOWN_TIMEOUT for the others; left alone it would

    - keep a busy keep-alive connection open after its response, so a client that keeps
      sending keeps the worker serving until the timeout (15 s), when whatever is then in
      flight is aborted (measured: a 16 s stop and dozens of reset requests under load);
    - close a connection whose next request has already arrived but is not parsed yet
      (it still counts as idle): a request sent before the signal, dropped unanswered.

    Here every response during the drain carries `Connection: close`, so a busy connection
    ends with its current request, and an arrived request is answered first.
    """

    def _setup(self) -> None:
        super()._setup()  # type: ignore[no-untyped-call]  # unannotated in sanic
        self.request_handler = self._handle_request

    async def _handle_request(self, request: Request) -> None:
        # Sanic's flag: this worker is draining. (This protocol's streams are HTTP/1 ones.)
        if self.signal.stopped and isinstance(request.stream, Http):
            request.stream.keep_alive = False
        await self.app.handle_request(request)

    def close_if_idle(self) -> bool:
        http = self._http
        if http is not None:
            http.keep_alive = False
            if http.stage is Stage.IDLE and self.recv_buffer:
                return False  # a request has arrived: answer it, then close
        return super().close_if_idle()
