"""Sanic's HTTP protocol with deadlines a slow client cannot stretch.

Sanic's REQUEST_TIMEOUT and RESPONSE_TIMEOUT are measured from the connection's last
activity, and every received byte counts as activity: a client sending one header byte a
second holds a connection (and its buffers) for hours whatever the timeout
(slow loris). Here a byte only restarts the clock when no request is in progress, so:

- the request head must arrive within REQUEST_TIMEOUT_S of its first byte;
- the body too, counted from the same first byte;
- both answer 408 `RequestTimeout` and close the connection: the client was slow;
- head, body and handler together get RESPONSE_TIMEOUT (= REQUEST_TIMEOUT_S); a handler
  still running then is Sanic's response timeout (the server was slow);
- an idle keep-alive connection still closes after KEEP_ALIVE_TIMEOUT_S.
"""

from __future__ import annotations

from time import monotonic

from sanic.exceptions import RequestTimeout
from sanic.http.constants import Stage
from sanic.server.protocols.http_protocol import HttpProtocol


class EdgeHttpProtocol(HttpProtocol):
    def data_received(self, data: bytes) -> None:
        http = getattr(self, "_http", None)
        if http is None or http.stage is Stage.IDLE:
            super().data_received(data)
            return
        started = self._time
        super().data_received(data)
        self._time = started

    def check_timeouts(self) -> None:
        http = getattr(self, "_http", None)
        if (
            http is not None
            and self._task
            and http.stage is Stage.HANDLER
            and http.request_body
            and http.exception is None
            and monotonic() - self._time > self.request_timeout
        ):
            # The handler is still waiting for the body: the client is slow, not the server.
            http.exception = RequestTimeout("Request Timeout")
            self._task.cancel()
            return
        super().check_timeouts()  # type: ignore[no-untyped-call]  # unannotated in sanic
