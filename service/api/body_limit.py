"""Pure ASGI middleware that caps the size of a request body.

* ``Content-Length`` over the limit: 413 JSON at once, the body is never read.
* No ``Content-Length`` (chunked upload): bytes are counted as they stream in; once over the limit
  reading stops (``receive`` raises :class:`BodyTooLarge`) and the client gets 413 JSON, whatever the
  application behind tried to answer.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import ApiError, error_response


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


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    """``max_bytes`` for every path, except those in ``per_path`` (e.g. the batch route)."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        if max_bytes <= 0 or any(v <= 0 for v in (per_path or {}).values()):
            raise ValueError("max_bytes must be positive")
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def _reject(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        error = BodyTooLarge(max_bytes)
        response = error_response(error.status, error.code, error.message, scope=scope, headers=error.headers)
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get(scope.get("path", ""), self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await self._reject(scope, receive, send, max_bytes)
            return

        received = 0
        exceeded = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    exceeded = True
                    raise BodyTooLarge(max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded and not response_started:
                return  # whatever the application answers after the cut-off, the client gets our 413
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Cut off mid-body, the application may give up in any way; the answer is still 413.
            if not exceeded or response_started:
                raise
        if exceeded and not response_started:
            await self._reject(scope, receive, send, max_bytes)
