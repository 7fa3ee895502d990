"""What the admin and review routes share: staff authentication and database work off the event
loop, with the store's errors turned into the API's (404, 409, 422, 503)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from service.access.staff import Staff, StaffGate
from service.api.schemas import ErrorResponse
from service.core.errors import CLIENT_SCOPE_KEY, ApiError
from service.moderation.moderator import Moderator
from service.moderation.policy import UnknownHead
from service.moderation.policy_store import PolicyNotFound
from service.moderation.review_store import ItemConflict, ItemNotFound

T = TypeVar("T")

_staff_bearer = HTTPBearer(auto_error=False, description="A staff key (MEMOTION_ADMIN_KEYS): 'Bearer <key>'.")


def _gate(request: Request) -> StaffGate:
    return request.app.state.staff


def _staff(request: Request, need: str) -> Staff:
    staff = _gate(request).authenticate(request.headers.get("authorization"), need)  # type: ignore[arg-type]
    request.scope[CLIENT_SCOPE_KEY] = f"staff:{staff.name}"
    return staff


def admin(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_staff_bearer)] = None) -> Staff:
    return _staff(request, "admin")


def moderator(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_staff_bearer)] = None
) -> Staff:
    return _staff(request, "moderator")


AdminDep = Annotated[Staff, Depends(admin)]
ModeratorDep = Annotated[Staff, Depends(moderator)]


def current_moderator(request: Request) -> Moderator:
    found: Moderator | None = getattr(request.app.state, "moderator", None)
    if found is None:
        raise ApiError(
            503, "not_ready", "the database is not open (the gateway is starting or stopping); retry shortly"
        )
    return found


def _translate(err: Exception) -> ApiError:
    if isinstance(err, (PolicyNotFound, ItemNotFound)):
        return ApiError(404, "not_found", str(err.args[0]) if err.args else "not found")
    if isinstance(err, ItemConflict):
        return ApiError(409, "conflict", str(err))
    if isinstance(err, UnknownHead):
        return ApiError(422, "invalid_policy", str(err))
    if isinstance(err, IntegrityError):
        return ApiError(409, "conflict", "a concurrent change got there first; read again and retry")
    return ApiError(503, "database_unavailable", "the database did not answer in time; retry shortly")


async def in_session(request: Request, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction in a worker thread; store errors become API errors."""
    db = current_moderator(request).db

    def run() -> T:
        with db.session() as session:
            return work(session)

    try:
        return await anyio.to_thread.run_sync(run)
    except (PolicyNotFound, ItemNotFound, ItemConflict, UnknownHead, SQLAlchemyError) as err:
        raise _translate(err) from err


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these statuses and the ones every staff endpoint may answer."""
    return {status: {"model": ErrorResponse} for status in (*statuses, 401, 403, 422, 503)}


# (method, path, endpoint, summary, extra error statuses)
Route = tuple[str, str, Callable[..., Any], str, Sequence[int]]


def staff_router(prefix: str, tag: str, routes: Sequence[Route], **extra: dict[str, Any]) -> APIRouter:
    """A router of staff endpoints; ``extra``: more add_api_route options per endpoint name."""
    router = APIRouter(prefix=prefix, tags=[tag])
    for method, path, endpoint, summary, statuses in routes:
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            summary=summary,
            responses=error_responses(*statuses),
            **extra.get(endpoint.__name__, {}),
        )
    return router
