"""The HTTP protocol the gateway runs under uvicorn: uvicorn's httptools protocol plus a header
time-out, which uvicorn does not have (a client that opens a connection, or starts a request, and
then sends its request line and headers byte by byte would hold the connection for ever).

From the moment a connection opens, or the first byte of a request arrives, the request line and all
headers must be in within ``header_timeout_s``; otherwise the client gets 408 JSON and the
connection is closed. The body has its own time-outs (service/api/body_limit.py). Pass
:func:`protocol_factory` as ``uvicorn.run(http=...)``; it pickles, so worker processes get it too.

On a graceful shutdown uvicorn waits for every request in flight; an upload that has stopped
(no body bytes for :data:`STALLED_S`) is not worth waiting for: it gets 408 and its connection is
closed at once (its application task then sees the client gone), so shutdown does not wait out its
body time-out. Uploads still arriving, and requests being answered, are waited for as before.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STALLED_S = 1.0  # no body bytes for this long: a stopped upload, as far as shutdown is concerned


def _timeout_response(seconds: float, message: str | None = None) -> bytes:
    message = message or f"the request line and headers did not arrive within {seconds:g} s; send the request again"
    body = json.dumps({"error": {"code": "request_timeout", "message": message, "status": 408}}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class HeaderTimeoutProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._last_body_at = 0.0  # loop time of the request's last body bytes (or of its headers)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # a pipelined request is still being answered: judge the next one after it
            return
        self.transport.write(_timeout_response(self.header_timeout_s))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._last_body_at = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._last_body_at = self.loop.time()
        super().on_body(body)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown, except that an upload that has stopped is ended at once."""
        cycle = self.cycle
        stalled = self.loop.time() - self._last_body_at >= STALLED_S
        if cycle is not None and cycle.more_body and not cycle.response_started and stalled:
            if self.transport is not None and not self.transport.is_closing():
                message = "the gateway is shutting down and the request body had stopped arriving; send it again"
                self.transport.write(_timeout_response(0.0, message))
                self.transport.close()
            return
        super().shutdown()


def protocol_factory(header_timeout_s: float) -> Any:
    """What ``uvicorn.run(http=...)`` takes: the protocol class with the time-out bound."""
    return functools.partial(HeaderTimeoutProtocol, header_timeout_s=header_timeout_s)
