"""Async jobs on a real gateway (`memotion serve` processes), on SQLite and on a real PostgreSQL:
a job killed mid-run (SIGKILL of the gateway's process group) resumes in a new gateway with every
meme scored and recorded exactly once; its signed webhook reaches a receiver this test starts (a
real HTTP server on loopback), first refused then retried; another key cannot see the job; results
come as JSON Lines and Parquet; hostile requests get 4xx."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.launchers.gateway_process import GatewayProcess, free_port
from service.store.engine import Database
from service.store.jobs_schema import JobItem

pytestmark = pytest.mark.slow

MEMES = Path(__file__).resolve().parents[1] / "../shared/data/memotion1-train-128px"
SECRET = "whsec-test-secret"
KEYS = {"alice": "alice-key-0123456789", "bob": "bob-key-0123456789"}
N_ITEMS = 120


def _auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def real_memes(count: int, skip: int = 0) -> list[dict[str, str]]:
    """``count`` Memotion 1 memes (128 px JPEG, base64, and their text) as batch items."""
    with (MEMES / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[skip : skip + count]
    return [
        {
            "id": row["id"],
            "image": base64.b64encode((MEMES / row["image_path"]).read_bytes()).decode(),
            "text": row["text"],
        }
        for row in rows
    ]


@dataclass
class Receiver:
    """A webhook receiver on loopback: refuses the first ``fail_first`` deliveries (500), keeps the rest."""

    fail_first: int = 1
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: int = 0
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.refused < receiver.fail_first:
                    receiver.refused += 1
                    self.send_response(500)
                else:
                    receiver.received.append((dict(self.headers.items()), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A Receiver served by a real HTTP server on a free loopback port."""
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), receiver.handler())
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/memotion"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def verify_signature(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """The README's verification snippet, as a receiver would write it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - timestamp) <= tolerance_s


def _settings(database_url: str, allowed: Path) -> dict[str, str]:
    keys = [{"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest()} for name, key in KEYS.items()]
    return {
        "MEMOTION_DATABASE_URL": database_url,
        "MEMOTION_API_KEYS": json.dumps(keys),
        "MEMOTION_OCR": "none",
        "MEMOTION_LOG_LEVEL": "warning",
        "MEMOTION_JOBS_CHUNK_SIZE": "2",
        "MEMOTION_JOBS_LEASE_S": "2",
        "MEMOTION_JOBS_POLL_S": "0.2",
        "MEMOTION_JOBS_MAX_ITEMS": "500",
        "MEMOTION_JOBS_ALLOWED_PATHS": json.dumps([str(allowed)]),
        "MEMOTION_WEBHOOK_SECRET": SECRET,
        "MEMOTION_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
        "MEMOTION_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "MEMOTION_WEBHOOK_BACKOFF_S": "0.3",
    }


def _wait(base: str, job_id: str, done: Callable[[dict], bool], timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=_auth("alice"), timeout=10).json()
        if done(job):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s} s: {job}")


@dataclass
class Resumed:
    base: str  # the second gateway (still running)
    job_id: str
    done_at_kill: int
    database_url: str
    receiver: Receiver
    job: dict
    allowed: Path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def resumed(request, model_repository, tmp_path_factory) -> Iterator[Resumed]:
    """A job of N_ITEMS real memes, its gateway killed (SIGKILL) mid-run, resumed by a new gateway."""
    root = tmp_path_factory.mktemp(f"jobs-{request.param}")
    if request.param == "sqlite":
        database_url = f"sqlite:///{root / 'memotion.db'}"
    else:
        database_url = request.getfixturevalue("postgres_server").create_database()
    allowed = root / "allowed"
    allowed.mkdir()
    env = _settings(database_url, allowed)
    with running_receiver() as receiver:
        first = GatewayProcess(model_repository, env=env, log_path=root / "first.log")
        base = first.start()
        try:
            body = {"items": real_memes(N_ITEMS), "callback_url": receiver.url}
            created = httpx.post(f"{base}/v1/jobs", json=body, headers=_auth("alice"), timeout=30)
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            assert created.headers["Location"] == f"/v1/jobs/{job_id}"
            seen = _wait(base, job_id, lambda j: j["progress"]["done"] >= 4)
            first.kill()
        finally:
            first.stop()
        assert seen["status"] == "running" and seen["progress"]["done"] < N_ITEMS, seen
        # On PostgreSQL the new gateway runs two processes: both workers look for the job, one takes it.
        processes = {"MEMOTION_PROCESSES": "2"} if request.param == "postgresql" else {}
        with GatewayProcess(model_repository, env=env | processes, log_path=root / "second.log") as second:
            job = _wait(second, job_id, lambda j: j["status"] == "succeeded")
            yield Resumed(second, job_id, seen["progress"]["done"], database_url, receiver, job, allowed)


def test_a_killed_job_resumes_with_every_meme_scored_once(resumed: Resumed) -> None:
    assert resumed.job["progress"] == {"done": N_ITEMS, "total": N_ITEMS, "errors": 0, "percent": 100.0}
    lines = httpx.get(f"{resumed.base}/v1/jobs/{resumed.job_id}/results", headers=_auth("alice"), timeout=30)
    assert lines.status_code == 200 and lines.headers["memotion-job-status"] == "succeeded"
    records = [json.loads(line) for line in lines.text.splitlines()]
    assert [r["index"] for r in records] == list(range(N_ITEMS))  # all there, none twice
    assert [r["id"] for r in records] == [item["id"] for item in real_memes(N_ITEMS)]
    assert all(r["status"] == "ok" and r["sentiment"] in ("negative", "neutral", "positive") for r in records)
    db = Database.open(resumed.database_url)
    try:
        with db.session() as session:
            by_worker = dict(
                session.execute(
                    select(JobItem.scored_by, func.count())
                    .where(JobItem.job_id == resumed.job_id)
                    .group_by(JobItem.scored_by)
                ).all()
            )
    finally:
        db.close()
    print(f"\njob {resumed.job_id}: done when killed {resumed.done_at_kill}; items by worker {by_worker}")
    assert sum(by_worker.values()) == N_ITEMS, by_worker  # each item recorded by exactly one worker
    assert len(by_worker) >= 2, by_worker  # the killed gateway's and the new one's
    assert max(by_worker.values()) >= resumed.done_at_kill


def test_the_signed_webhook_is_retried_and_verifies(resumed: Resumed) -> None:
    deadline = time.monotonic() + 30
    notices = []
    while time.monotonic() < deadline and not notices:
        notices = [(h, b) for h, b in resumed.receiver.received if json.loads(b)["job"]["id"] == resumed.job_id]
        time.sleep(0.1)
    assert len(notices) == 1, resumed.receiver.received
    headers, body = notices[0]
    assert verify_signature(SECRET, headers["Memotion-Signature"], body)
    assert not verify_signature("another-secret", headers["Memotion-Signature"], body)
    assert not verify_signature(SECRET, headers["Memotion-Signature"], body.replace(b"succeeded", b"failed"))
    notice = json.loads(body)
    assert notice["type"] == "job.finished" and notice["job"]["status"] == "succeeded"
    assert notice["job"]["progress"]["done"] == N_ITEMS
    job = httpx.get(f"{resumed.base}/v1/jobs/{resumed.job_id}", headers=_auth("alice"), timeout=10).json()
    assert job["callback"]["status"] == "delivered" and job["callback"]["attempts"] >= 2  # the first got a 500


def test_another_key_cannot_see_or_cancel_the_job(resumed: Resumed) -> None:
    base, job_id = resumed.base, resumed.job_id
    for method, path in (("GET", ""), ("GET", "/results"), ("DELETE", ""), ("POST", "/cancel")):
        answer = httpx.request(method, f"{base}/v1/jobs/{job_id}{path}", headers=_auth("bob"), timeout=10)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "job_not_found", (method, path)
    assert httpx.get(f"{base}/v1/jobs", headers=_auth("bob"), timeout=10).json() == {"jobs": []}
    assert httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).status_code == 401
    finished = httpx.delete(f"{base}/v1/jobs/{job_id}", headers=_auth("alice"), timeout=10)
    assert finished.status_code == 409


def test_results_come_as_parquet_too(resumed: Resumed) -> None:
    import pyarrow.parquet as pq

    answer = httpx.get(
        f"{resumed.base}/v1/jobs/{resumed.job_id}/results?format=parquet", headers=_auth("alice"), timeout=30
    )
    assert answer.status_code == 200, answer.text
    table = pq.read_table(io.BytesIO(answer.content))
    assert table.num_rows == N_ITEMS and table.column("index").to_pylist() == list(range(N_ITEMS))
    assert {"id", "sentiment", "sentiment_score"} <= set(table.column_names)


def _table(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "memes.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image_path", "text"])
        writer.writerows(rows)
    return table


def test_a_server_side_table_is_scored_and_sources_outside_are_refused(resumed: Resumed) -> None:
    base, folder = resumed.base, resumed.allowed / "upload-1"
    rows = []
    for item in real_memes(4, skip=100):
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "images" / f"{item['id']}.jpg").write_bytes(base64.b64decode(item["image"]))
        rows.append((item["id"], f"images/{item['id']}.jpg", item["text"]))
    table = _table(folder, rows)
    created = httpx.post(f"{base}/v1/jobs", json={"source": str(table)}, headers=_auth("alice"), timeout=30)
    assert created.status_code == 202, created.text
    job = _wait(base, created.json()["id"], lambda j: j["status"] == "succeeded", timeout_s=60)
    assert job["source"] == "path" and job["progress"]["done"] == 4
    lines = httpx.get(f"{base}/v1/jobs/{job['id']}/results", headers=_auth("alice"), timeout=30).text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [row[0] for row in rows]
    assert all(json.loads(line)["status"] == "ok" for line in lines)
    outside = _table(resumed.allowed / "upload-2", [("x", str(MEMES.resolve() / "images/image_1.jpg"), "t")])
    refused = {
        str(MEMES.resolve()): 403,  # a folder outside the allowed ones
        str(outside): 403,  # a table inside naming an image outside
        "s3://bucket/memes/": 422,
        str(resumed.allowed / "missing.csv"): 422,
    }
    for source, status in refused.items():
        answer = httpx.post(f"{base}/v1/jobs", json={"source": source}, headers=_auth("alice"), timeout=30)
        assert answer.status_code == status, (source, answer.text)
        assert answer.json()["error"]["code"], answer.text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "invalid_request"),
        ({"items": []}, 422, None),
        ({"items": [{"text": "x"}], "source": "/tmp"}, 422, "invalid_request"),
        ({"items": [{"text": "x"}], "callback_url": "http://10.1.2.3/hook"}, 422, "callback_not_allowed"),
        ({"items": [{"text": "x"}], "callback_url": "http://evil.example.com/"}, 422, "callback_not_allowed"),
        ({"items": [{"text": "x"}], "callback_url": "gopher://127.0.0.1/"}, 422, "callback_not_allowed"),
        ({"items": [{"text": "x"}], "thresholds": {"nope": 0.5}}, 422, "invalid_thresholds"),
        ({"items": [{"text": "x"}] * 501}, 413, "too_many_items"),
        ({"items": [{"text": "x", "colour": 1}]}, 422, None),
        ({"items": [{"text": "x"}, {"text": "a\ud800"}]}, 422, "invalid_text"),  # the database stores none
        ({"items": [{"text": "nul\x00"}]}, 422, "invalid_text"),
        ({"items": [{"image": "\udc80", "text": "x"}]}, 422, "invalid_text"),
    ],
)
def test_bad_job_requests_get_a_4xx_saying_why(resumed: Resumed, body: dict, status: int, code: str | None) -> None:
    raw = json.dumps(body).encode()  # ASCII: a lone surrogate travels as its \uXXXX escape
    headers = {**_auth("alice"), "Content-Type": "application/json"}
    answer = httpx.post(f"{resumed.base}/v1/jobs", content=raw, headers=headers, timeout=30)
    assert answer.status_code == status, answer.text
    if code is not None:
        assert answer.json()["error"]["code"] == code, answer.text


def test_a_cancelled_job_stops_and_keeps_what_was_done(resumed: Resumed) -> None:
    base = resumed.base
    created = httpx.post(
        f"{base}/v1/jobs", json={"items": real_memes(200, skip=200)}, headers=_auth("alice"), timeout=30
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    _wait(base, job_id, lambda j: j["progress"]["done"] >= 2)
    cancelled = httpx.post(f"{base}/v1/jobs/{job_id}/cancel", headers=_auth("alice"), timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    time.sleep(1.0)  # the worker finishes (and throws away) its chunk, then stops
    job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=_auth("alice"), timeout=10).json()
    assert job["status"] == "cancelled" and 2 <= job["progress"]["done"] < 200, job
    lines = httpx.get(f"{base}/v1/jobs/{job_id}/results", headers=_auth("alice"), timeout=30).text.splitlines()
    assert len(lines) == job["progress"]["done"]
    for path in ("", "/results"):
        assert httpx.get(f"{base}/v1/jobs/not-a-job{path}", headers=_auth("alice"), timeout=10).status_code == 422
        assert httpx.get(f"{base}/v1/jobs/{'0' * 32}{path}", headers=_auth("alice"), timeout=10).status_code == 404
