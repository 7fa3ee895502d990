"""Pure ASGI middleware: what a request that fails, or whose client leaves, ends as.

* A bug (an exception no handler turned into an answer): the client gets the 500 JSON with
  ``Connection: close``, and the server closes the connection after it, properly; the traceback is
  logged once (service/core/errors.py ``internal_error_response``). The exception stops here: left
  to go on, Starlette would re-raise it to uvicorn, which logs it again and drops the keep-alive
  connection without a word (the client's next request on it got no answer at all).
* A client that hangs up before its request body is in (uvicorn's ``http.disconnect`` while the
  body is read): whatever the application then raises or answers, the request is recorded as
  :data:`~service.core.errors.CLIENT_CLOSED_STATUS` (499, ``client_closed``), one access-log line, no
  traceback, and nothing is sent: it is not a server error.

It sits right inside :class:`~service.api.request_context.RequestContextMiddleware`, which reads the
outcome from the ASGI scope.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import CLIENT_CLOSED_SCOPE_KEY, ERROR_CODE_SCOPE_KEY, internal_error_response

logger = logging.getLogger("memotion.gateway")


class ErrorBoundaryMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"body_done": False, "left": False, "started": False}

        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["body_done"] = not message.get("more_body", False)
            elif message["type"] == "http.disconnect" and not state["body_done"]:
                state["left"] = True
                scope[CLIENT_CLOSED_SCOPE_KEY] = True
                scope[ERROR_CODE_SCOPE_KEY] = "client_closed"
            return message

        async def watched_send(message: Message) -> None:
            if state["left"]:
                return  # nobody to answer
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except Exception as exc:
            if state["left"]:
                logger.info("client closed the connection before its request body was in (%s)", type(exc).__name__)
                return
            if state["started"]:
                raise  # part of an answer is out: only closing the connection can tell the client
            await internal_error_response(scope, exc)(scope, receive, send)
