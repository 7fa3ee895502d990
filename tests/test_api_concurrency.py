"""Back-pressure and graceful shutdown of a real `memotion serve` process with real OCR (the slow
stage): one worker, one queue place; more concurrent requests get 503 at once, and SIGTERM lets
the request in flight finish before the process exits."""

from __future__ import annotations

import base64
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from service.launchers.gateway_process import GatewayProcess
from tests.gateway_fixtures import render_meme

pytestmark = pytest.mark.slow


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_back_pressure_then_graceful_shutdown(model_repository: Path, tmp_path: Path) -> None:
    gateway = GatewayProcess(
        model_repository, env={"MEMOTION_WORKERS": "1", "MEMOTION_MAX_QUEUE": "1"}, log_path=tmp_path / "gateway.log"
    )
    url = gateway.start()
    try:
        meme = render_meme("WHEN THE QUEUE", "IS FULL", size=(960, 720))

        def post(_: int) -> httpx.Response:
            return httpx.post(f"{url}/v1/classify", files={"image": ("m.png", meme, "image/png")}, timeout=120)

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(post, range(8)))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 503}, [r.text for r in responses]
        assert statuses.count(200) >= 2 and statuses.count(503) >= 1, statuses
        for rejected in (r for r in responses if r.status_code == 503):
            assert rejected.json()["error"]["code"] == "overloaded"
            assert rejected.headers["retry-after"] == "1"
        metrics = httpx.get(f"{url}/metrics").text
        assert _metric(metrics, "memotion_admitted_requests") == 0
        assert _metric(metrics, "memotion_admission_capacity") == 2
        assert re.search(r'memotion_errors_total\{code="overloaded"\} [1-9]', metrics)

        # Graceful shutdown: a batch needing OCR for 3 memes is in flight when SIGTERM arrives.
        items = [{"id": str(i), "image": base64.b64encode(meme).decode()} for i in range(3)]
        answer: dict[str, object] = {}

        def batch() -> None:
            answer["response"] = httpx.post(f"{url}/v1/classify/batch", json={"items": items}, timeout=120)
            answer["at"] = time.monotonic()

        worker = threading.Thread(target=batch)
        worker.start()
        deadline = time.monotonic() + 60
        while _metric(httpx.get(f"{url}/metrics").text, "memotion_running_requests") < 1:
            assert time.monotonic() < deadline, "the batch never started"
            time.sleep(0.05)
        sigterm_at = time.monotonic()
        process = gateway._process
        assert process is not None
        process.send_signal(15)
        worker.join(120)
        response = answer["response"]
        assert isinstance(response, httpx.Response)
        assert answer["at"] > sigterm_at  # it really was in flight
        assert response.status_code == 200, response.text
        assert [item["status"] for item in response.json()["items"]] == [200, 200, 200]
        # uvicorn shuts down, then re-raises the SIGTERM it caught: -15 after a clean shutdown.
        assert process.wait(60) in (0, -15)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=5)
        log = gateway.log_text()
        assert log.index("Shutting down") < log.index("Application shutdown complete")
    finally:
        gateway.stop()
