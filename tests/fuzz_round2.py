"""Issue 20's fuzz sources, run by tests/fuzz_runner.py ``run_fuzz`` after the others:

* lone surrogates at every entry (JSON text, ``?explain=true``, thresholds names, batch item text
  and id): a 4xx, never a 5xx, and a batch's good item still answered;
* multipart forms with odd ``charset`` parameters (UTF-7, UTF-16, unknown ones...);
* batches of small files declaring many pixels: the request's total, decoded within bounded memory;
* a follow-up request on the same keep-alive connection after every error status (raw sockets:
  httpx would quietly reconnect): kept, or closed after ``Connection: close``, never dropped;
* clients that hang up mid-body (then /metrics must count no 5xx: ``server_counted_5xx``);
* a frozen dependency: the gateway's Redis stopped with SIGSTOP, requests still answered, and at
  most one Redis time-out per back-off period.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_runner import ROUTES, FuzzReport, _hypothesis_settings, _timed
from tests.fuzz_strategies import (
    declared_png,
    hang_ups,
    hostile_texts,
    multipart_with_charset,
    pixel_batches,
    surrogate_texts,
)
from tests.raw_http import follow_up, hang_up, request_bytes

JSON = {"Content-Type": "application/json"}
TEXT_ENTRIES = (
    "json text",
    "json explain",
    "json thresholds name",
    "batch item text",
    "batch item id",
    "batch thresholds",
)


@dataclass
class FrozenCache:
    """How to freeze the gateway's Redis (a context manager) and its circuit breaker's settings."""

    freeze: Callable[[], AbstractContextManager[None]]
    timeout_s: float  # MEMOTION_RESULT_CACHE_TIMEOUT_S
    backoff_s: float  # MEMOTION_RESULT_CACHE_BACKOFF_S


def text_entry(entry: str, text: str) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) carrying ``text`` in the given entry."""
    good = {"id": "good", "text": "when the code finally compiles"}
    bodies: dict[str, tuple[str, dict[str, Any]]] = {
        "json text": ("/v1/classify", {"text": text}),
        "json explain": ("/v1/classify?explain=true", {"text": text}),
        "json thresholds name": ("/v1/classify", {"text": "x", "thresholds": {text: 0.3}}),
        "batch item text": ("/v1/classify/batch", {"items": [good, {"id": "bad", "text": text}]}),
        "batch item id": ("/v1/classify/batch", {"items": [{"id": text[:200], "text": "x"}]}),
        "batch thresholds": ("/v1/classify/batch", {"items": [good], "thresholds": {text: 0.3}}),
    }
    return bodies[entry]


def good_item_answered(response: httpx.Response) -> str | None:
    """A batch with a good item must answer it (whatever its other items hold)."""
    if response.status_code != 200 or "items" not in response.json():
        return None
    good = [item for item in response.json()["items"] if item["id"] == "good"]
    return None if not good or good[0]["status"] == 200 else f"the good item got {good[0]['status']}"


def fuzz_text_entries(base_url: str, report: FuzzReport, examples: int, client: httpx.Client, seed: int) -> None:
    """Every entry in turn, with ordinary and invalid text (``examples`` cases in all)."""
    for entry in TEXT_ENTRIES:
        _fuzz_entry(base_url, report, max(4, examples // len(TEXT_ENTRIES)), client, seed, entry)


def _fuzz_entry(base_url: str, report: FuzzReport, examples: int, client: httpx.Client, seed: int, entry: str) -> None:
    check = good_item_answered if entry == "batch item text" else None

    @_hypothesis_settings(examples, seed)
    @given(text=hostile_texts() | surrogate_texts())
    def cases(text: str) -> None:
        path, body = text_entry(entry, text)
        raw = json.dumps(body).encode()  # ASCII: a lone surrogate travels as its \\uXXXX escape
        call = lambda: client.post(base_url + path, content=raw, headers=JSON)  # noqa: E731
        _timed(report, f"text gate: {entry}", f"{entry} {text!r}"[:300], call, check)

    cases()


def fuzz_charsets(base_url: str, report: FuzzReport, examples: int, client: httpx.Client, seed: int) -> None:
    image = declared_png(16, 16)

    @_hypothesis_settings(max(1, examples // 2), seed)
    @given(form=multipart_with_charset(image))
    def forms(form: tuple[str, bytes]) -> None:
        content_type, body = form
        call = lambda: client.post(f"{base_url}/v1/classify", content=body, headers={"Content-Type": content_type})  # noqa: E731
        _timed(report, "form charsets", f"{content_type} {body[:120]!r}", call)

    forms()


def fuzz_pixel_totals(
    base_url: str, report: FuzzReport, examples: int, client: httpx.Client, seed: int, max_side: int
) -> None:
    @_hypothesis_settings(max(1, examples // 4), seed)
    @given(sizes=pixel_batches(max_side))
    def batches(sizes: list[tuple[int, int]]) -> None:
        files = {size: base64.b64encode(declared_png(*size)).decode() for size in set(sizes)}
        items = [{"id": str(i), "image": files[size], "text": "x"} for i, size in enumerate(sizes)]
        pixels = sum(w * h for w, h in sizes)
        call = lambda: client.post(f"{base_url}/v1/classify/batch", json={"items": items})  # noqa: E731
        _timed(report, "batch pixel totals", f"{len(sizes)} images, {pixels} pixels: {sizes}", call)

    batches()


def error_cases() -> st.SearchStrategy[bytes]:
    """Raw requests that get error answers: any method and route, odd content types and bodies."""
    return st.builds(
        lambda method, route, content_type, body: request_bytes(method, route, body, {"Content-Type": content_type}),
        st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE"]),
        st.sampled_from(["/v1/classify", "/v1/classify/batch", "/v1/classify?explain=true", *ROUTES]),
        st.sampled_from(
            [
                "application/json",
                "multipart/form-data; boundary=b",
                "multipart/form-data; charset=utf-7; boundary=b",
                "text/plain",
            ]
        ),
        st.binary(max_size=200)
        | st.sampled_from(
            [
                b'{"text": "\\ud800"}',
                b'{"items": []}',
                b"--b\r\nxx",
                json.dumps({"items": [{"text": "x"}] * 40}).encode(),
            ]
        ),
    )


def fuzz_keep_alive(base_url: str, report: FuzzReport, examples: int, seed: int) -> None:
    @_hypothesis_settings(examples, seed)
    @given(raw=error_cases())
    def cases(raw: bytes) -> None:
        start = time.perf_counter()
        result = follow_up(base_url, raw)
        problem = f"connection dropped ({result.detail})" if result.verdict == "dropped" else None
        what = f"{result.verdict}: {raw[:160]!r}"
        report.record("keep-alive after each answer", result.status or None, time.perf_counter() - start, what, problem)

    cases()


def fuzz_hang_ups(base_url: str, report: FuzzReport, examples: int, seed: int) -> None:
    @_hypothesis_settings(max(1, examples // 2), seed)
    @given(case=hang_ups())
    def cases(case: tuple[str, str, int, bytes]) -> None:
        start = time.perf_counter()
        hang_up(base_url, *case)
        report.record("client hang-ups", 499, time.perf_counter() - start, f"{case[:3]} sent {len(case[3])} bytes")

    cases()


def fuzz_hostile_round2(
    base_url: str, report: FuzzReport, examples: int, client: httpx.Client, seed: int, max_side: int
) -> None:
    fuzz_text_entries(base_url, report, examples, client, seed)
    fuzz_charsets(base_url, report, examples, client, seed)
    fuzz_pixel_totals(base_url, report, examples, client, seed, max_side)
    fuzz_keep_alive(base_url, report, examples, seed)
    fuzz_hang_ups(base_url, report, examples, seed)


def fuzz_frozen_cache(
    base_url: str, report: FuzzReport, examples: int, client: httpx.Client, frozen: FrozenCache, seed: int
) -> None:
    """Text-only requests while Redis is frozen: all answered, and at most one Redis time-out per
    back-off period (a request slower than the time-out paid one)."""
    slow: list[float] = []
    with frozen.freeze():
        start = time.perf_counter()

        @_hypothesis_settings(examples, seed)
        @given(text=st.text(min_size=1, max_size=40))
        def cases(text: str) -> None:
            call = lambda: client.post(f"{base_url}/v1/classify", json={"text": f"frozen {text}"})  # noqa: E731
            seconds = _timed(report, "POST /v1/classify (redis frozen)", repr(text), call)
            if seconds >= frozen.timeout_s:
                slow.append(seconds)

        cases()
        periods = 1 + int((time.perf_counter() - start) / frozen.backoff_s) if frozen.backoff_s > 0 else examples
    problem = (
        f"{len(slow)} requests paid a Redis time-out in {periods} back-off periods" if len(slow) > periods else None
    )
    report.record("redis frozen: time-outs paid", 200, 0.0, f"{len(slow)} slow of {examples}", problem)


# --- the fixed probes of issue 20 (tests/test_hostile_round2_http.py, bench/hostile_probes.py) ---

SURROGATE = "\ud800"


def _json(payload: Any) -> bytes:
    return json.dumps(payload).encode()  # ensure_ascii: the surrogate travels as a \ud800 escape


def surrogate_requests() -> list[tuple[str, str, dict[str, str], bytes]]:
    """(name, path, headers, body) of each way a lone surrogate can reach the gateway."""
    form = b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\n+2AA-\r\n--b\r\n'
    form += b'Content-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    form += declared_png(8, 8) + b"\r\n--b--\r\n"
    good = {"id": "good", "text": "when the code finally compiles"}
    as_json = {"Content-Type": "application/json"}
    return [
        (
            "form field, charset=utf-7",
            "/v1/classify",
            {"Content-Type": "multipart/form-data; charset=utf-7; boundary=b"},
            form,
        ),
        ("JSON text", "/v1/classify", as_json, _json({"text": SURROGATE})),
        ("JSON text, ?explain=true", "/v1/classify?explain=true", as_json, _json({"text": "a" + SURROGATE})),
        ("JSON text, no-store", "/v1/classify", {**as_json, "Cache-Control": "no-store"}, _json({"text": SURROGATE})),
        ("JSON thresholds name", "/v1/classify", as_json, _json({"text": "x", "thresholds": {SURROGATE: 0.3}})),
        (
            "batch item text (+ a good item)",
            "/v1/classify/batch",
            as_json,
            _json({"items": [good, {"text": SURROGATE}]}),
        ),
        ("batch item id", "/v1/classify/batch", as_json, _json({"items": [{"id": SURROGATE, "text": "x"}]})),
        (
            "batch thresholds name",
            "/v1/classify/batch",
            as_json,
            _json({"items": [good], "thresholds": {SURROGATE: 0.3}}),
        ),
    ]


def error_requests() -> list[tuple[str, bytes]]:
    """Requests that get error answers (raw bytes, each sent on a fresh connection)."""
    as_json = {"Content-Type": "application/json"}
    _, _, form_headers, form = surrogate_requests()[0]  # the UTF-7 form (a 500 before issue 20)
    big = _json({"image": base64.b64encode(declared_png(7000, 7000)).decode()})
    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    return [
        ("unknown route", request_bytes("GET", "/v1/nope")),
        ("wrong method", request_bytes("GET", "/v1/classify")),
        ("wrong content type", request_bytes("POST", "/v1/classify", b"x", {"Content-Type": "text/plain"})),
        ("UTF-7 form, a field decoding to U+D800", request_bytes("POST", "/v1/classify", form, form_headers)),
        ("bad JSON", request_bytes("POST", "/v1/classify", b"{", as_json)),
        ("JSON lone surrogate", request_bytes("POST", "/v1/classify", _json({"text": SURROGATE}), as_json)),
        ("empty batch", request_bytes("POST", "/v1/classify/batch", b'{"items": []}', as_json)),
        ("broken multipart", request_bytes("POST", "/v1/classify", b"--b\r\nxx", multipart)),
        ("declared too large", request_bytes("POST", "/v1/classify", b"", {**as_json, "Content-Length": str(10**9)})),
        (
            "too many items",
            request_bytes("POST", "/v1/classify/batch", _json({"items": [{"text": "x"}] * 33}), as_json),
        ),
        ("image too large", request_bytes("POST", "/v1/classify", big, as_json)),
    ]


def server_counted_5xx(client: httpx.Client, base_url: str) -> int:
    """How many 5xx answers the gateway's own /metrics counted (``memotion_requests_total``)."""
    total = 0
    for line in client.get(f"{base_url}/metrics").text.splitlines():
        if line.startswith("memotion_requests_total{") and 'status="5' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total
