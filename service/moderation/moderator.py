"""The request path's moderation: the client's policy decides, a repost of a decided meme shows
(or, if the policy says so, takes) the earlier decision, and memes to review (or sampled) are queued.

Reads come from in-memory caches (PolicyBook, RepostIndex); the one write (queueing a meme) waits at
most the database time-out, and a database that fails does not fail the answer: it says
``review_id: null`` and the gateway logs it.
"""

from __future__ import annotations

import io
import logging
import random
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from service.inference.decode_budget import DecodeBudget
from service.moderation.image_hash import dhash, sha256_hex, thumbnail_jpeg
from service.moderation.policy import Decision, MemeScores, Reason, decide
from service.moderation.policy_book import PolicyBook
from service.moderation.policy_store import StoredPolicy
from service.moderation.reposts import RepostIndex
from service.moderation.review_store import NewItem, add_item
from service.store.engine import Database

logger = logging.getLogger("memotion.gateway")


@dataclass(frozen=True)
class Submission:
    """One classified meme as the moderation sees it."""

    client: str
    request_id: str | None
    image: bytes | None
    text: str
    scores: MemeScores
    result: dict[str, Any]  # the answer's JSON (scores, labels, votes)
    model_version: str


@dataclass
class Fingerprint:
    sha256: str | None = None
    phash: int | None = None
    thumbnail: bytes | None = None


def fingerprint(image: bytes | None, with_thumbnail: bool, budget: DecodeBudget | None = None) -> Fingerprint:
    """SHA-256, perceptual hash and thumbnail; the decode holds its share of the process's decode
    memory budget (a busy budget, or a format PIL cannot reopen, only loses the hash: logged)."""
    if image is None:
        return Fingerprint()
    try:
        with Image.open(io.BytesIO(image)) as opened:
            opened.draft("RGB", (256, 256))  # JPEG: decode at a fraction of the size
            holding = budget.hold(opened.width * opened.height * 4) if budget is not None else nullcontext()
            with holding:
                picture = opened.convert("RGB")
                return Fingerprint(
                    sha256_hex(image), dhash(picture), thumbnail_jpeg(picture) if with_thumbnail else None
                )
    except Exception as err:  # the classifier read it; this only loses the picture's hash
        logger.warning("no perceptual hash for a queued meme: %s", err)
        return Fingerprint(sha256_hex(image))


def reason_dict(reason: Reason) -> dict[str, Any]:
    out = asdict(reason)
    out["members"] = list(reason.members)
    return out


class Moderator:
    def __init__(
        self,
        db: Database,
        policies: PolicyBook,
        reposts: RepostIndex,
        seed: int | None = None,
        decode_budget: DecodeBudget | None = None,
    ) -> None:
        self.db, self.policies, self.reposts = db, policies, reposts
        self._random = random.Random(seed)
        self._budget = decode_budget

    def moderate(self, meme: Submission) -> dict[str, Any]:
        """The answer's ``decision`` block."""
        policy = self.policies.policy_for(meme.client)
        decision = decide(policy.rules, meme.scores)
        sampled = decision.action != "review" and self._random.random() < policy.rules.review_sample_rate
        wants_hash = meme.image is not None and (decision.action == "review" or sampled or not self.reposts.empty)
        queue = decision.action == "review" or sampled
        prints = fingerprint(meme.image, queue, self._budget) if wants_hash else Fingerprint()
        repost = self.reposts.find(prints.sha256, prints.phash, policy.rules.repost_max_distance)
        if repost is not None and policy.rules.apply_reposts:
            decision = Decision(
                repost.decided_action,
                (Reason("repost", "image", 1.0, 1.0, repost.decided_action, None, "image", ()),),
            )
            sampled = False
        block: dict[str, Any] = {
            "action": decision.action,
            "reasons": [reason_dict(r) for r in decision.reasons],
            "policy": policy.name,
            "policy_version": policy.version,
            "review_id": None,
            "repost_of": None if repost is None else asdict(repost),
        }
        if decision.action == "review" or sampled:
            block["review_id"] = self._queue(meme, policy, block, prints, "review" if not sampled else "sample")
        return block

    def _queue(
        self, meme: Submission, policy: StoredPolicy, block: dict[str, Any], prints: Fingerprint, reason: str
    ) -> int | None:
        if prints.thumbnail is None and meme.image is not None:
            prints = fingerprint(meme.image, True, self._budget)
        item = NewItem(
            reason=reason,
            client=meme.client,
            request_id=meme.request_id,
            policy_name=policy.name,
            policy_version=policy.version,
            action=block["action"],
            decision={k: v for k, v in block.items() if k != "review_id"},
            text=meme.text,
            result=meme.result,
            model_version=meme.model_version,
            image_sha256=prints.sha256,
            image_phash=prints.phash,
            thumbnail=prints.thumbnail,
            image=meme.image if policy.rules.keep_full_image else None,
        )
        try:
            with self.db.session() as session:
                return add_item(session, item)
        except Exception as err:
            logger.warning("could not queue a meme for review (answered without review_id): %s", err)
            return None


def moderator_for(db: Database, refresh_s: float, decode_budget: DecodeBudget | None = None) -> Moderator:
    """The gateway's moderator: policies and the decided memes cached for ``refresh_s`` seconds."""
    return Moderator(db, PolicyBook(db, refresh_s), RepostIndex(db, refresh_s), decode_budget=decode_budget)
