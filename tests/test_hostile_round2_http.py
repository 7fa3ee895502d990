"""Hostile input, round 2 (issue 20), over real HTTP: one `memotion serve` process with small
budgets and a shared result cache in a real redis-server. A batch's pixel total is bounded from the
headers (the good items still answered), lone surrogates are a 422 at every entry and a UTF-7 form a
415, no error answer drops its keep-alive connection, a client that hangs up is a 499 (not a 5xx),
a stalled upload gets its 408 after the idle time-out and does not hold a shutdown, and a frozen
Redis costs one time-out per back-off period."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.launchers.gateway_process import GatewayProcess
from tests.fuzz_round2 import error_requests, server_counted_5xx, surrogate_requests
from tests.fuzz_runner import MemorySampler, rss_kib, server_pid
from tests.fuzz_strategies import declared_png
from tests.gateway_fixtures import start_gateway
from tests.raw_http import connect, follow_up, hang_up, read_response, request_bytes
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

IDLE_S = 1.0
BACKOFF_S = 3.0
SETTINGS = {
    "ocr": "none",
    "max_image_pixels": 4_000_000,
    "max_request_pixels": 8_000_000,  # two 2000 x 2000 images per request
    "decode_memory_bytes": 48 * 1024 * 1024,  # about two of them decoded at once
    "body_idle_timeout_s": IDLE_S,
    "result_cache": "redis",
    "result_cache_timeout_s": 0.3,
    "result_cache_backoff_s": BACKOFF_S,
}


@pytest.fixture(scope="module")
def gateway(model_repository: Path, redis_server: RedisServer) -> Iterator[str]:  # noqa: F811
    with start_gateway(model_repository, result_cache_redis_url=redis_server.url, **SETTINGS) as url:
        yield url


def test_a_batchs_pixels_are_budgeted_from_the_headers_and_its_good_items_answered(gateway: str) -> None:
    image = base64.b64encode(declared_png(2000, 2000)).decode()
    items = [{"id": f"big{i}", "image": image, "text": "x"} for i in range(8)] + [{"id": "text", "text": "hello"}]
    pid = server_pid(gateway)
    before = rss_kib(pid) / 1024.0
    with MemorySampler(pid, interval_s=0.02) as sampler:
        response = httpx.post(f"{gateway}/v1/classify/batch", json={"items": items}, timeout=60)
    assert response.status_code == 200, response.text
    statuses = {
        item["id"]: (item["status"], (item.get("error") or {}).get("code")) for item in response.json()["items"]
    }
    assert statuses["big0"] == statuses["big1"] == statuses["text"] == (200, None), statuses
    assert all(statuses[f"big{i}"] == (413, "request_too_large") for i in range(2, 8)), statuses
    assert sampler.peak_kib / 1024.0 - before < 200  # 2 images decoded (~20 MB each), never 8


def test_a_lone_surrogate_is_a_4xx_at_every_entry_and_a_batch_keeps_its_good_item(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=60) as client:
        answers = {
            name: client.post(path, content=body, headers=headers) for name, path, headers, body in surrogate_requests()
        }
    codes = {name: (a.status_code, a.json().get("error", {}).get("code")) for name, a in answers.items()}
    assert codes["form field, charset=utf-7"] == (415, "unsupported_charset"), codes
    for name in (
        "JSON text",
        "JSON text, ?explain=true",
        "JSON text, no-store",
        "batch item id",
        "batch thresholds name",
    ):
        assert codes[name] == (422, "invalid_text"), (name, codes)
    assert codes["JSON thresholds name"][0] == 422, codes
    batch = answers["batch item text (+ a good item)"].json()["items"]
    assert [(i["id"], i["status"]) for i in batch] == [("good", 200), ("1", 422)]
    assert batch[1]["error"]["code"] == "invalid_text" and "items[1].text" in batch[1]["error"]["message"]


def test_no_error_answer_drops_its_keep_alive_connection(gateway: str) -> None:
    verdicts = {name: follow_up(gateway, raw) for name, raw in error_requests()}
    assert all(v.status >= 400 for v in verdicts.values()), verdicts
    assert not [name for name, v in verdicts.items() if v.verdict == "dropped"], verdicts
    assert verdicts["unknown route"].verdict == verdicts["JSON lone surrogate"].verdict == "kept"
    assert verdicts["UTF-7 form, a field decoding to U+D800"].status == 415


def test_clients_that_hang_up_mid_body_are_not_server_errors(gateway: str) -> None:
    with httpx.Client(timeout=30) as client:
        before = server_counted_5xx(client, gateway)
        for path, kind in [
            ("/v1/classify", "multipart/form-data; boundary=b"),
            ("/v1/classify/batch", "application/json"),
        ]:
            hang_up(gateway, path, kind, 100_000, b"--b\r\n" if kind.startswith("multipart") else b'{"items": [')
        time.sleep(0.5)
        metrics = client.get(f"{gateway}/metrics").text
        assert server_counted_5xx(client, gateway) == before
    assert 'status="499"' in metrics and 'memotion_errors_total{code="client_closed"}' in metrics


def test_a_stalled_upload_gets_its_408_after_the_idle_time_out(gateway: str) -> None:
    head = request_bytes("POST", "/v1/classify", headers={"Content-Type": "application/json", "Content-Length": "5000"})
    with connect(gateway) as sock:
        start = time.monotonic()
        sock.sendall(head + b'{"text": "')
        answer = read_response(sock)
        waited = time.monotonic() - start
    assert answer.status == 408 and answer.closes
    assert IDLE_S * 0.9 < waited < IDLE_S + 5.0


def test_a_frozen_redis_costs_one_time_out_per_back_off_period(gateway: str, redis_server: RedisServer) -> None:  # noqa: F811
    slow = []
    with httpx.Client(base_url=gateway, timeout=60) as client, redis_server.frozen():
        for i in range(20):
            start = time.monotonic()
            assert client.post("/v1/classify", json={"text": f"frozen {i}"}).status_code == 200
            slow.append(time.monotonic() - start >= 0.3)
        metrics = client.get("/metrics").text
    assert sum(slow) == 1 and slow[0], slow  # the first paid the time-out, the rest skipped Redis
    assert "memotion_result_cache_breaker_open 1.0" in metrics
    assert 'memotion_result_cache_breaker_total{event="skipped"}' in metrics


def test_shutdown_does_not_wait_for_a_stalled_upload(model_repository: Path) -> None:
    env = {"MEMOTION_OCR": "none", "MEMOTION_BODY_IDLE_TIMEOUT_S": "30", "MEMOTION_BODY_TIMEOUT_S": "60"}
    process = GatewayProcess(model_repository, env=env)
    url = process.start()
    try:
        head = request_bytes(
            "POST", "/v1/classify", headers={"Content-Type": "application/json", "Content-Length": "5000"}
        )
        with connect(url) as sock:
            sock.sendall(head + b'{"text": "')
            time.sleep(1.5)  # the upload has stopped
            start = time.monotonic()
            process.stop(timeout_s=60)
            stopped = time.monotonic() - start
            answer = read_response(sock)
    finally:
        process.stop()
    assert stopped < 10.0, stopped  # not the 30 s idle nor the 60 s body time-out
    assert answer.status == 408
