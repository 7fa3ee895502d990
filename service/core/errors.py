"""One JSON error shape for every 4xx/5xx answer, and the FastAPI handlers that produce it.

``{"error": {"code": "snake_case_code", "message": "what is wrong and what is allowed", "status": 413}}``
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("memotion.gateway")

# The ASGI scope key under which the error code of the answer is left for logging and metrics.
ERROR_CODE_SCOPE_KEY = "memotion.error_code"
REQUEST_ID_SCOPE_KEY = "memotion.request_id"
CLIENT_SCOPE_KEY = "memotion.client"  # the API key's name, set by service.access.gatekeeper
# Set when the client hung up before its request body was in (service/api/error_boundary.py): the
# request is recorded with this status (nginx's "client closed request"), not as a server error.
CLIENT_CLOSED_SCOPE_KEY = "memotion.client_closed"
CLIENT_CLOSED_STATUS = 499


class ApiError(StarletteHTTPException):
    """An answer the client must get as ``status`` with a machine code and a human message.

    It is a Starlette ``HTTPException`` so that FastAPI passes it through unchanged even when it is
    raised while the request body is being read (the body-size limit does that).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class GatewayStartupError(RuntimeError):
    """The gateway cannot start (unusable model repository, unsupported backend, missing OCR weights)."""


def printable(text: str) -> str:
    """``text`` as UTF-8 can carry it: a lone surrogate echoed from a request (a field name, a
    thresholds name) is written as its escape (``\\ud800``) instead of failing the answer."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": printable(message), "status": status}}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    scope: MutableMapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The JSON error answer; records ``code`` in the ASGI scope for the access log and metrics."""
    if scope is not None:
        scope[ERROR_CODE_SCOPE_KEY] = code
    return JSONResponse(error_body(status, code, message), status_code=status, headers=headers)


_STATUS_CODES: dict[int, str] = {
    400: "invalid_body",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


def code_for_status(status: int) -> str:
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _http_message(request: Request, exc: StarletteHTTPException) -> str:
    if exc.status_code == 404:
        return (
            f"no such route: {request.url.path}; see /docs for the API "
            "(POST /v1/classify, GET /healthz, /readyz, /metrics)"
        )
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        suffix = f"; allowed: {allowed}" if allowed else ""
        return f"method {request.method} is not allowed on {request.url.path}{suffix}"
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 400:
        # Starlette / FastAPI failing to parse the body (broken multipart, bad encoding).
        return (
            f"the request body could not be parsed ({detail.rstrip('.')}); send multipart/form-data "
            "with an 'image' file field and an optional 'text' field"
        )
    return detail


def _field_path(loc: Sequence[Any]) -> str:
    parts = [printable(str(p)) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or ".".join(str(p) for p in loc) or "request"


def validation_message(
    errors: Sequence[Mapping[str, Any]],
    hint: str = " (see /docs for the request formats)",
) -> tuple[str, str]:
    """(code, message) for FastAPI validation errors, naming each offending field."""
    problems = []
    for err in errors:
        field = _field_path(err.get("loc", ()))
        if err.get("type") == "missing":
            problems.append(f"field '{field}' is required")
        else:
            problems.append(f"field '{field}': {err.get('msg', 'invalid value')}")
    types = {str(e.get("type")) for e in errors}
    code = {"missing": "missing_field", "invalid_text": "invalid_text"}.get(
        types.pop() if len(types) == 1 else "", "invalid_request"
    )
    return code, "; ".join(problems) + hint


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, scope=request.scope, headers=exc.headers)


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(
        exc.status_code,
        code_for_status(exc.status_code),
        _http_message(request, exc),
        scope=request.scope,
        headers=headers,
    )


async def validation_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    code, message = validation_message(exc.errors())
    return error_response(422, code, message, scope=request.scope)


def internal_error_response(scope: MutableMapping[str, Any], exc: BaseException) -> JSONResponse:
    """Last resort: a bug, not bad input. Logged with its traceback; the client gets 500 JSON with
    ``Connection: close`` (the connection's state is unknown after a bug: it is closed properly,
    never dropped silently)."""
    request_id = scope.get(REQUEST_ID_SCOPE_KEY, "-")
    logger.error(
        "unhandled error in %s %s (request %s)",
        scope.get("method", "-"),
        scope.get("path", "-"),
        request_id,
        exc_info=exc,
    )
    headers = {"Connection": "close"}
    if request_id != "-":
        headers["X-Request-ID"] = request_id
    return error_response(
        500,
        "internal_error",
        f"the gateway failed while handling this request (request id {request_id}); this is a bug, "
        "please report it with the request id",
        scope=scope,
        headers=headers,
    )


async def unhandled_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    return internal_error_response(request.scope, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_exception_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(Exception, unhandled_exception_handler)
