"""The probes of bench/hostile_probes.py (issue 20), one function each, against a :class:`ProbeGateway`:
a real `memotion serve` process whose shared result cache is a real redis-server, both on loopback."""

from __future__ import annotations

import base64
import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from service.launchers.gateway_process import GatewayProcess
from tests.fuzz_round2 import error_requests, surrogate_requests
from tests.fuzz_runner import MemorySampler, rss_kib, server_pid
from tests.gateway_fixtures import png_bomb
from tests.raw_http import connect, follow_up, hang_up, read_response, request_bytes
from tests.redis_fixtures import RedisServer


class ProbeGateway:
    """redis-server and `memotion serve` (Redis result cache, OCR off), stopped on exit."""

    ENV = {"MEMOTION_OCR": "none", "MEMOTION_RESULT_CACHE": "redis", "MEMOTION_LOG_LEVEL": "info"}

    def __init__(self, repository: Path, log_path: Path, code: Path | None = None) -> None:
        """``code``: a checkout whose gateway to run (PYTHONPATH of the server; default: this one)."""
        self.repository, self.log_path, self.code = repository, log_path, code
        self.redis = RedisServer()
        self.gateway: GatewayProcess | None = None
        self.url = ""
        self.pid = 0

    def __enter__(self) -> ProbeGateway:
        self.redis.__enter__()
        env = {**self.ENV, "MEMOTION_RESULT_CACHE_REDIS_URL": self.redis.url}
        if self.code is not None:
            env["PYTHONPATH"] = str(self.code.resolve())
        self.gateway = GatewayProcess(self.repository.resolve(), env=env, log_path=self.log_path.resolve())
        here = Path.cwd()
        os.chdir(self.code or here)  # `python -m service` imports from its working folder first
        try:
            self.url = self.gateway.start()
        finally:
            os.chdir(here)
        self.pid = server_pid(self.url)
        return self

    def __exit__(self, *_: object) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        self.redis.__exit__()

    def metric(self, name: str, labels: str = "") -> float:
        """The sum of ``name{...labels...}`` samples on /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and labels in line or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


def batch_bomb(gateway: ProbeGateway, items: int, side: int) -> dict[str, Any]:
    """``items`` copies of a ``side`` x ``side`` 1-bit PNG in one batch: status, time, memory."""
    image = base64.b64encode(png_bomb(side, side)).decode()
    body = json.dumps({"items": [{"id": str(i), "image": image, "text": "x"} for i in range(items)]}).encode()
    before = rss_kib(gateway.pid) / 1024.0
    with MemorySampler(gateway.pid, interval_s=0.02) as sampler:
        start = time.perf_counter()
        response = httpx.post(
            f"{gateway.url}/v1/classify/batch",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=300,
        )
        seconds = time.perf_counter() - start
    time.sleep(1.0)
    statuses: dict[str, int] = {}
    if response.status_code == 200:
        for item in response.json()["items"]:
            key = str(item["status"]) + ("" if item["status"] == 200 else f" {item['error']['code']}")
            statuses[key] = statuses.get(key, 0) + 1
    return {
        "items": items,
        "size": f"{side}x{side}",
        "body_kb": round(len(body) / 1024),
        "status": response.status_code,
        "seconds": round(seconds, 2),
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(max(sampler.peak_kib / 1024.0, before), 1),
        "rss_after_mib": round(rss_kib(gateway.pid) / 1024.0, 1),
        "item_statuses": statuses,
    }


def surrogates(gateway: ProbeGateway) -> list[dict[str, Any]]:
    """Each surrogate request on a fresh connection: status and error code (or each item's status);
    status 0 when no answer came (the connection was reset)."""
    out = []
    for name, path, headers, body in surrogate_requests():
        try:
            response = httpx.post(gateway.url + path, content=body, headers=headers, timeout=60)
        except httpx.HTTPError as err:
            out.append({"probe": name, "status": 0, "detail": f"no answer: {err}"})
            continue
        data = response.json()
        if "items" in data:
            detail = "items " + ", ".join(f"{i['id']}: {i['status']}" for i in data["items"])
        else:
            detail = data.get("error", {}).get("code", "")
        out.append({"probe": name, "status": response.status_code, "detail": detail})
    return out


def follow_ups(gateway: ProbeGateway) -> list[dict[str, Any]]:
    out = []
    for name, raw in error_requests():
        result = follow_up(gateway.url, raw)
        out.append({"probe": name, "status": result.status, "verdict": result.verdict, "detail": result.detail})
    return out


def hang_ups(gateway: ProbeGateway, clients: int = 12) -> dict[str, Any]:
    """Clients that send part of a declared body and close: how /metrics and the log count them."""
    before_500 = gateway.metric("memotion_requests_total", 'status="500"')
    before_499 = gateway.metric("memotion_requests_total", 'status="499"')
    log_before = gateway.log_path.read_text(errors="replace").count("Traceback")
    form = "multipart/form-data; boundary=b"
    for i in range(clients):
        path, kind = [
            ("/v1/classify", form),
            ("/v1/classify", "application/json"),
            ("/v1/classify/batch", "application/json"),
        ][i % 3]
        hang_up(gateway.url, path, kind, 100_000, b"--b\r\n" if kind == form else b'{"items": [')
    time.sleep(1.0)
    return {
        "clients": clients,
        "status_500": int(gateway.metric("memotion_requests_total", 'status="500"') - before_500),
        "status_499": int(gateway.metric("memotion_requests_total", 'status="499"') - before_499),
        "tracebacks": gateway.log_path.read_text(errors="replace").count("Traceback") - log_before,
    }


def _latencies_ms(client: httpx.Client, texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        start = time.perf_counter()
        response = client.post("/v1/classify", json={"text": text})
        out.append((time.perf_counter() - start) * 1000.0)
        if response.status_code != 200:
            print(f"text-only request failed: {response.status_code} {response.text[:300]}")
    return out


def frozen_redis(gateway: ProbeGateway, requests: int = 30) -> dict[str, Any]:
    """Text-only requests with Redis healthy, then frozen with SIGSTOP (distinct texts: misses)."""
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        _latencies_ms(client, [f"warm {i}" for i in range(5)])
        healthy = _latencies_ms(client, [f"healthy {i}" for i in range(requests)])
        with gateway.redis.frozen():
            frozen = _latencies_ms(client, [f"frozen {i}" for i in range(requests)])
    healthy_median, frozen_median = statistics.median(healthy), statistics.median(frozen[1:])
    return {
        "requests": requests,
        "healthy_median_ms": round(healthy_median, 2),
        "frozen_first_ms": round(frozen[0], 1),
        "frozen_median_ms": round(frozen_median, 2),
        "added_median_ms": round(frozen_median - healthy_median, 2),
        "breaker": {
            event: int(gateway.metric("memotion_result_cache_breaker_total", f'event="{event}"'))
            for event in ("open", "skipped", "closed")
        },
    }


def _stall(gateway: ProbeGateway) -> socket.socket:
    sock = connect(gateway.url, timeout_s=120)
    head = request_bytes(
        "POST", "/v1/classify", headers={"Content-Type": "application/json", "Content-Length": "100000"}
    )
    sock.sendall(head + b'{"text": "')
    return sock


def stalled_upload(gateway: ProbeGateway) -> dict[str, Any]:
    """An upload that stops after a few bytes: seconds until the gateway answers it."""
    start = time.perf_counter()
    with _stall(gateway) as sock:
        response = read_response(sock)
    return {"status": response.status, "seconds": round(time.perf_counter() - start, 2)}


def shutdown_with_stalled_upload(gateway: ProbeGateway) -> dict[str, Any]:
    """SIGTERM while an upload has stopped arriving: seconds until the gateway process exits."""
    assert gateway.gateway is not None
    sock = _stall(gateway)
    time.sleep(1.5)  # the upload has stopped
    answered: dict[str, Any] = {}

    def read() -> None:
        try:
            answered["status"] = read_response(sock).status
        except (ConnectionError, OSError) as err:
            answered["status"] = f"none ({type(err).__name__})"

    reader = threading.Thread(target=read)
    reader.start()
    start = time.perf_counter()
    gateway.gateway.stop(timeout_s=120)
    seconds = time.perf_counter() - start
    reader.join(10)
    sock.close()
    gateway.gateway = None
    return {"seconds": round(seconds, 2), "stalled_client_got": answered.get("status")}
