"""The jobs' store on SQLite and on a real PostgreSQL server: leases (one worker per job, take-over
after a crash), chunks recorded once with their progress, cancelling, webhook delivery state; and the
pure parts: signatures, allowed callback destinations, allowed source paths."""

from __future__ import annotations

import json
import threading
import time

import pytest

from service.api.batch import BatchItem
from service.core.errors import ApiError
from service.jobs import store, webhooks
from service.jobs.sources import check_allowed, inline_inputs, path_inputs
from service.store.engine import Database
from service.store.migrate import ensure_schema


@pytest.fixture
def db(database_url):
    database = Database.open(database_url, timeout_s=5.0)
    ensure_schema(database, migrate=True)
    yield database
    database.close()


def _job(db: Database, owner: str = "alice", items: int = 5, callback: str | None = None, max_active: int = 4):
    inputs = [store.JobInput(f"m{i}", None, f"text {i}") for i in range(items)]
    new = store.NewJob(owner, "items", None, {"offensive": 0.5}, callback)
    return store.create_job(db, new, inputs, max_active)


def _records(items) -> dict[int, dict]:
    return {item.position: {"id": item.item_id, "status": "ok"} for item in items}


def test_one_worker_holds_a_job_and_a_dead_ones_job_is_taken_over(db) -> None:
    job = _job(db)
    first = store.claim_job(db, "w1", lease_s=0.5)
    assert first is not None and first.id == job.id and first.status == "running"
    assert store.claim_job(db, "w2", lease_s=0.5) is None  # held
    store.complete_chunk(db, job.id, "w1", 0.5, _records(store.pending_items(db, job.id, 2)))
    time.sleep(0.6)  # w1 "died": its lease runs out
    second = store.claim_job(db, "w2", lease_s=30)
    assert second is not None and second.id == job.id and second.done == 2
    with pytest.raises(store.LeaseLost):  # w1 wakes up: nothing of its chunk is stored
        store.complete_chunk(db, job.id, "w1", 30, _records(store.pending_items(db, job.id, 2)))
    rest = store.pending_items(db, job.id, 10)
    assert [item.position for item in rest] == [2, 3, 4]
    store.complete_chunk(db, job.id, "w2", 30, _records(rest))
    assert store.pending_items(db, job.id, 10) == []
    assert store.finish_job(db, second, "w2")
    done = store.get_job(db, job.id, "alice")
    assert (done.status, done.done, done.total, done.lease_owner) == ("succeeded", 5, 5, None)
    assert [p for p, _ in store.result_records(db, job.id, -1, 100)] == [0, 1, 2, 3, 4]


def test_concurrent_claims_give_the_job_to_exactly_one_worker(db) -> None:
    _job(db)
    barrier = threading.Barrier(4)
    won: list[str] = []

    def claim(name: str) -> None:
        barrier.wait()
        if store.claim_job(db, name, lease_s=30) is not None:
            won.append(name)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1, won


def test_a_chunk_is_recorded_once_or_not_at_all(db) -> None:
    job = _job(db, items=3)
    store.claim_job(db, "w1", lease_s=30)
    items = store.pending_items(db, job.id, 2)
    store.complete_chunk(db, job.id, "w1", 30, _records(items))
    with pytest.raises(store.LeaseLost):  # the same items again (a replayed chunk): rolled back whole
        store.complete_chunk(db, job.id, "w1", 30, _records(items))
    assert store.get_job(db, job.id, "alice").done == 2
    errors = {2: {"id": "m2", "status": "error", "error_code": "invalid_image"}}
    store.complete_chunk(db, job.id, "w1", 30, errors)
    state = store.get_job(db, job.id, "alice")
    assert (state.done, state.errors) == (3, 1)


def test_cancelling_stops_the_worker_and_only_the_owner_sees_the_job(db) -> None:
    job = _job(db)
    store.claim_job(db, "w1", lease_s=30)
    assert store.get_job(db, job.id, "bob") is None
    assert store.cancel_job(db, job.id, "bob") is None
    cancelled = store.cancel_job(db, job.id, "alice")
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert store.cancel_job(db, job.id, "alice").status == "cancelled"  # twice is fine
    with pytest.raises(store.LeaseLost):
        store.complete_chunk(db, job.id, "w1", 30, _records(store.pending_items(db, job.id, 2)))
    assert store.claim_job(db, "w2", lease_s=30) is None
    finished = _job(db)
    claimed = store.claim_job(db, "w1", 30)
    store.complete_chunk(db, finished.id, "w1", 30, _records(store.pending_items(db, finished.id, 10)))
    store.finish_job(db, claimed, "w1")
    with pytest.raises(store.JobFinished):
        store.cancel_job(db, finished.id, "alice")


def test_an_owner_has_a_bounded_number_of_active_jobs(db) -> None:
    _job(db, max_active=2)
    _job(db, max_active=2)
    with pytest.raises(store.TooManyActiveJobs):
        _job(db, max_active=2)
    _job(db, owner="bob", max_active=2)  # per key


def test_webhook_delivery_is_claimed_once_retried_then_given_up(db) -> None:
    job = _job(db, items=1, callback="http://127.0.0.1:9/hook")
    claimed = store.claim_job(db, "w1", 30)
    store.complete_chunk(db, job.id, "w1", 30, _records(store.pending_items(db, job.id, 1)))
    store.finish_job(db, claimed, "w1")
    first = store.claim_webhook(db, hold_s=60)
    assert first is not None and first.id == job.id
    assert store.claim_webhook(db, hold_s=60) is None  # held while being sent
    store.record_webhook(db, job.id, "refused", retry_at=time.time() - 1)
    again = store.claim_webhook(db, hold_s=60)
    assert again is not None and again.webhook_attempts == 1
    store.record_webhook(db, job.id, "refused again", retry_at=None)
    final = store.get_job(db, job.id, "alice")
    assert (final.webhook_status, final.webhook_attempts, final.webhook_error) == ("failed", 2, "refused again")
    assert store.claim_webhook(db, hold_s=60) is None


# --- pure parts --------------------------------------------------------------------------------


def test_signatures_verify_only_with_the_secret_the_body_and_a_fresh_time() -> None:
    body = b'{"type":"job.finished"}'
    header = webhooks.sign(b"s3cret", body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert webhooks.verify(b"s3cret", header, body, now=1_700_000_010)
    assert not webhooks.verify(b"other", header, body, now=1_700_000_010)
    assert not webhooks.verify(b"s3cret", header, body + b" ", now=1_700_000_010)
    assert not webhooks.verify(b"s3cret", header, body, now=1_700_001_000)  # replayed later
    assert not webhooks.verify(b"s3cret", "garbage", body)
    assert [webhooks.backoff_s(n, 10) for n in (1, 2, 3)] == [10, 20, 40]
    assert webhooks.backoff_s(30, 10) == webhooks.MAX_BACKOFF_S


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "http:///nohost",
        "http://user:pw@hooks.example.com/",
        "http://evil.example.com/",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/",
        "http://hooks.example.com:99999/",
        "http://" + "a" * 3000,
    ],
)
def test_callbacks_to_destinations_not_allowed_are_refused(url: str) -> None:
    allowed = webhooks.Destinations(["hooks.example.com", "10.0.0.5", "169.254.169.254", "::1"], [])
    with pytest.raises(webhooks.CallbackRefused):
        webhooks.parse_callback(url, allowed)


def test_a_name_resolving_to_loopback_is_refused_unless_that_network_is_allowed() -> None:
    target = webhooks.parse_callback("http://localhost:8080/hook", webhooks.Destinations(["localhost"], []))
    with pytest.raises(webhooks.CallbackRefused, match="not allowed"):
        webhooks.resolve_allowed(target, webhooks.Destinations(["localhost"], []))
    allowed = webhooks.Destinations(["localhost"], ["127.0.0.0/8", "::1/128"])
    assert webhooks.resolve_allowed(target, allowed) in ("127.0.0.1", "::1")
    public = webhooks.parse_callback("https://93.184.216.34/x", webhooks.Destinations(["*"], []))
    assert (public.port, public.path) == (443, "/x")


def test_sources_must_lie_inside_an_allowed_folder(tmp_path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "memes").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (allowed / "escape").symlink_to(tmp_path / "secret")
    roots = [allowed.resolve()]
    assert check_allowed(str(allowed / "memes"), roots) == (allowed / "memes").resolve()
    refused = {
        str(tmp_path / "secret"): 403,
        str(allowed / "escape"): 403,  # a link out of the folder
        str(allowed / ".." / "secret"): 403,
        "relative/path": 422,
        "s3://bucket/memes": 422,
        "/etc/passwd\x00": 422,
    }
    for source, status in refused.items():
        with pytest.raises(ApiError) as err:
            check_allowed(source, roots)
        assert err.value.status == status, source
    with pytest.raises(ApiError) as err:
        check_allowed(str(allowed / "memes"), [])
    assert err.value.status == 403


def test_a_source_item_whose_text_no_database_can_store_is_refused_with_a_422(tmp_path) -> None:
    """NUL (no PostgreSQL text holds it) or a lone surrogate in a table's text, id or image cell, or
    an id longer than the column: POST /v1/jobs says which item (not a 503 "retry" from the
    database, nor a 500 from the path)."""
    (tmp_path / "a.png").write_bytes(b"not read here")
    good = {"id": "a", "image": str(tmp_path / "a.png"), "text": "fine"}
    table = tmp_path / "memes.jsonl"
    table.write_text(json.dumps(good) + "\n")
    assert [i.text for i in path_inputs(str(table), [tmp_path], 10)] == ["fine"]
    for field, value in (
        ("id", "i" * 513),  # longer than PostgreSQL's column
        ("text", "a\x00b"),
        ("id", "b\x00"),
        ("image", str(tmp_path / "a\x00.png")),
        ("text", "\ud800"),
    ):
        table.write_text(json.dumps(good) + "\n" + json.dumps(good | {"id": "z", field: value}) + "\n")
        with pytest.raises(ApiError) as err:
            path_inputs(str(table), [tmp_path], 10)
        assert (err.value.status, err.value.code) == (422, "invalid_source"), value
        assert f"its {field}" in err.value.message, value


def test_an_inline_item_whose_text_or_image_no_database_can_store_is_refused_with_a_422() -> None:
    """Stored before it is scored: a lone surrogate (PostgreSQL's driver raised UnicodeEncodeError: a
    500) or NUL (a 503 "retry") in an item's text or image string is a 422 naming the field."""
    assert [i.text for i in inline_inputs([BatchItem(text="fine")])] == ["fine"]
    for field, value in (("text", "a\ud800"), ("text", "a\x00"), ("image", "iVBO\x00"), ("image", "\udc80")):
        with pytest.raises(ApiError) as err:
            inline_inputs([BatchItem(text="fine"), BatchItem(**{field: value})])
        assert (err.value.status, err.value.code) == (422, "invalid_text") and f"items[1].{field}" in err.value.message


def test_worker_processes_get_the_webhook_secret_itself() -> None:
    """MEMOTION_PROCESSES=N hands the settings over as variables: a secret must not arrive masked."""
    from service.core.settings import GatewaySettings
    from service.server import settings_environment

    env = settings_environment(GatewaySettings(webhook_secret="s3cret", webhook_allowed_hosts=["a.example"]))
    assert env["MEMOTION_WEBHOOK_SECRET"] == "s3cret"
    assert json.loads(env["MEMOTION_WEBHOOK_ALLOWED_HOSTS"]) == ["a.example"]
    assert GatewaySettings.model_validate({"webhook_secret": env["MEMOTION_WEBHOOK_SECRET"]}).webhook_secret


def test_finished_jobs_are_deleted_after_the_retention_and_uploads_once_scored(db) -> None:
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select

    from service.store.jobs_schema import JobItem

    job = _job(db, items=2)
    running = _job(db, items=1)
    claimed = store.claim_job(db, "w1", 30)
    items = store.pending_items(db, job.id, 10)
    store.complete_chunk(db, job.id, "w1", 30, _records(items))
    store.finish_job(db, claimed, "w1")
    with db.session() as session:
        assert session.scalars(select(JobItem.image).where(JobItem.job_id == job.id)).all() == [None, None]
    now = datetime.now(timezone.utc)
    assert store.delete_finished_before(db, now - timedelta(days=1)) == 0  # finished just now: kept
    assert store.delete_finished_before(db, now + timedelta(seconds=1)) == 1
    assert store.get_job(db, job.id, "alice") is None and store.result_records(db, job.id, -1, 10) == []
    assert store.get_job(db, running.id, "alice") is not None  # never a queued or running one
