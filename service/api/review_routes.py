"""The review queue (staff key, ``moderator`` or ``admin``): list (filters, paging), one item with
the decided memes it repeats, its thumbnail, claim, decide (action, corrected labels, note)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from service.api.staff_deps import ModeratorDep, Route, current_moderator, in_session, staff_router
from service.api.wire import UnicodeText
from service.core.errors import ApiError
from service.moderation import review_store
from service.moderation.corrections import LabelError, corrected_labels
from service.moderation.policy import NAME_PATTERN, PolicyRules

ItemId = Annotated[int, Path(ge=1, le=2**62, description="The review item's id.")]


class ReviewItemBody(BaseModel):
    id: int
    created_at: str | None
    status: Literal["pending", "claimed", "decided"]
    reason: str = Field(description="review: the policy said so; sample: a sampled share of the other answers")
    client: str
    policy: str
    policy_version: int
    action: str = Field(description="The policy's action when the meme was classified.")
    decision: dict[str, Any]
    image_sha256: str | None
    has_thumbnail: bool
    has_image: bool
    text: str
    model_version: str
    claimed_by: str | None
    claimed_at: str | None
    decided_by: str | None
    decided_at: str | None
    decided_action: str | None
    corrected_labels: dict[str, str] | None
    note: str | None


class ReviewItemDetail(ReviewItemBody):
    result: dict[str, Any] = Field(description="The classification answer: scores, labels, votes.")
    image_phash: str | None = Field(description="64-bit perceptual hash (dHash), hex.")
    thumbnail_base64: str | None
    similar: list[dict[str, Any]] = Field(description="Decided memes this one repeats (same bytes or picture).")
    heads: dict[str, dict[str, Any]] = Field(
        description="Every head the labels may be corrected on: its labels and the models' label for this meme."
    )


class ReviewPage(BaseModel):
    items: list[ReviewItemBody]
    next_after: int | None = Field(description="Pass as ?after= for the next page; null on the last page.")


class ReviewDecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["allow", "review", "block"] = Field(description="What should happen to this meme.")
    labels: dict[str, str] = Field(
        default_factory=dict, max_length=16, description='Corrected labels by head, e.g. {"sentiment": "negative"}.'
    )
    task_b: dict[str, bool] = Field(
        default_factory=dict, max_length=16, description='Task B corrections, e.g. {"offensive": true}.'
    )
    note: UnicodeText | None = Field(default=None, max_length=2000)  # stored: the text gate (no NUL, no surrogate)


async def list_reviews(
    request: Request,
    staff: ModeratorDep,
    status: Annotated[Literal["pending", "claimed", "decided"] | None, Query()] = None,
    action: Annotated[Literal["allow", "review", "block"] | None, Query()] = None,
    policy: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    client: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="Items after this id (paging).")] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReviewPage:
    items, next_after = await in_session(
        request,
        lambda s: review_store.list_items(
            s, status=status, action=action, policy=policy, client=client, after_id=after, limit=limit
        ),
    )
    return ReviewPage(items=[ReviewItemBody.model_validate(i) for i in items], next_after=next_after)


def _detail(session: Any, item_id: int) -> dict[str, Any]:
    row = review_store.get_row(session, item_id)
    distance = PolicyRules().repost_max_distance
    similar = review_store.decided_reposts(session, row.image_sha256, row.image_phash, distance, exclude_id=row.id)
    return {**review_store.item_dict(row, full=True), "similar": similar}


async def get_review(request: Request, staff: ModeratorDep, item_id: ItemId) -> ReviewItemDetail:
    detail = await in_session(request, lambda s: _detail(s, item_id))
    heads, predicted, _ = _heads(request, detail["result"])
    detail["heads"] = {head: {"labels": labels, "predicted": predicted[head]} for head, labels in heads.items()}
    return ReviewItemDetail.model_validate(detail)


async def get_thumbnail(request: Request, staff: ModeratorDep, item_id: ItemId) -> Response:
    thumbnail = await in_session(request, lambda s: review_store.get_row(s, item_id).thumbnail)
    if thumbnail is None:
        raise ApiError(404, "not_found", f"review item {item_id} has no thumbnail (text only, or deleted by retention)")
    return Response(thumbnail, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


async def claim_review(request: Request, staff: ModeratorDep, item_id: ItemId) -> ReviewItemBody:
    return ReviewItemBody.model_validate(
        await in_session(request, lambda s: review_store.claim(s, item_id, staff.name))
    )


def _heads(request: Request, result: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str]]:
    """The served heads' labels, the models' label per head in ``result``, and emotion -> head."""
    classifier = request.app.state.classifier
    if classifier is None:
        raise ApiError(503, "not_ready", "the models are not loaded yet; labels are checked against them")
    heads = {t.name: list(t.labels) for t in [classifier.task_a, *classifier.task_c]}
    predicted = {classifier.task_a.name: result.get("task_a", {}).get("label", heads[classifier.task_a.name][0])}
    for t in classifier.task_c:
        predicted[t.name] = result.get("task_c", {}).get(t.name, {}).get("label", heads[t.name][0])
    emotions = {emotion: head for head, emotion in classifier.manifest.task_b_names.items()}
    return heads, predicted, emotions


def _labels(request: Request, result: dict[str, Any], body: ReviewDecisionRequest) -> dict[str, str]:
    heads, predicted, emotions = _heads(request, result)
    try:
        return corrected_labels(predicted, heads, emotions, body.labels, body.task_b)
    except LabelError as err:
        raise ApiError(422, "invalid_labels", str(err)) from err


async def decide_review(
    request: Request, staff: ModeratorDep, item_id: ItemId, body: ReviewDecisionRequest
) -> ReviewItemBody:
    """Decide an item (it may be claimed by you, or by nobody); 409 when someone else holds it or it is decided."""

    def work(session: Any) -> dict[str, Any]:
        row = review_store.get_row(session, item_id)
        labels = _labels(request, row.result, body)
        return review_store.decide(session, item_id, staff.name, body.action, labels, body.note)

    decided = await in_session(request, work)
    current_moderator(request).reposts.invalidate()
    return ReviewItemBody.model_validate(decided)


def review_router() -> APIRouter:
    routes: list[Route] = [
        ("GET", "", list_reviews, "The review queue, oldest first", ()),
        ("GET", "/{item_id}", get_review, "One item and the decided memes it repeats", (404,)),
        ("GET", "/{item_id}/thumbnail", get_thumbnail, "The item's thumbnail (JPEG)", (404,)),
        ("POST", "/{item_id}/claim", claim_review, "Claim an item", (404, 409)),
        ("POST", "/{item_id}/decision", decide_review, "Decide an item: action, corrected labels, note", (404, 409)),
    ]
    thumbnail = {"response_class": Response, "openapi_extra": {"responses": {"200": {"content": {"image/jpeg": {}}}}}}
    return staff_router("/v1/reviews", "review queue", routes, get_thumbnail=thumbnail)
