"""Pure ASGI middleware that bounds a request body in size and in time.

* ``Content-Length`` over the limit: 413 JSON without handing the request to the application.
* No ``Content-Length`` (chunked upload): bytes are counted as they stream in; once over the limit
  reading stops (``receive`` raises :class:`BodyTooLarge`) and the client gets 413 JSON, whatever the
  application behind tried to answer.
* Slow clients: the whole body must arrive within ``body_timeout_s`` of the request's start, and an
  upload that stops (no bytes for ``body_idle_timeout_s``) gets its 408 then, without waiting for the
  total: 408 JSON and the connection is closed, so a stalled client holds neither a worker nor a
  graceful shutdown for longer. (The request line and headers have their own time-out in the HTTP
  protocol, which also ends stalled uploads at once on shutdown: service/api/http_timeouts.py.)
* Before a 413 the rest of the body is read and thrown away (up to :data:`DRAIN_BYTES` and
  :data:`DRAIN_SECONDS`), so a client that is still sending sees the 413 instead of a connection
  reset (closing a socket with unread data makes the kernel send RST). Not with
  ``Expect: 100-continue``: such a client has not sent the body, and never will.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import ApiError, error_response

DEFAULT_BODY_TIMEOUT_S = 60.0
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 5.0


def _format_bytes(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count} bytes ({count / (1024 * 1024):.1f} MiB)"
    if count >= 1024:
        return f"{count} bytes ({count / 1024:.0f} KiB)"
    return f"{count} bytes"


class BodyTooLarge(ApiError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"the request body is larger than the {_format_bytes(max_bytes)} allowed; send a smaller image",
            headers={"Connection": "close"},
        )


class BodyTimeout(ApiError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            "request_timeout",
            f"the request body did not arrive within {seconds:g} s; send it again on a faster connection",
            headers={"Connection": "close"},
        )


class BodyIdleTimeout(ApiError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            "request_timeout",
            f"no bytes of the request body arrived for {seconds:g} s; send it again",
            headers={"Connection": "close"},
        )


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def drain(receive: Receive, max_bytes: int = DRAIN_BYTES, seconds: float = DRAIN_SECONDS) -> bool:
    """Read and discard the rest of a request body; True when it ended within the limits."""
    drained = 0
    with anyio.move_on_after(seconds):
        while drained <= max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return False
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
    return False


class BodyLimitMiddleware:
    """``max_bytes`` for every path, except those in ``per_path`` (e.g. the batch route)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        per_path: dict[str, int] | None = None,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        body_idle_timeout_s: float | None = None,
    ) -> None:
        if max_bytes <= 0 or any(v <= 0 for v in (per_path or {}).values()):
            raise ValueError("max_bytes must be positive")
        if body_timeout_s <= 0 or (body_idle_timeout_s is not None and body_idle_timeout_s <= 0):
            raise ValueError("body_timeout_s and body_idle_timeout_s must be positive")
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})
        self.body_timeout_s = body_timeout_s
        self.body_idle_timeout_s = min(body_idle_timeout_s or body_timeout_s, body_timeout_s)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
        if isinstance(error, BodyTooLarge) and _header(scope, b"expect") != b"100-continue":
            await drain(receive)
        response = error_response(error.status, error.code, error.message, scope=scope, headers=error.headers)
        await response(scope, receive, send)

    def _wait(self, deadline: float) -> tuple[float, ApiError]:
        """How long the next body bytes may take, and the 408 if they do not come: the idle
        time-out, or what is left of the whole body's time."""
        left = deadline - anyio.current_time()
        if left > self.body_idle_timeout_s:
            return self.body_idle_timeout_s, BodyIdleTimeout(self.body_idle_timeout_s)
        return max(0.0, left), BodyTimeout(self.body_timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get(scope.get("path", ""), self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await self._answer(scope, receive, send, BodyTooLarge(max_bytes))
            return
        deadline = anyio.current_time() + self.body_timeout_s
        received = 0
        body_done = False
        failure: ApiError | None = None
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, body_done, failure
            if failure is not None:
                raise failure
            if body_done:  # after the body: waiting for a disconnect is not bounded here
                return await receive()
            wait_s, late = self._wait(deadline)
            with anyio.move_on_after(wait_s):
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    body_done = not message.get("more_body", False)
                    if received > max_bytes:
                        failure = BodyTooLarge(max_bytes)
                        raise failure
                return message
            failure = late
            raise failure

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if failure is not None and not response_started:
                return  # whatever the application answers after the cut-off, the client gets ours
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Cut off mid-body, the application may give up in any way; the answer is still ours.
            if failure is None or response_started:
                raise
        if failure is not None and not response_started:
            await self._answer(scope, receive, send, failure)
