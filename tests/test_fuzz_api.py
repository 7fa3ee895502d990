"""Schema-driven and property-based fuzzing of a real gateway (a short run; bench/fuzz.py is the long
one): Schemathesis on every operation of the gateway's OpenAPI schema, valid and invalid data, and
the Hypothesis strategies of tests/fuzz_strategies.py (hostile images, bodies, headers).

Issue 20's sources too (tests/fuzz_round2.py): lone surrogates at every entry, odd form charsets,
batch pixel totals, a follow-up on the same connection after every answer, client hang-ups, and the
gateway's Redis frozen with SIGSTOP (circuit breaker: at most one time-out per back-off period).

The contract: no 5xx and no transport error (nor one counted on /metrics), no dropped connection,
every answer within the configured request time-out, and the server's memory bounded (it grows by
less than a fixed budget over the run).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.access.keys import hash_key
from tests.fuzz_round2 import FrozenCache
from tests.fuzz_runner import FuzzReport, run_fuzz, server_pid
from tests.gateway_fixtures import start_gateway
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT_S = 20.0
MEMORY_GROWTH_BUDGET_MIB = 300.0  # a decoded image is at most a few tens of MiB under these limits
EXAMPLES = 40  # per Schemathesis operation and per Hypothesis source: a few hundred cases in all
STAFF_KEY = "mk_fuzz-staff-key-0123456789abcdefghij"


CACHE_TIMEOUT_S, CACHE_BACKOFF_S = 0.3, 5.0


@pytest.fixture(scope="module")
def fuzz_report(model_repository: Path, redis_server: RedisServer) -> Iterator[FuzzReport]:  # noqa: F811
    settings = {
        "ocr": "none",
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "max_upload_bytes": 2_000_000,
        "max_image_pixels": 4_000_000,
        "max_request_pixels": 8_000_000,  # two of the largest images per batch
        "decode_memory_bytes": 64 * 1024 * 1024,
        "result_cache": "redis",
        "result_cache_redis_url": redis_server.url,
        "result_cache_timeout_s": CACHE_TIMEOUT_S,
        "result_cache_backoff_s": CACHE_BACKOFF_S,
        "log_level": "warning",
        # The admin and review endpoints, reached with a staff key (the client endpoints stay open).
        "admin_keys": json.dumps([{"name": "fuzz", "sha256": hash_key(STAFF_KEY), "role": "admin"}]),
    }
    frozen = FrozenCache(redis_server.frozen, CACHE_TIMEOUT_S, CACHE_BACKOFF_S)
    with start_gateway(model_repository, **settings) as base_url:
        yield run_fuzz(
            base_url,
            server_pid(base_url),
            examples=EXAMPLES,
            timeout_s=REQUEST_TIMEOUT_S + 30.0,
            frozen_cache=frozen,
            schema_headers={"Authorization": f"Bearer {STAFF_KEY}"},
        )


def test_every_endpoint_was_fuzzed(fuzz_report: FuzzReport) -> None:
    names = set(fuzz_report.endpoints)
    moderation = (
        "PUT /v1/admin/policies/{name}",
        "PUT /v1/admin/assignments/{key_name}",
        "GET /v1/admin/audit",
        "GET /v1/reviews",
        "POST /v1/reviews/{item_id}/decision",
    )
    for operation in (
        "POST /v1/classify",
        "POST /v1/classify/batch",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        *moderation,
    ):
        assert operation in names, names
    for source in ("text gate: batch item text", "form charsets", "batch pixel totals", "keep-alive after each answer"):
        assert source in names, names
    for source in ("client hang-ups", "POST /v1/classify (redis frozen)", "/metrics: 5xx counted by the server"):
        assert source in names, names
    jobs = ("POST /v1/jobs", "GET /v1/jobs", "GET /v1/jobs/{job_id}", "GET /v1/jobs/{job_id}/results")
    for operation in (*jobs, "DELETE /v1/jobs/{job_id}", "POST /v1/jobs/{job_id}/cancel"):
        assert operation in names, names
    assert fuzz_report.cases >= 200, fuzz_report.as_dict()


def test_no_generated_request_gets_a_5xx(fuzz_report: FuzzReport) -> None:
    assert not fuzz_report.server_errors, "\n".join(fuzz_report.server_errors[:10])


def test_every_answer_is_within_the_configured_time_out(fuzz_report: FuzzReport) -> None:
    assert fuzz_report.worst_s < REQUEST_TIMEOUT_S + 5.0, fuzz_report.as_dict()


def test_the_server_memory_stays_bounded(fuzz_report: FuzzReport) -> None:
    growth = fuzz_report.peak_rss_mib - fuzz_report.rss_before_mib
    assert growth < MEMORY_GROWTH_BUDGET_MIB, fuzz_report.as_dict()
