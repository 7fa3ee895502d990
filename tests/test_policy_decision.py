"""The pure policy decision (service/moderation/policy.py): thresholds, the most severe action,
the uncertainty band (near a threshold, low vote agreement), which members drove a reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.moderation.policy import Head, MemeScores, PolicyRules, UnknownHead, agreement, check_rules, decide

OFFENSE = ("not_offensive", "slight", "very_offensive", "hateful_offensive")
SENTIMENT = ("negative", "neutral", "positive")


def meme(offense: dict[str, float], votes: dict[str, dict[str, str]], sentiment=(0.2, 0.3, 0.5)) -> MemeScores:
    offense_label = max(offense, key=offense.__getitem__)
    sentiment_scores = dict(zip(SENTIMENT, sentiment))
    return MemeScores(
        heads={
            "offense": Head(OFFENSE, offense, offense_label),
            "sentiment": Head(SENTIMENT, sentiment_scores, max(sentiment_scores, key=sentiment_scores.__getitem__)),
        },
        emotion_heads={"offensive": "offense"},
        emotion_scores={"offensive": 1.0 - offense["not_offensive"]},
        votes=votes,
        modality={"clip_text": "text", "clip_image": "image", "clip_multi": "both"},
    )


SCORES = {"not_offensive": 0.3, "slight": 0.3, "very_offensive": 0.3, "hateful_offensive": 0.1}  # P(present) 0.7
TEXT_SAYS_OFFENSIVE = {
    "clip_text": {"offense": "very_offensive", "sentiment": "negative"},
    "clip_image": {"offense": "not_offensive", "sentiment": "positive"},
    "clip_multi": {"offense": "not_offensive", "sentiment": "positive"},
}


def rules(*items: dict, **extra) -> PolicyRules:
    return PolicyRules.model_validate({"rules": list(items), **extra})


def test_the_most_severe_triggered_rule_decides_and_each_reason_is_given() -> None:
    policy = rules(
        {"head": "offensive", "threshold": 0.5, "action": "review"},
        {"head": "offense", "at_least": "very_offensive", "threshold": 0.35, "action": "block"},
        {"head": "sentiment", "label": "positive", "threshold": 0.9, "action": "block"},
    )
    decision = decide(policy, meme(SCORES, TEXT_SAYS_OFFENSIVE))
    assert decision.action == "block"
    assert [(r.kind, r.head, r.action) for r in decision.reasons] == [
        ("threshold", "offensive", "review"),
        ("threshold", "offense", "block"),
    ]
    at_least = decision.reasons[1]
    assert at_least.score == pytest.approx(0.4) and at_least.threshold == 0.35 and at_least.label == "very_offensive"


def test_below_every_threshold_the_default_action_stands() -> None:
    policy = rules({"head": "offensive", "threshold": 0.9, "action": "block"})
    assert decide(policy, meme(SCORES, TEXT_SAYS_OFFENSIVE)).action == "allow"
    assert decide(policy.model_copy(update={"default_action": "review"}), meme(SCORES, {})).action == "review"


def test_the_reason_says_whether_text_image_or_both_members_drove_it() -> None:
    policy = rules({"head": "offensive", "threshold": 0.5, "action": "block"})
    reason = decide(policy, meme(SCORES, TEXT_SAYS_OFFENSIVE)).reasons[0]
    assert reason.driven_by == "text" and reason.members == ("clip_text",)
    image_too = {**TEXT_SAYS_OFFENSIVE, "clip_image": {"offense": "slight", "sentiment": "neutral"}}
    assert decide(policy, meme(SCORES, image_too)).reasons[0].driven_by == "both"
    nobody = {m: {"offense": "not_offensive"} for m in TEXT_SAYS_OFFENSIVE}
    assert decide(policy, meme(SCORES, nobody)).reasons[0].driven_by == "none"


def test_a_score_near_a_threshold_goes_to_review_from_either_side() -> None:
    band = {"uncertainty": {"margin": 0.05}}
    for threshold in (0.68, 0.72):  # P(present) 0.7: just above, just below
        policy = rules({"head": "offensive", "threshold": threshold, "action": "block"}, **band)
        decision = decide(policy, meme(SCORES, TEXT_SAYS_OFFENSIVE))
        assert decision.action == "review", threshold
        assert decision.reasons[0].kind == "near_threshold"
    clear = rules({"head": "offensive", "threshold": 0.6, "action": "block"}, **band)
    assert decide(clear, meme(SCORES, TEXT_SAYS_OFFENSIVE)).action == "block"
    far = rules({"head": "offensive", "threshold": 0.8, "action": "block"}, **band)
    assert decide(far, meme(SCORES, TEXT_SAYS_OFFENSIVE)).action == "allow"


def test_low_vote_agreement_on_a_head_the_policy_reads_goes_to_review() -> None:
    scores = meme(SCORES, TEXT_SAYS_OFFENSIVE)
    assert agreement("offense", scores) == pytest.approx(2 / 3)  # ensemble label not_offensive (first of a tie)
    policy = rules({"head": "offensive", "threshold": 0.9, "action": "block"}, uncertainty={"min_agreement": 0.7})
    decision = decide(policy, scores)
    assert decision.action == "review"
    assert decision.reasons[0].kind == "low_agreement" and decision.reasons[0].head == "offense"
    unanimous = {m: {"offense": "not_offensive"} for m in TEXT_SAYS_OFFENSIVE}
    assert decide(policy, meme(SCORES, unanimous)).action == "allow"


def test_rules_for_unknown_heads_or_labels_are_refused() -> None:
    for bad in (
        {"head": "toxicity", "threshold": 0.5, "action": "block"},
        {"head": "sentiment", "threshold": 0.5, "action": "block"},  # a head needs a label
        {"head": "sentiment", "label": "angry", "threshold": 0.5, "action": "block"},
    ):
        with pytest.raises(UnknownHead):
            check_rules(rules(bad), meme(SCORES, {}))
    for invalid in (
        {"head": "offensive", "threshold": 1.5, "action": "block"},
        {"head": "offensive", "threshold": 0.5, "action": "delete"},
        {"head": "offense", "label": "slight", "at_least": "slight", "threshold": 0.5, "action": "block"},
    ):
        with pytest.raises(ValidationError):
            rules(invalid)


def test_a_rule_the_served_models_cannot_answer_sends_the_meme_to_review() -> None:
    policy = rules({"head": "toxicity", "threshold": 0.5, "action": "block"})
    decision = decide(policy, meme(SCORES, TEXT_SAYS_OFFENSIVE))
    assert decision.action == "review" and decision.reasons[0].kind == "policy_mismatch"


def test_only_a_heads_own_voters_count_for_agreement_and_driven_by() -> None:
    """A member outside a head's voters (not in its subset, or of weight 0 under the weighted mean)
    neither lowers the head's agreement nor drives its reason; a text-only answer, where none of the
    head's voters ran, counts the members that did (as the classifier combines them)."""
    from memotion.manifest import EnsembleEntry
    from service.api.decisions import head_voters

    ensemble = EnsembleEntry(
        members=("clip_text", "clip_image", "clip_multi"),
        task_members={"offense": ("clip_text", "clip_multi")},
        task_rules={"offense": "mean_probability"},
        task_weights={"offense": {"clip_text": 1.0, "clip_multi": 0.0}},
    )
    votes = {
        "clip_text": {"offense": "very_offensive", "sentiment": "negative"},
        "clip_image": {"offense": "very_offensive", "sentiment": "negative"},
        "clip_multi": {"offense": "not_offensive", "sentiment": "negative"},
    }
    scores = {"not_offensive": 0.2, "slight": 0.1, "very_offensive": 0.6, "hateful_offensive": 0.1}
    policy = rules(
        {"head": "offense", "label": "very_offensive", "threshold": 0.5, "action": "block"},
        uncertainty={"min_agreement": 0.9},
    )
    decision = decide(policy, meme(scores, head_voters(votes, ensemble)))
    assert decision.action == "block"
    assert [(r.kind, r.driven_by, r.members) for r in decision.reasons] == [("threshold", "text", ("clip_text",))]
    text_only = head_voters(
        {"clip_text": votes["clip_text"]},
        EnsembleEntry(members=("clip_text", "clip_image"), task_members={"offense": ("clip_image",)}),
    )
    assert text_only == {"clip_text": votes["clip_text"]}
