"""Pure ASGI middleware around every HTTP request: X-Request-ID, one access-log line, request metrics.

It sits inside Starlette's ServerErrorMiddleware, so for an unhandled exception it records a 500
and lets the exception go on to the catch-all handler.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import ERROR_CODE_SCOPE_KEY, REQUEST_ID_SCOPE_KEY
from service.core.metrics import GatewayMetrics

CLIENT_SCOPE_KEY = "memotion.client"  # the API key's name, set by service.access.gatekeeper

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
        status = 500
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counting_receive, send_with_id)
        except Exception:
            status = 500
            scope.setdefault(ERROR_CODE_SCOPE_KEY, "internal_error")
            raise
        finally:
            seconds = time.perf_counter() - start
            route = route_label(scope)
            method = scope.get("method", "-")
            self.metrics.observe_request(route, method, status, seconds)
            code = scope.get(ERROR_CODE_SCOPE_KEY)
            if status >= 400:
                code = code or "unknown"
                self.metrics.observe_error(code)
            path = str(scope.get("path", "-"))[:200].encode("unicode_escape").decode("ascii")
            client = scope.get(CLIENT_SCOPE_KEY, "-")
            access_logger.info(
                "%s %s %s %d %.1fms in=%dB%s",
                request_id,
                method,
                path,
                status,
                seconds * 1000.0,
                received,
                f" error={code}" if status >= 400 else "",
                extra={
                    "event": "request",
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000.0, 2),
                    "bytes_in": received,
                    "client": client,
                    "error": code if status >= 400 else None,
                },
            )
