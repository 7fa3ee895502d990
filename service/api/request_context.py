"""Pure ASGI middleware around every HTTP request: X-Request-ID, one access-log line, request metrics.

It sits inside Starlette's ServerErrorMiddleware and wraps the error boundary
(service/api/error_boundary.py), which answers a bug with a 500 and marks a client that hung up
mid-body; such a request is recorded as 499 ``client_closed``, not as the status the application
tried to send. An exception that still gets here is recorded as a 500 and goes on.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import (
    CLIENT_CLOSED_SCOPE_KEY,
    CLIENT_CLOSED_STATUS,
    CLIENT_SCOPE_KEY,
    ERROR_CODE_SCOPE_KEY,
    REQUEST_ID_SCOPE_KEY,
)
from service.core.metrics import GatewayMetrics

access_logger = logging.getLogger("memotion.gateway.access")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


def route_label(scope: Scope) -> str:
    """The matched route's path template (bounded cardinality), or 'unmatched'."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class _Exchange:
    """One request as the middleware sees it: its id, the status sent and the body bytes received."""

    def __init__(self, request_id: str, receive: Receive, send: Send) -> None:
        self.request_id = request_id
        self.status = 500
        self.received = 0
        self._receive = receive
        self._send = send

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
            headers.append((b"x-request-id", self.request_id.encode("latin-1")))
            message = {**message, "headers": headers}
        await self._send(message)


def _log_access(scope: Scope, exchange: _Exchange, route: str, seconds: float, code: str | None) -> None:
    """The access-log line (and its structured fields) of one finished request."""
    status = exchange.status
    method = scope.get("method", "-")
    path = str(scope.get("path", "-"))[:200].encode("unicode_escape").decode("ascii")
    access_logger.info(
        "%s %s %s %d %.1fms in=%dB%s",
        exchange.request_id,
        method,
        path,
        status,
        seconds * 1000.0,
        exchange.received,
        f" error={code}" if status >= 400 else "",
        extra={
            "event": "request",
            "request_id": exchange.request_id,
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000.0, 2),
            "bytes_in": exchange.received,
            "client": scope.get(CLIENT_SCOPE_KEY, "-"),
            "error": code if status >= 400 else None,
        },
    )


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or uuid.uuid4().hex
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        start = time.perf_counter()
        exchange = _Exchange(request_id, receive, send)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            exchange.status = 500
            scope.setdefault(ERROR_CODE_SCOPE_KEY, "internal_error")
            raise
        finally:
            self._record(scope, exchange, time.perf_counter() - start)

    def _record(self, scope: Scope, exchange: _Exchange, seconds: float) -> None:
        """Request metrics, the error counter for a 4xx/5xx, and the access-log line."""
        code = scope.get(ERROR_CODE_SCOPE_KEY)
        if scope.get(CLIENT_CLOSED_SCOPE_KEY):
            exchange.status, code = CLIENT_CLOSED_STATUS, "client_closed"
        route = route_label(scope)
        self.metrics.observe_request(route, scope.get("method", "-"), exchange.status, seconds)
        if exchange.status >= 400:
            code = code or "unknown"
            self.metrics.observe_error(code)
        _log_access(scope, exchange, route, seconds, code)
