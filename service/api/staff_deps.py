"""What the admin and review routes share: staff authentication and database work off the event
loop, with the store's errors turned into the API's (404, 409, 422, 503)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from service.access.staff import Staff, StaffGate
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
