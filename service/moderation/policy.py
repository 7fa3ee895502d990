"""A policy's rules and the pure decision they make for one meme.

Rules name a Task B emotion (``offensive``: its P(present)), or a head with a ``label`` (P(that
label)) or ``at_least`` (P(that intensity or higher)); a score at or above the rule's threshold
leads to its action. The most severe action wins (block > review > allow). The uncertainty band
sends a meme to review instead: a score within ``margin`` of a block/review threshold, or a head
the policy looks at on which fewer than ``min_agreement`` of the members voted the ensemble's label.
A rule naming a head the served models do not have (the models changed under the policy) sends the
meme to review too (``policy_mismatch``) rather than failing the answer or silently allowing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["allow", "review", "block"]
SEVERITY: dict[str, int] = {"allow": 0, "review": 1, "block": 2}
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    head: str = Field(min_length=1, max_length=64, description="a Task B emotion (offensive) or a head (offense)")
    label: str | None = Field(default=None, max_length=64, description="score = P(this label) of the head")
    at_least: str | None = Field(default=None, max_length=64, description="score = P(this label or a later one)")
    threshold: float = Field(ge=0.0, le=1.0)
    action: Action

    @model_validator(mode="after")
    def _one_score(self) -> Rule:
        if self.label is not None and self.at_least is not None:
            raise ValueError("give 'label' or 'at_least', not both")
        return self


class Uncertainty(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    margin: float = Field(default=0.0, ge=0.0, le=0.5, description="|score - threshold| < margin -> review")
    min_agreement: float = Field(default=0.0, ge=0.0, le=1.0, description="vote share below this -> review")


class PolicyRules(BaseModel):
    """What a policy version holds (stored as JSON in policy_versions.rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(default_factory=list, max_length=64)
    uncertainty: Uncertainty = Field(default_factory=Uncertainty)
    default_action: Action = "allow"
    review_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="share of other memes queued")
    keep_full_image: bool = Field(default=False, description="queue the full image, not only a thumbnail")
    apply_reposts: bool = Field(default=False, description="a repost of a decided meme gets that decision")
    repost_max_distance: int = Field(default=6, ge=0, le=32, description="perceptual-hash bits that may differ")


@dataclass(frozen=True)
class Head:
    """One head of one meme: its labels in order, the mean scores and the ensemble's label."""

    labels: tuple[str, ...]
    scores: Mapping[str, float]
    label: str


@dataclass(frozen=True)
class MemeScores:
    """What a decision reads: every head, Task B P(present) per emotion, each member's votes and what
    it reads (text, image or both)."""

    heads: Mapping[str, Head]
    emotion_heads: Mapping[str, str]  # emotion -> its Task C head
    emotion_scores: Mapping[str, float]
    votes: Mapping[str, Mapping[str, str]]  # member -> head -> label
    modality: Mapping[str, str]  # member -> text / image / both


@dataclass(frozen=True)
class Reason:
    kind: Literal["threshold", "near_threshold", "low_agreement", "repost", "policy_mismatch"]
    head: str
    score: float
    threshold: float
    action: str
    label: str | None = None
    driven_by: str = "none"  # text, image, both (members of each kind voted for it), none
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    action: str
    reasons: tuple[Reason, ...] = field(default_factory=tuple)


class UnknownHead(ValueError):
    """A rule names a head, emotion or label the served models do not have."""


def _target(rule: Rule, meme: MemeScores) -> tuple[str, float, frozenset[str]]:
    """The rule's head, its score, and the labels whose voters count as driving it."""
    if rule.head in meme.emotion_heads and rule.label is None and rule.at_least is None:
        head = meme.heads[meme.emotion_heads[rule.head]]
        return meme.emotion_heads[rule.head], float(meme.emotion_scores[rule.head]), frozenset(head.labels[1:])
    head_name = meme.emotion_heads.get(rule.head, rule.head)
    if head_name not in meme.heads:
        raise UnknownHead(f"unknown head or emotion {rule.head!r}")
    head = meme.heads[head_name]
    wanted = rule.label if rule.label is not None else rule.at_least
    if wanted is None or wanted not in head.labels:
        raise UnknownHead(f"head {head_name!r} needs 'label' or 'at_least', one of {list(head.labels)}")
    if rule.label is not None:
        return head_name, float(head.scores[wanted]), frozenset([wanted])
    later = head.labels[head.labels.index(wanted) :]
    return head_name, float(sum(head.scores[label] for label in later)), frozenset(later)


def driven_by(head: str, labels: frozenset[str], meme: MemeScores) -> tuple[str, tuple[str, ...]]:
    """Which members voted one of ``labels`` on ``head``, and whether they read text, image or both."""
    members = tuple(m for m, votes in meme.votes.items() if votes.get(head) in labels)
    kinds = {meme.modality.get(m, "both") for m in members}
    if not kinds:
        return "none", members
    return (kinds.pop() if len(kinds) == 1 else "both"), members


def agreement(head: str, meme: MemeScores) -> float:
    """The share of the members that voted the ensemble's label on ``head`` (1.0 without votes)."""
    voted = [votes[head] for votes in meme.votes.values() if head in votes]
    return sum(label == meme.heads[head].label for label in voted) / len(voted) if voted else 1.0


def check_rules(rules: PolicyRules, meme: MemeScores) -> None:
    """UnknownHead if a rule does not fit the served heads (the admin API's 422)."""
    for rule in rules.rules:
        _target(rule, meme)


def decide(rules: PolicyRules, meme: MemeScores) -> Decision:
    """The action for one meme under ``rules``, with every reason that led to it."""
    reasons: list[Reason] = []
    margin = rules.uncertainty.margin
    looked_at: list[str] = []
    for rule in rules.rules:
        try:
            head, score, labels = _target(rule, meme)
        except UnknownHead:  # a policy written for other models: a person looks instead
            reasons.append(Reason("policy_mismatch", rule.head, 0.0, rule.threshold, "review", rule.label))
            continue
        looked_at.append(head)
        by, members = driven_by(head, labels, meme)
        label = rule.label or rule.at_least
        if score >= rule.threshold + margin or (margin == 0 and score >= rule.threshold):
            reasons.append(Reason("threshold", rule.head, score, rule.threshold, rule.action, label, by, members))
        elif rule.action != "allow" and abs(score - rule.threshold) < margin:
            reasons.append(Reason("near_threshold", rule.head, score, rule.threshold, "review", label, by, members))
    for head in dict.fromkeys(looked_at):
        share = agreement(head, meme)
        if share < rules.uncertainty.min_agreement:
            reasons.append(Reason("low_agreement", head, share, rules.uncertainty.min_agreement, "review"))
    return Decision(_most_severe(rules.default_action, reasons), tuple(reasons))


def _most_severe(default: str, reasons: Sequence[Reason]) -> str:
    actions = [r.action for r in reasons]
    return max(actions, key=SEVERITY.__getitem__) if actions else default


def neutral_scores(tasks: Mapping[str, Sequence[str]], task_b_names: Mapping[str, str]) -> MemeScores:
    """Every head (name -> labels) with uniform scores and no votes: what rules are checked against."""
    heads = {
        name: Head(tuple(labels), dict.fromkeys(labels, 1.0 / len(labels)), labels[0]) for name, labels in tasks.items()
    }
    emotions = {emotion: head for head, emotion in task_b_names.items()}
    return MemeScores(heads, emotions, dict.fromkeys(emotions, 0.0), {}, {})
