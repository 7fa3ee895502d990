"""Hostile input, round 2 (issue 20), unit level: the decode budgets, lazy decoding, the text gate,
error answers that survive an echoed lone surrogate, the Redis circuit breaker, and the error
boundary (a bug answered 500 with ``Connection: close`` and the connection closed properly; a
client that hangs up recorded as 499, no traceback) on a real uvicorn server."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.api.classification import check_text
from service.api.error_boundary import ErrorBoundaryMiddleware
from service.api.http_timeouts import protocol_factory
from service.api.request_context import RequestContextMiddleware
from service.core.errors import ApiError, error_body, validation_message
from service.core.metrics import GatewayMetrics
from service.inference.circuit_breaker import CircuitBreaker
from service.inference.decode_budget import DecodeBudget, RequestBudget
from service.inference.imaging import decoded_bytes_estimate, open_image
from service.inference.result_cache import cache_key
from service.launchers.gateway_process import free_port
from service.text.unicode_gate import repaired, require_unicode, unicode_problem
from tests.fuzz_strategies import declared_png
from tests.raw_http import follow_up, hang_up, request_bytes

MIB = 1024 * 1024

# --- decoded memory -------------------------------------------------------------------------------


def test_a_request_budget_refuses_the_image_that_goes_past_it_and_counts_nothing_for_it() -> None:
    budget = RequestBudget(100)
    budget.charge(60)
    with pytest.raises(ApiError) as caught:
        budget.charge(50, "item 3's image")
    assert (caught.value.status, caught.value.code) == (413, "request_too_large")
    assert "item 3's image" in caught.value.message and budget.used == 60
    budget.charge(40)  # a smaller one still fits
    assert budget.used == 100


def test_the_decode_budget_waits_then_answers_503_with_retry_after() -> None:
    budget = DecodeBudget(10 * MIB, wait_s=0.2)
    with budget.hold(8 * MIB):
        start = time.monotonic()
        with pytest.raises(ApiError) as caught, budget.hold(4 * MIB):
            pass
        assert 0.15 < time.monotonic() - start < 2.0
    assert (caught.value.status, caught.value.code) == (503, "decode_busy")
    assert caught.value.headers == {"Retry-After": "1"}
    assert budget.held == 0
    with pytest.raises(ApiError) as never, budget.hold(11 * MIB):
        pass
    assert never.value.status == 413  # could never fit: no waiting


def test_the_decode_budget_hands_a_freed_share_to_a_waiting_decode() -> None:
    budget = DecodeBudget(10 * MIB, wait_s=5.0)
    seen: list[int] = []
    budget.observe = seen.append
    release = threading.Event()

    def holder() -> None:
        with budget.hold(8 * MIB):
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    while budget.held == 0:
        time.sleep(0.01)
    threading.Timer(0.2, release.set).start()
    with budget.hold(4 * MIB):
        assert budget.held == 4 * MIB
    thread.join()
    assert budget.held == 0 and max(seen) <= 10 * MIB


def test_a_header_is_read_without_decoding_and_the_estimate_covers_the_rgb_copy() -> None:
    opened = open_image(declared_png(6000, 6000), 40_000_000)
    assert opened.pixels == 36_000_000
    assert opened.decoded_bytes == decoded_bytes_estimate(6000, 6000, "1") == 36_000_000 * 5
    assert opened.image._im is None  # nothing decoded yet
    image = opened.decode()
    assert image.size == (6000, 6000) and image.mode == "RGB"
    with pytest.raises(ValueError):
        opened.image.load()  # the frame in its own mode was released once the RGB copy existed


def test_the_estimate_counts_a_palette_images_rgba_step() -> None:
    buffer = io.BytesIO()
    Image.new("P", (100, 100)).save(buffer, "PNG", transparency=0)
    assert open_image(buffer.getvalue(), 10**6).decoded_bytes == 100 * 100 * (1 + 4 + 4)


# --- the text gate ---------------------------------------------------------------------------------


def test_the_text_gate_refuses_lone_surrogates_naming_the_field() -> None:
    assert require_unicode("café 😀", "text") == "café 😀"
    with pytest.raises(ApiError) as caught:
        require_unicode("ab\ud800c", "items[3].text")
    assert (caught.value.status, caught.value.code) == (422, "invalid_text")
    assert "items[3].text" in caught.value.message and "U+D800 at character 2" in caught.value.message
    assert unicode_problem("\udfff") is not None and repaired("a\udfffb") == "a\ufffdb"


def test_the_text_gate_refuses_nul_which_no_database_text_holds() -> None:
    """A job's items and the review queue store the text in PostgreSQL, which refuses NUL: refused
    at the gate (422 naming the field), and OCR's text repaired, like a lone surrogate."""
    with pytest.raises(ApiError) as caught:
        check_text("ab\x00c", 100, "items[1].text")
    assert (caught.value.status, caught.value.code) == (422, "invalid_text")
    assert "items[1].text" in caught.value.message and "U+0000 at character 2" in caught.value.message
    assert repaired("a\x00b") == "a\ufffdb"


def test_no_lone_surrogate_can_fail_a_cache_key_or_an_error_answer() -> None:
    assert len(cache_key(None, "\ud800", "fp")) == 64
    body = error_body(422, "invalid_thresholds", "unknown emotion '\ud800'")
    assert json.dumps(body, ensure_ascii=False).encode("utf-8")  # would raise on a surrogate
    code, message = validation_message([{"type": "invalid_text", "loc": ("body", "thresholds", "\ud800"), "msg": "x"}])
    assert code == "invalid_text" and "\\ud800" in message


# --- the circuit breaker ---------------------------------------------------------------------------


def test_the_breaker_skips_a_failed_dependency_for_its_backoff_then_lets_one_caller_try() -> None:
    now = [0.0]
    events: list[str] = []
    breaker = CircuitBreaker("redis", backoff_s=30.0, observe=events.append, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failure(TimeoutError("frozen"))
    assert breaker.is_open and not breaker.allow() and not breaker.allow()
    now[0] = 31.0
    assert breaker.allow()  # one caller tries ...
    assert not breaker.allow()  # ... the others keep skipping meanwhile
    breaker.failure(TimeoutError("still frozen"))
    now[0] = 40.0
    assert not breaker.allow()  # a new period
    now[0] = 62.0
    assert breaker.allow()
    breaker.success()
    assert not breaker.is_open and breaker.allow()
    assert events == ["open", *["skipped"] * 4, "closed"]


# --- the error boundary, on a real uvicorn server --------------------------------------------------


async def _boom(request: Request) -> JSONResponse:
    raise RuntimeError("a bug")


async def _read(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@pytest.fixture(scope="module")
def boundary_server() -> Iterator[tuple[str, GatewayMetrics]]:
    metrics = GatewayMetrics()
    app = Starlette(routes=[Route("/boom", _boom), Route("/read", _read, methods=["POST"]), Route("/healthz", _ok)])
    app.add_middleware(ErrorBoundaryMiddleware)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=protocol_factory(10.0))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", metrics
    server.should_exit = True
    thread.join(10)


def _count(metrics: GatewayMetrics, status: str) -> float:
    """Requests answered (or recorded) with ``status``, every route."""
    return sum(
        sample.value
        for metric in metrics.requests.collect()
        for sample in metric.samples
        if sample.name == "memotion_requests_total" and sample.labels["status"] == status
    )


def test_a_bug_is_a_500_that_closes_the_connection_properly(
    boundary_server: tuple[str, GatewayMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = boundary_server
    with caplog.at_level(logging.ERROR):
        result = follow_up(url, request_bytes("GET", "/boom"))
    assert (result.status, result.verdict) == (500, "closed"), result
    assert sum("Traceback" in r.getMessage() or r.exc_info is not None for r in caplog.records) == 1  # once
    assert follow_up(url, request_bytes("POST", "/read", b"abc")).verdict == "kept"


def test_a_client_that_hangs_up_mid_body_is_a_499_without_a_traceback(
    boundary_server: tuple[str, GatewayMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    url, metrics = boundary_server
    before, errors_before = _count(metrics, "499"), _count(metrics, "500")
    with caplog.at_level(logging.INFO):
        hang_up(url, "/read", "application/json", 100_000, b'{"text": "')
        deadline = time.monotonic() + 10
        while _count(metrics, "499") == before and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _count(metrics, "499") == before + 1 and _count(metrics, "500") == errors_before
    assert not [r for r in caplog.records if r.exc_info is not None]
