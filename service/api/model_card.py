"""``GET /v1/model-card``: what the served models are and how they were measured.

Read from the manifest only (memotion.manifest): the repository version, the models with their
validation scores, the ensemble's voters, the ``evaluation`` entries (data set, split, measure, per
task) that export copied from the training run, and the notice (demo models, random weights), so a
moderation team can see what the numbers mean before trusting an answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from service.api.classify_routes import current_classifier


class ModelCardModel(BaseModel):
    name: str
    kind: str
    version: int
    validation: dict[str, float] = Field(default_factory=dict)
    backbone: dict[str, str | None] = Field(default_factory=dict)


class ModelCard(BaseModel):
    model_version: str
    created_at: str
    notice: str
    models: list[ModelCardModel]
    ensemble: dict[str, Any]
    evaluation: list[dict[str, Any]]
    training: dict[str, Any] = Field(default_factory=dict)


def model_card_from_manifest(manifest: Any) -> ModelCard:
    """The card for a loaded :class:`memotion.manifest.Manifest` (a pure function of it)."""
    training = {k: v for k, v in manifest.training.items() if k in ("clip", "pretrained", "data", "seconds")}
    return ModelCard(
        model_version=manifest.repository_version,
        created_at=manifest.created_at,
        notice=manifest.notice,
        models=[
            ModelCardModel(
                name=m.name, kind=m.kind, version=m.version, validation=dict(m.validation), backbone=dict(m.backbone)
            )
            for m in manifest.models
        ],
        ensemble={
            "method": manifest.ensemble.method,
            "members": list(manifest.ensemble.members),
            "task_members": {k: list(v) for k, v in manifest.ensemble.task_members.items()},
            "task_b": manifest.ensemble.task_b,
        },
        evaluation=[entry.model_dump(mode="json") for entry in getattr(manifest, "evaluation", ())],
        training=training,
    )


async def model_card(request: Request) -> ModelCard:
    return model_card_from_manifest(current_classifier(request).manifest)


def model_card_router() -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/v1/model-card",
        model_card,
        methods=["GET"],
        response_model=ModelCard,
        summary="What the served models are and how they were measured (data set, split, measure, per task)",
        tags=["models"],
    )
    return router
