"""The ``decision`` block every classification answer carries (service/moderation decides it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DecisionReason(BaseModel):
    kind: Literal["threshold", "near_threshold", "low_agreement", "repost", "policy_mismatch"] = Field(
        description="threshold: a rule's score reached its threshold; near_threshold: within the policy's "
        "uncertainty margin of it (-> review); low_agreement: too few members voted the ensemble's label "
        "(score = their share); repost: the same meme was decided before and the policy applies that; "
        "policy_mismatch: a rule names a head the served models lack (-> review)."
    )
    head: str = Field(description="The Task B emotion or head the rule reads.", examples=["offensive"])
    label: str | None = Field(default=None, description="The head's label the score is about, if the rule names one.")
    score: float = Field(examples=[0.71])
    threshold: float = Field(examples=[0.6])
    action: str = Field(description="What this reason asks for.", examples=["block"])
    driven_by: Literal["text", "image", "both", "none"] = Field(
        description="Which members voted for what the rule flags: text-only, image-only, or both kinds "
        "(a member reading both counts as both); none: the mean score crossed without any member's vote."
    )
    members: list[str] = Field(default_factory=list, description="The members whose vote drove it.")


class RepostOf(BaseModel):
    review_id: int = Field(description="The decided review item this meme repeats.")
    decided_action: str
    match: Literal["sha256", "phash"] = Field(description="sha256: the same file; phash: the same picture.")
    distance: int = Field(description="Perceptual-hash bits that differ (0 for sha256).")


class DecisionBody(BaseModel):
    action: Literal["allow", "review", "block"]
    reasons: list[DecisionReason] = Field(default_factory=list)
    policy: str = Field(description="The policy that decided ('none': no policy assigned, everything allowed).")
    policy_version: int
    review_id: int | None = Field(default=None, description="The review item this meme was queued as, if queued.")
    repost_of: RepostOf | None = Field(default=None, description="A decided meme this one repeats.")
