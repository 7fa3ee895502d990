"""Attach the ``decision`` block to classification answers (single and batch): the answer's scores
and votes become the policy's view of the meme (service/moderation/policy.py), the moderator decides
and queues, off the event loop. The async jobs (service/jobs/decisions.py) use the same blocks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio
from fastapi import Request

from memotion.manifest import EnsembleEntry
from service.access.keys import Client
from service.api.batch import BatchItemResult, BatchRequest
from service.api.decision_schema import DecisionBody
from service.api.schemas import ClassifyResponse
from service.api.wire import decode_base64_image
from service.inference.classifier import MemeClassifier, reads_image
from service.moderation.moderator import Moderator, Submission
from service.moderation.policy import Head, MemeScores, neutral_scores


def member_modality(classifier: MemeClassifier) -> dict[str, str]:
    """Each member: ``text`` (reads only text), ``image`` (only the image) or ``both``."""
    out = {}
    for member in classifier.members:
        text = bool({"input_ids", "oscar_input_ids"} & set(member.inputs)) or member.text_tokenizer is not None
        out[member.name] = "both" if text and reads_image(member) else ("image" if reads_image(member) else "text")
    return out


def head_voters(votes: Mapping[str, Mapping[str, str]], ensemble: EnsembleEntry) -> dict[str, dict[str, str]]:
    """Each member's votes on only the heads it voted on, as the classifier combined them: the head's
    voters among the members that ran (all that ran when none of them did), less those of weight 0."""
    heads = {head for member_votes in votes.values() for head in member_votes}
    voters: dict[str, set[str]] = {}
    for head in heads:
        ran = [m for m in ensemble.members_for(head) if m in votes] or list(votes)
        weights = ensemble.weights_for(head, ran)
        voters[head] = {m for i, m in enumerate(ran) if weights is None or weights[i] > 0}
    return {m: {h: label for h, label in member_votes.items() if m in voters[h]} for m, member_votes in votes.items()}


def meme_scores(answer: ClassifyResponse, classifier: MemeClassifier) -> MemeScores:
    heads = {classifier.task_a.name: Head(tuple(answer.task_a.scores), answer.task_a.scores, answer.task_a.label)}
    for name, prediction in answer.task_c.items():
        heads[name] = Head(tuple(prediction.scores), prediction.scores, prediction.label)
    return MemeScores(
        heads=heads,
        emotion_heads={emotion: head for head, emotion in classifier.manifest.task_b_names.items()},
        emotion_scores=answer.task_b_scores,
        votes=head_voters(answer.votes, classifier.manifest.ensemble),  # not the members outside a head's vote
        modality=member_modality(classifier),
    )


def _submission(client: str, answer: ClassifyResponse, image: bytes | None, classifier: MemeClassifier) -> Submission:
    return Submission(
        client=client,
        request_id=answer.request_id,
        image=image,
        text=answer.text.value,
        scores=meme_scores(answer, classifier),
        result=answer.model_dump(mode="json", exclude={"timings_ms", "explain", "decision"}),
        model_version=answer.model_version,
    )


def decide_answers(
    moderator: Moderator,
    client: str,
    classifier: MemeClassifier,
    answers: Sequence[tuple[ClassifyResponse, bytes | None]],
) -> list[DecisionBody]:
    """The ``decision`` block of each answer under ``client``'s policy (the API key's name), memes to
    review queued (blocking: call it off the event loop). The async jobs' worker calls it too."""
    return [DecisionBody.model_validate(moderator.moderate(_submission(client, a, i, classifier))) for a, i in answers]


async def attach_decisions(
    request: Request,
    client: Client,
    classifier: MemeClassifier,
    answers: Sequence[tuple[ClassifyResponse, bytes | None]],
) -> None:
    """Set ``decision`` on each answer (nothing when the gateway runs without a moderator)."""
    moderator: Moderator | None = getattr(request.app.state, "moderator", None)
    if moderator is None or not answers:
        return
    decisions = await anyio.to_thread.run_sync(decide_answers, moderator, client.name, classifier, answers)
    for (answer, _), decision in zip(answers, decisions):
        answer.decision = decision


def batch_answers(body: BatchRequest, items: Sequence[BatchItemResult]) -> list[tuple[ClassifyResponse, bytes | None]]:
    """The batch's answered items with their image bytes (for the review queue's hashes)."""
    out = []
    for item in items:
        if item.result is not None:
            source = body.items[item.index].image
            out.append((item.result, decode_base64_image(source) if source else None))
    return out


def served_heads(classifier: MemeClassifier) -> MemeScores:
    """The served heads and labels with neutral scores: what a policy's rules are checked against."""
    tasks = {t.name: tuple(t.labels) for t in classifier.manifest.tasks}
    return neutral_scores(tasks, classifier.manifest.task_b_names)
