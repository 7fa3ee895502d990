"""The review queue's store (service/moderation) on SQLite and PostgreSQL: items, claim/decide
conflicts, the audit log's before/after, reposts by SHA-256 and perceptual hash, retention; the
image fingerprints; corrected labels."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image

from service.moderation import audit, policy_store, review_store
from service.moderation.corrections import LabelError, corrected_labels
from service.moderation.image_hash import dhash, hamming, sha256_hex, thumbnail_jpeg
from service.moderation.policy import PolicyRules
from service.moderation.policy_book import PolicyBook
from service.moderation.reposts import RepostIndex
from service.moderation.retention import purge_expired_images
from service.store.engine import Database
from service.store.migrate import upgrade
from service.store.schema import ReviewItem, utcnow
from tests.gateway_fixtures import photo_jpeg, render_meme


@pytest.fixture
def db(database_url):
    database = Database.open(database_url)
    upgrade(database)
    yield database
    database.close()


def _item(data: bytes, text: str = "t") -> review_store.NewItem:
    picture = Image.open(io.BytesIO(data)).convert("RGB")
    return review_store.NewItem(
        reason="review",
        client="alice",
        request_id="r1",
        policy_name="strict",
        policy_version=1,
        action="review",
        decision={"action": "review"},
        text=text,
        result={"task_a": {"label": "positive"}},
        model_version="v1",
        image_sha256=sha256_hex(data),
        image_phash=dhash(picture),
        thumbnail=thumbnail_jpeg(picture),
    )


def test_claim_and_decide_conflicts_and_the_audit_trail(db) -> None:
    with db.session() as s:
        item_id = review_store.add_item(s, _item(render_meme("a", "b")))
    with db.session() as s:
        assert review_store.claim(s, item_id, "mo")["status"] == "claimed"
    with pytest.raises(review_store.ItemConflict, match="claimed by mo"), db.session() as s:
        review_store.decide(s, item_id, "eve", "block", {}, None)
    with db.session() as s:
        review_store.decide(s, item_id, "mo", "block", {"sentiment": "negative"}, "slur in caption")
    with pytest.raises(review_store.ItemConflict, match="already decided"), db.session() as s:
        review_store.claim(s, item_id, "mo")
    with db.session() as s:
        trail = audit.entries(s, entity="review_item", entity_id=str(item_id))
    assert [e["action"] for e in trail] == ["review.create", "review.claim", "review.decide"]
    decide = trail[-1]
    assert decide["actor"] == "mo" and decide["before"]["status"] == "claimed"
    assert decide["after"]["decided_action"] == "block" and decide["after"]["note"] == "slur in caption"
    with pytest.raises(review_store.ItemNotFound), db.session() as s:
        review_store.claim(s, 999, "mo")


def test_a_stale_claim_expires(db) -> None:
    with db.session() as s:
        item_id = review_store.add_item(s, _item(photo_jpeg(seed=4)))
        review_store.claim(s, item_id, "mo")
    with pytest.raises(review_store.ItemConflict), db.session() as s:
        review_store.claim(s, item_id, "eve")
    with db.session() as s:
        s.get(ReviewItem, item_id).claimed_at = utcnow() - review_store.CLAIM_EXPIRES_AFTER - timedelta(minutes=1)
    with db.session() as s:
        assert review_store.claim(s, item_id, "eve")["claimed_by"] == "eve"


def test_pages_and_filters(db) -> None:
    with db.session() as s:
        ids = [review_store.add_item(s, _item(photo_jpeg(seed=i))) for i in range(5)]
        review_store.decide(s, ids[1], "mo", "allow", {}, None)
    with db.session() as s:
        first, cursor = review_store.list_items(s, status="pending", limit=2)
        second, last = review_store.list_items(s, status="pending", after_id=cursor, limit=2)
    assert [i["id"] for i in first + second] == [ids[0], ids[2], ids[3], ids[4]] and last is None


def test_reposts_by_bytes_and_by_picture_under_other_text(db) -> None:
    original = render_meme("hello", "world")
    with db.session() as s:
        item_id = review_store.add_item(s, _item(original))
        review_store.decide(s, item_id, "mo", "block", {}, None)
    index = RepostIndex(db, refresh_s=60)
    assert index.find(sha256_hex(original), None, 6).match == "sha256"
    recaptioned = Image.open(io.BytesIO(render_meme("other", "caption"))).convert("RGB")
    found = index.find(sha256_hex(b"other bytes"), dhash(recaptioned), 6)
    assert found is not None and found.match == "phash" and found.review_id == item_id
    assert found.decided_action == "block"
    unrelated = Image.open(io.BytesIO(photo_jpeg())).convert("RGB")
    assert index.find(None, dhash(unrelated), 6) is None
    with db.session() as s:
        similar = review_store.decided_reposts(s, None, dhash(recaptioned), 6)
    assert [r["review_id"] for r in similar] == [item_id]


def test_retention_deletes_old_images_and_keeps_the_decision(db) -> None:
    with db.session() as s:
        old_id = review_store.add_item(s, _item(photo_jpeg(seed=1)))
        new_id = review_store.add_item(s, _item(photo_jpeg(seed=2)))
        s.get(ReviewItem, old_id).created_at = utcnow() - timedelta(days=31)
    assert purge_expired_images(db, days=30) == 1
    assert purge_expired_images(db, days=30) == 0
    with db.session() as s:
        old, new = s.get(ReviewItem, old_id), s.get(ReviewItem, new_id)
        assert old.thumbnail is None and old.images_deleted_at is not None and old.image_sha256 is not None
        assert new.thumbnail is not None


def test_a_policy_change_reaches_the_book_within_its_refresh(db) -> None:
    now = [0.0]
    book = PolicyBook(db, refresh_s=1.0, clock=lambda: now[0])
    assert book.policy_for("alice").name == "none"
    with db.session() as s:
        policy_store.put_policy(s, "strict", PolicyRules(default_action="review"), "ada")
        policy_store.assign(s, "*", "strict", "ada")
    assert book.policy_for("alice").name == "none"  # cached
    now[0] = 1.5
    assert (book.policy_for("alice").name, book.policy_for("alice").version) == ("strict", 1)
    with db.session() as s:
        same = policy_store.put_policy(s, "strict", PolicyRules(default_action="review"), "ada")
        changed = policy_store.put_policy(s, "strict", PolicyRules(default_action="block"), "ada")
    assert (same.version, changed.version) == (1, 2)
    book.invalidate()
    assert book.policy_for("alice").rules.default_action == "block"


def test_image_fingerprints() -> None:
    picture = Image.open(io.BytesIO(render_meme("hello", "world"))).convert("RGB")
    assert -(2**63) <= dhash(picture) < 2**63
    resized = picture.resize((320, 240))
    assert hamming(dhash(picture), dhash(resized)) <= 4
    other = Image.open(io.BytesIO(photo_jpeg())).convert("RGB")
    assert hamming(dhash(picture), dhash(other)) > 16
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(picture)))
    assert max(thumb.size) == 256 and thumb.format == "JPEG"


def test_corrected_labels_fill_a_full_row() -> None:
    heads = {"sentiment": ["negative", "neutral", "positive"], "offensive": ["not_offensive", "slight", "very"]}
    predicted = {"sentiment": "positive", "offensive": "not_offensive"}
    emotions = {"offensive": "offensive"}
    assert corrected_labels(predicted, heads, emotions, {"sentiment": "negative"}, {"offensive": True}) == {
        "sentiment": "negative",
        "offensive": "slight",
    }
    assert corrected_labels(predicted, heads, emotions, {"offensive": "very"}, {})["offensive"] == "very"
    for labels, task_b in (({"mood": "x"}, {}), ({"sentiment": "angry"}, {}), ({}, {"toxic": True})):
        with pytest.raises(LabelError):
            corrected_labels(predicted, heads, emotions, labels, task_b)


def _moderator(db, rules: PolicyRules, seed: int = 0):
    from service.moderation.moderator import Moderator

    with db.session() as s:
        policy_store.put_policy(s, "p", rules, "ada")
        policy_store.assign(s, "*", "p", "ada")
    return Moderator(db, PolicyBook(db, 0.0), RepostIndex(db, 0.0), seed=seed)


def _submission(image: bytes | None, text: str = "caption"):
    from service.moderation.moderator import Submission
    from service.moderation.policy import Head, MemeScores

    scores = MemeScores(
        {"offensive": Head(("no", "yes"), {"no": 0.3, "yes": 0.7}, "yes")},
        {"offensive": "offensive"},
        {"offensive": 0.7},
        {"clip_text": {"offensive": "yes"}, "clip_image": {"offensive": "no"}},
        {"clip_text": "text", "clip_image": "image"},
    )
    return Submission("alice", "r1", image, text, scores, {"task_a": {"label": "neutral"}}, "v1")


def test_the_moderator_queues_reviews_samples_and_applies_reposts(db) -> None:
    meme = render_meme("queue", "me")
    moderator = _moderator(db, PolicyRules.model_validate({"rules": [], "review_sample_rate": 1.0}))
    sampled = moderator.moderate(_submission(meme))
    assert sampled["action"] == "allow" and sampled["review_id"] is not None
    with db.session() as s:
        row = s.get(ReviewItem, sampled["review_id"])
        assert row.reason == "sample" and row.thumbnail is not None and row.image is None
        review_store.decide(s, row.id, "mo", "block", {}, None)
    rules = {"rules": [{"head": "offensive", "threshold": 0.5, "action": "review"}], "keep_full_image": True}
    moderator = _moderator(db, PolicyRules.model_validate(rules))
    queued = moderator.moderate(_submission(photo_jpeg(seed=3)))
    assert queued["action"] == "review" and queued["reasons"][0]["driven_by"] == "text"
    with db.session() as s:
        assert s.get(ReviewItem, queued["review_id"]).image == photo_jpeg(seed=3)
    seen = moderator.moderate(_submission(meme, "other words"))
    assert seen["repost_of"]["review_id"] == sampled["review_id"] and seen["action"] == "review"
    moderator = _moderator(db, PolicyRules.model_validate({**rules, "apply_reposts": True}))
    applied = moderator.moderate(_submission(meme, "other words"))
    assert applied["action"] == "block" and applied["reasons"][0]["kind"] == "repost" and applied["review_id"] is None
    assert moderator.moderate(_submission(None, "text only"))["review_id"] is not None  # no image: still queued
