"""Moderation over real HTTP on SQLite and on a real PostgreSQL server: the decision block on single
and batch answers and on async jobs' records, policies changed through the admin API reaching the
next answer, per-key assignment, staff keys, the review queue (claim, conflicts, decide, audit),
reposts, and 4xx discipline on every new endpoint. One `memotion serve` process per database."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from service.access.keys import hash_key
from service.launchers.gateway_process import GatewayProcess
from service.store.engine import Database
from service.store.migrate import upgrade
from tests.gateway_fixtures import photo_jpeg, render_meme

pytestmark = pytest.mark.slow

ALICE, BOB = "mk_alice-moderation-test-key-0123456789", "mk_bob-moderation-test-key-0123456789ab"
ADA, MO, EVE = "mk_ada-admin-key-0123456789abcdef", "mk_mo-moderator-key-0123456789abcd", "mk_eve-moderator-0123456789"
MEME = render_meme("when the build", "finally passes")
RECAPTIONED = render_meme("when the tests", "are green at last")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request, model_repository: Path, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('moderation-db') / 'memotion.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    env = {
        "MEMOTION_OCR": "none",
        "MEMOTION_DATABASE_URL": url,
        "MEMOTION_API_KEYS": json.dumps(
            [{"name": "alice", "sha256": hash_key(ALICE)}, {"name": "bob", "sha256": hash_key(BOB)}]
        ),
        "MEMOTION_ADMIN_KEYS": json.dumps(
            [
                {"name": "ada", "sha256": hash_key(ADA), "role": "admin"},
                {"name": "mo", "sha256": hash_key(MO), "role": "moderator"},
                {"name": "eve", "sha256": hash_key(EVE), "role": "moderator"},
            ]
        ),
        "MEMOTION_POLICY_REFRESH_S": "0.2",
    }
    with GatewayProcess(model_repository, env=env) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def http(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=60.0) as client:
        yield client


def classify(http: httpx.Client, key: str, image: bytes, text: str) -> dict[str, Any]:
    body = {"image": base64.b64encode(image).decode(), "text": text}
    response = http.post("/v1/classify", json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()


def put_policy(http: httpx.Client, name: str, rules: dict[str, Any]) -> dict[str, Any]:
    response = http.put(f"/v1/admin/policies/{name}", json=rules, headers=bearer(ADA))
    assert response.status_code == 200, response.text
    return response.json()


def assign(http: httpx.Client, key: str, policy: str) -> None:
    response = http.put(f"/v1/admin/assignments/{key}", json={"policy": policy}, headers=bearer(ADA))
    assert response.status_code == 200, response.text


def test_answers_carry_a_decision_and_follow_a_policy_change_at_once(http: httpx.Client) -> None:
    assert classify(http, ALICE, MEME, "build passes")["decision"] == {
        "action": "allow",
        "reasons": [],
        "policy": "none",
        "policy_version": 0,
    }
    put_policy(http, "house", {"rules": [{"head": "humorous", "threshold": 0.0, "action": "block"}]})
    assign(http, "*", "house")
    decision = classify(http, ALICE, MEME, "build passes")["decision"]
    assert (decision["action"], decision["policy"], decision["policy_version"]) == ("block", "house", 1)
    reason = decision["reasons"][0]
    assert reason["kind"] == "threshold" and reason["head"] == "humorous" and reason["threshold"] == 0.0
    assert reason["driven_by"] in ("text", "image", "both", "none") and 0.0 <= reason["score"] <= 1.0
    changed = put_policy(http, "house", {"rules": [{"head": "humorous", "threshold": 1.0, "action": "block"}]})
    assert changed["version"] == 2
    decision = classify(http, ALICE, MEME, "build passes")["decision"]
    assert (decision["action"], decision["policy_version"]) == ("allow", 2)


def test_a_policy_per_api_key_and_batch_answers(http: httpx.Client) -> None:
    put_policy(http, "queue-all", {"rules": [], "default_action": "review"})
    assign(http, "bob", "queue-all")
    items = [{"id": "m", "image": base64.b64encode(photo_jpeg(seed=5)).decode(), "text": "x"}, {"text": "only text"}]
    answer = http.post("/v1/classify/batch", json={"items": items}, headers=bearer(BOB)).json()
    decisions = [item["result"]["decision"] for item in answer["items"]]
    assert [d["policy"] for d in decisions] == ["queue-all", "queue-all"]
    assert all(d["action"] == "review" and d["review_id"] >= 1 for d in decisions)
    assert classify(http, ALICE, photo_jpeg(seed=5), "x")["decision"]["policy"] == "house"
    assert http.get("/v1/admin/assignments", headers=bearer(ADA)).json() == {"*": "house", "bob": "queue-all"}


def finished_job(http: httpx.Client, key: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST /v1/jobs with ``items`` as ``key``, wait for it to succeed, its records (JSON Lines)."""
    created = http.post("/v1/jobs", json={"items": items}, headers=bearer(key))
    assert created.status_code == 202, created.text
    job_id, deadline = created.json()["id"], time.monotonic() + 60
    while (job := http.get(f"/v1/jobs/{job_id}", headers=bearer(key)).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    lines = http.get(f"/v1/jobs/{job_id}/results", headers=bearer(key)).text.splitlines()
    return [json.loads(line) for line in lines] + [{"job_id": job_id}]


def test_job_records_carry_the_owners_decision_and_queue_for_review(http: httpx.Client) -> None:
    import pyarrow.parquet as pq

    image = photo_jpeg(seed=11)
    items = [{"id": "j1", "image": base64.b64encode(image).decode(), "text": "x"}, {"id": "j2", "text": "only text"}]
    *records, tail = finished_job(http, BOB, items)  # bob: "queue-all" (every meme to review)
    decisions = [record["decision"] for record in records]
    assert [(d["action"], d["policy"]) for d in decisions] == [("review", "queue-all")] * 2, decisions
    batch = http.post("/v1/classify/batch", json={"items": items}, headers=bearer(BOB)).json()["items"]
    without_id = [{k: v for k, v in d.items() if k != "review_id"} for d in decisions]
    assert without_id == [{k: v for k, v in i["result"]["decision"].items() if k != "review_id"} for i in batch]
    queued = http.get("/v1/reviews", params={"client": "bob", "limit": 200}, headers=bearer(MO)).json()["items"]
    by_id = {item["id"]: item for item in queued}
    first, second = (by_id[d["review_id"]] for d in decisions)  # both in the review queue
    assert first["image_sha256"] == hashlib.sha256(image).hexdigest() and first["has_thumbnail"]
    assert second["text"] == "only text" and second["policy"] == "queue-all"
    table = pq.read_table(
        io.BytesIO(http.get(f"/v1/jobs/{tail['job_id']}/results?format=parquet", headers=bearer(BOB)).content)
    )
    assert table.column("decision_action").to_pylist() == ["review", "review"]
    assert table.column("decision_review_id").to_pylist() == [d["review_id"] for d in decisions]
    alice = finished_job(http, ALICE, items[1:])[0]["decision"]  # alice: the default policy "house"
    assert (alice["policy"], alice["policy_version"]) == ("house", 2) and "review_id" not in alice


def test_review_round_trip_with_conflicts_audit_and_reposts(http: httpx.Client) -> None:
    put_policy(http, "to-review", {"rules": [], "default_action": "review", "apply_reposts": True})
    assign(http, "alice", "to-review")
    queued = classify(http, ALICE, MEME, "build passes")["decision"]
    item_id = queued["review_id"]
    page = http.get("/v1/reviews", params={"status": "pending", "client": "alice"}, headers=bearer(MO)).json()
    assert item_id in [item["id"] for item in page["items"]]
    detail = http.get(f"/v1/reviews/{item_id}", headers=bearer(MO)).json()
    assert detail["has_thumbnail"] and detail["text"] == "build passes" and detail["result"]["votes"]
    thumbnail = http.get(f"/v1/reviews/{item_id}/thumbnail", headers=bearer(MO))
    assert thumbnail.headers["content-type"] == "image/jpeg" and thumbnail.content[:2] == b"\xff\xd8"
    assert http.post(f"/v1/reviews/{item_id}/claim", headers=bearer(MO)).json()["claimed_by"] == "mo"
    taken = http.post(f"/v1/reviews/{item_id}/claim", headers=bearer(EVE))
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict"
    decision = {"action": "block", "labels": {"sentiment": "negative"}, "task_b": {"offensive": True}, "note": "n"}
    decided = http.post(f"/v1/reviews/{item_id}/decision", json=decision, headers=bearer(MO)).json()
    assert decided["status"] == "decided" and decided["corrected_labels"]["sentiment"] == "negative"
    assert decided["corrected_labels"]["offensive"] != "not_offensive"
    again = http.post(f"/v1/reviews/{item_id}/decision", json=decision, headers=bearer(MO))
    assert again.status_code == 409
    trail = http.get("/v1/admin/audit", params={"entity": "review_item", "entity_id": item_id}, headers=bearer(ADA))
    assert [e["action"] for e in trail.json()] == ["review.create", "review.claim", "review.decide"]
    # The same bytes under other text, and the same picture re-captioned: the earlier decision applies.
    for image, match in ((MEME, "sha256"), (RECAPTIONED, "phash")):
        repost = classify(http, ALICE, image, "some other words")["decision"]
        assert repost["repost_of"]["review_id"] == item_id and repost["repost_of"]["match"] == match
        assert repost["action"] == "block" and repost["reasons"][0]["kind"] == "repost"


def test_staff_keys_guard_the_new_endpoints(http: httpx.Client) -> None:
    for path in ("/v1/admin/policies", "/v1/reviews"):
        assert http.get(path).status_code == 401
        assert http.get(path, headers=bearer(ALICE)).status_code == 401  # a client key is not a staff key
    moderator = http.get("/v1/admin/policies", headers=bearer(MO))
    assert moderator.status_code == 403 and moderator.json()["error"]["code"] == "forbidden"
    assert http.get("/v1/reviews", headers=bearer(ADA)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v1/reviews/0", None, 422),
        ("GET", "/v1/reviews/abc", None, 422),
        ("GET", "/v1/reviews/99999999", None, 404),
        ("GET", "/v1/reviews/99999999999999999999999", None, 422),
        ("GET", "/v1/reviews?limit=100000", None, 422),
        ("GET", "/v1/reviews?status=lost", None, 422),
        ("POST", "/v1/reviews/99999999/claim", None, 404),
        ("POST", "/v1/reviews/1/decision", {"action": "delete"}, 422),
        ("POST", "/v1/reviews/1/decision", {"action": "allow", "labels": {"sentiment": "furious"}}, 422),
        ("POST", "/v1/reviews/1/decision", {"action": "allow", "extra": 1}, 422),
        ("POST", "/v1/reviews/1/decision", {"action": "allow", "note": "nul\x00"}, 422),  # no database stores it
        ("PUT", "/v1/admin/policies/bad name!", {"rules": []}, 422),
        ("PUT", "/v1/admin/policies/p", {"rules": [{"head": "toxic", "threshold": 0.5, "action": "block"}]}, 422),
        ("PUT", "/v1/admin/policies/p", {"rules": [{"head": "offensive", "threshold": 2, "action": "block"}]}, 422),
        ("PUT", "/v1/admin/policies/p", [1, 2], 422),
        ("GET", "/v1/admin/policies/missing", None, 404),
        ("GET", "/v1/admin/policies/house?version=99", None, 404),
        ("PUT", "/v1/admin/assignments/bob", {"policy": "missing"}, 404),
        ("DELETE", "/v1/admin/assignments/nobody", None, 404),
        ("GET", "/v1/admin/audit?after=-1", None, 422),
    ],
)
def test_hostile_input_gets_a_json_4xx(http: httpx.Client, method: str, path: str, body: Any, status: int) -> None:
    response = http.request(method, path, json=body, headers=bearer(ADA))
    assert response.status_code == status, response.text
    assert response.json()["error"]["status"] == status


def test_a_gateway_refuses_a_database_newer_than_its_code(model_repository: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'future.db'}"
    db = Database.open(url)
    upgrade(db)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999_future'"))
    db.close()
    command = [sys.executable, "-m", "service", "serve", "--repository", str(model_repository), "--port", "0"]
    env = {**os.environ, "MEMOTION_DATABASE_URL": url}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "newer than this memotion knows" in done.stderr and "0999_future" in done.stderr


def test_a_review_notes_text_goes_through_the_text_gate() -> None:
    """The note is stored: a lone surrogate (the driver's UnicodeEncodeError, a 500) or NUL (a 503
    "retry" from PostgreSQL) is refused as invalid_text, the 422 of every text entry."""
    from pydantic import ValidationError

    from service.api.review_routes import ReviewDecisionRequest

    assert ReviewDecisionRequest.model_validate({"action": "allow", "note": "looks fine"}).note == "looks fine"
    for note in ("a\ud800", "nul\x00"):
        with pytest.raises(ValidationError) as err:
            ReviewDecisionRequest.model_validate({"action": "allow", "note": note})
        assert err.value.errors()[0]["type"] == "invalid_text"
