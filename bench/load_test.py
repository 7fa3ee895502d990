"""Loopback load test of the gateway, and the bad inputs it was sent, with what each got.

    python bench/load_test.py --repository model_repository --duration 60 --concurrency 8

Starts `memotion serve` (API keys on, a real process on 127.0.0.1), measures its resident memory,
drives it for ``--duration`` seconds (bounded: also at most ``--max-requests``) from ``--concurrency``
clients sending a meme image with its text (``--ocr`` adds memes without text, read by OCR), then
an overload phase (``--overload-concurrency`` clients against ``--workers`` + ``--max-queue`` places:
back-pressure must answer 503, not queue without bound), then the bad-input catalogue. Prints
tables and writes JSON (default bench/results/load_test.json). Traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.access.keys import hash_key
from service.launchers.gateway_process import GatewayProcess
from tests.gateway_fixtures import photo_jpeg, png_bomb, render_meme, truncated_jpeg

LOAD_KEY = "mk_loadtest-key-not-secret-0123456789abcdef"
LIMITED_KEY = "mk_limited-key-not-secret-0123456789abcdef"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class _DriveState:
    """Counters shared by the clients of one load phase."""

    deadline: float
    max_requests: int
    peak_rss: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)
    sent: int = 0

    def running(self) -> bool:
        """Whether time and request budget are both left."""
        return time.monotonic() < self.deadline and self.sent < self.max_requests


async def _client(
    http: httpx.AsyncClient, state: _DriveState, make_request: Callable[[int], dict[str, Any]], headers: dict[str, str]
) -> None:
    """One client: send requests back to back and count what they got until the phase ends."""
    while state.running():
        number = state.sent
        state.sent += 1
        started = time.perf_counter()
        try:
            response = await http.post("/v1/classify", headers=headers, **make_request(number))
            key = str(response.status_code)
            if response.status_code == 200:
                state.latencies.append((time.perf_counter() - started) * 1000.0)
            else:
                code = response.json().get("error", {}).get("code", "?")
                state.error_codes[code] = state.error_codes.get(code, 0) + 1
        except httpx.HTTPError as err:
            key = type(err).__name__
        state.statuses[key] = state.statuses.get(key, 0) + 1


async def _sample_memory(state: _DriveState, pid: int) -> None:
    """Track the server's peak resident memory every half second while the phase runs."""
    while state.running():
        state.peak_rss = max(state.peak_rss, rss_mib(pid))
        await asyncio.sleep(0.5)


def _phase_summary(state: _DriveState, concurrency: int, elapsed: float) -> dict[str, Any]:
    """A finished phase as JSON: counts, statuses, throughput, latency percentiles, peak RSS."""
    ordered = sorted(state.latencies)
    ok = state.statuses.get("200", 0)
    return {
        "seconds": round(elapsed, 2),
        "concurrency": concurrency,
        "requests": state.sent,
        "ok": ok,
        "non_200": state.sent - ok,
        "statuses": state.statuses,
        "error_codes": state.error_codes,
        "memes_per_s": round(ok / elapsed, 2),
        "latency_ms": {
            "mean": round(statistics.fmean(ordered), 1) if ordered else None,
            "p50": round(percentile(ordered, 0.50), 1),
            "p90": round(percentile(ordered, 0.90), 1),
            "p99": round(percentile(ordered, 0.99), 1),
            "max": round(ordered[-1], 1) if ordered else None,
        },
        "peak_rss_mib": round(state.peak_rss, 1),
    }


async def drive(
    url: str,
    duration_s: float,
    concurrency: int,
    max_requests: int,
    make_request: Callable[[int], dict[str, Any]],
    pid: int,
) -> dict[str, Any]:
    """``concurrency`` clients send requests back to back until the time or request budget is spent."""
    peak_rss = rss_mib(pid)
    state = _DriveState(deadline=time.monotonic() + duration_s, max_requests=max_requests, peak_rss=peak_rss)
    headers = {"Authorization": f"Bearer {LOAD_KEY}"}
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as http:
        await asyncio.gather(
            _sample_memory(state, pid), *(_client(http, state, make_request, headers) for _ in range(concurrency))
        )
    elapsed = time.perf_counter() - started
    return _phase_summary(state, concurrency, elapsed)


def meme_payloads(ocr_share: float) -> Callable[[int], dict[str, Any]]:
    memes = [
        render_meme(top, bottom, size=(480, 360))
        for top, bottom in (("WHEN THE CODE", "FINALLY COMPILES"), ("BHAI KYA", "SCENE HAI"), ("MONDAY", "AGAIN"))
    ]
    texts = ["when the code finally compiles", "bhai kya scene hai", "monday again"]
    every = int(round(1 / ocr_share)) if ocr_share > 0 else 0

    def make(number: int) -> dict[str, Any]:
        index = number % len(memes)
        data = {} if every and number % every == 0 else {"text": texts[index]}
        return {"files": {"image": (f"meme{index}.png", memes[index], "image/png")}, "data": data}

    return make


# --- bad inputs --------------------------------------------------------------------------------


def _png(mode: str, size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


def _cmyk_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("CMYK", (64, 48), (0, 128, 128, 0)).save(buffer, "JPEG")
    return buffer.getvalue()


def _animated_gif() -> bytes:
    from PIL import Image

    frames = [Image.new("P", (32, 32), i * 40) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


_Case = tuple[str, str, str, dict[str, Any]]


def _load_auth() -> dict[str, str]:
    """The load-test key's Authorization header."""
    return {"Authorization": f"Bearer {LOAD_KEY}"}


def _b64(data: bytes) -> str:
    """Base64 text of ``data``."""
    return base64.b64encode(data).decode()


def _multipart(data: bytes, text: str | None = "x", name: str = "upload.bin") -> dict[str, Any]:
    """Request arguments for a multipart upload of ``data`` (with ``text`` unless it is empty)."""
    return {
        "files": {"image": (name, data, "application/octet-stream")},
        **({"data": {"text": text}} if text else {}),
    }


def _chunked_body(max_upload_bytes: int) -> Any:
    """Request arguments for a chunked multipart upload (no Content-Length) over the size limit."""
    boundary = "b"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'.encode()
    payload = head + b"\xff" * (max_upload_bytes + 1000) + f"\r\n--{boundary}--\r\n".encode()
    return {
        "content": (payload[i : i + 65536] for i in range(0, len(payload), 65536)),
        "headers": {**_load_auth(), "content-type": f"multipart/form-data; boundary={boundary}"},
    }


def _upload_cases(jpeg: bytes, max_upload_bytes: int) -> list[_Case]:
    """Broken, hostile or oversized uploads."""
    return [
        ("empty file", "POST", "/v1/classify", _multipart(b"")),
        ("text file named .jpg", "POST", "/v1/classify", _multipart(b"hello, not an image\n" * 20, name="x.jpg")),
        ("truncated JPEG", "POST", "/v1/classify", _multipart(truncated_jpeg())),
        ("PNG bomb 20000x20000 (small on the wire)", "POST", "/v1/classify", _multipart(png_bomb())),
        ("PNG bomb with garbage pixel data", "POST", "/v1/classify", _multipart(png_bomb(corrupt_pixels=True))),
        (
            "upload over the size limit (Content-Length)",
            "POST",
            "/v1/classify",
            _multipart(b"\xff\xd8\xff" + b"0" * (max_upload_bytes + 10)),
        ),
        ("chunked upload over the size limit", "POST", "/v1/classify", _chunked_body(max_upload_bytes)),
        ("text over 2000 characters", "POST", "/v1/classify", _multipart(jpeg, text="x" * 5000)),
    ]


def _body_cases() -> list[_Case]:
    """Malformed request bodies: wrong fields, broken multipart or JSON, odd content types."""
    key = _load_auth()
    return [
        ("missing image field", "POST", "/v1/classify", {"data": {"text": "no image"}}),
        ("image sent as a plain form field", "POST", "/v1/classify", {"data": {"image": "not a file"}}),
        (
            "broken multipart body",
            "POST",
            "/v1/classify",
            {"content": b"garbage" * 50, "headers": {**key, "content-type": "multipart/form-data; boundary=zz"}},
        ),
        ("JSON without image or text", "POST", "/v1/classify", {"json": {}}),
        ("JSON image not base64", "POST", "/v1/classify", {"json": {"image": "%%% not base64 %%%"}}),
        ("JSON base64 of a text file", "POST", "/v1/classify", {"json": {"image": _b64(b"plain text here")}}),
        ("JSON image as a number", "POST", "/v1/classify", {"json": {"image": 12345}}),
        ("JSON unknown field", "POST", "/v1/classify", {"json": {"text": "x", "colour": "red"}}),
        ("JSON text with NUL (no database text holds it)", "POST", "/v1/classify", {"json": {"text": "nul\x00"}}),
        (
            "malformed JSON",
            "POST",
            "/v1/classify",
            {"content": b'{"text": "x"', "headers": {**key, "content-type": "application/json"}},
        ),
        (
            "text/plain body",
            "POST",
            "/v1/classify",
            {"content": b"hello", "headers": {**key, "content-type": "text/plain"}},
        ),
        ("no Content-Type at all", "POST", "/v1/classify", {"content": b"hello"}),
    ]


def _option_cases(jpeg: bytes) -> list[_Case]:
    """Bad options and batches: unknown or out-of-range thresholds, odd query values, batch limits."""
    return [
        (
            "threshold for an unknown task",
            "POST",
            "/v1/classify",
            {"json": {"text": "x", "thresholds": {"anger": 0.5}}},
        ),
        ("threshold out of [0, 1]", "POST", "/v1/classify", {"json": {"text": "x", "thresholds": {"offensive": 7}}}),
        ("?explain=maybe", "POST", "/v1/classify?explain=maybe", {"json": {"text": "x"}}),
        ("batch over the item limit", "POST", "/v1/classify/batch", {"json": {"items": [{"text": "x"}] * 1000}}),
        ("batch with no items", "POST", "/v1/classify/batch", {"json": {"items": []}}),
        (
            "batch: good, corrupt, empty item",
            "POST",
            "/v1/classify/batch",
            {"json": {"items": [{"image": _b64(jpeg), "text": "ok"}, {"image": _b64(truncated_jpeg())}, {}]}},
        ),
    ]


def _auth_and_route_cases() -> list[_Case]:
    """Missing or wrong credentials, a forged request id, wrong method and unknown route."""
    return [
        ("no API key", "POST", "/v1/classify", {"json": {"text": "x"}, "headers": {}}),
        (
            "wrong API key",
            "POST",
            "/v1/classify",
            {"json": {"text": "x"}, "headers": {"Authorization": "Bearer mk_nope"}},
        ),
        (
            "Basic instead of Bearer",
            "POST",
            "/v1/classify",
            {"json": {"text": "x"}, "headers": {"Authorization": f"Basic {LOAD_KEY}"}},
        ),
        (
            "forged X-Request-ID (tab, space)",
            "POST",
            "/v1/classify",
            {"json": {"text": "x"}, "headers": {**_load_auth(), "X-Request-ID": "a b\tc"}},
        ),
        ("GET on the classify route", "GET", "/v1/classify", {}),
        ("unknown route", "GET", "/v2/classify", {}),
    ]


def _odd_valid_cases(jpeg: bytes) -> list[_Case]:
    """Odd but valid inputs: must be answered, not crash."""
    return [
        ("1x1 PNG", "POST", "/v1/classify", _multipart(_png("RGB", (1, 1)))),
        ("16-bit greyscale PNG", "POST", "/v1/classify", _multipart(_png("I;16"))),
        ("CMYK JPEG", "POST", "/v1/classify", _multipart(_cmyk_jpeg())),
        ("animated GIF", "POST", "/v1/classify", _multipart(_animated_gif())),
        (
            "text with emoji, RTL and Devanagari",
            "POST",
            "/v1/classify",
            _multipart(jpeg, text="😂 مرحبا मेरा दोस्त imgflip.com"),
        ),
        ("text-only JSON (romanised Hindi)", "POST", "/v1/classify", {"json": {"text": "bhai kya scene hai"}}),
    ]


def _send_cases(url: str, cases: list[_Case]) -> list[dict[str, Any]]:
    """Spend the limited key's burst, then send each case and record what it got."""
    key = _load_auth()
    results = []
    with httpx.Client(base_url=url, timeout=60.0) as http:
        for _ in range(4):  # spend the limited key's burst of 3, so the 4th is over its limit
            last = http.post("/v1/classify", json={"text": "x"}, headers={"Authorization": f"Bearer {LIMITED_KEY}"})
        results.append(_outcome("4th request in a burst of 3 (per-key rate limit)", last))
        for name, method, path, kwargs in cases:
            kwargs = dict(kwargs)
            headers = kwargs.pop("headers", key)
            try:
                response = http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as err:
                results.append({"input": name, "status": None, "code": f"client error: {err}", "detail": ""})
                continue
            results.append(_outcome(name, response))
    return results


def _bad_cases(max_upload_bytes: int) -> list[_Case]:
    """The bad-input catalogue: (name, method, path, request arguments), in the order they are sent."""
    jpeg = photo_jpeg()
    return [
        *_upload_cases(jpeg, max_upload_bytes),
        *_body_cases(),
        *_option_cases(jpeg),
        *_auth_and_route_cases(),
        *_odd_valid_cases(jpeg),
    ]


def bad_inputs(url: str, max_upload_bytes: int) -> list[dict[str, Any]]:
    """Send the bad-input catalogue (and a rate-limit burst) and return what each got."""
    return _send_cases(url, _bad_cases(max_upload_bytes))


def _outcome(name: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    detail = ""
    if error:
        code, detail = error["code"], error["message"][:110]
    elif "items" in body:
        code = "per item: " + ", ".join(
            f"{i['status']}" + (f" {i['error']['code']}" if "error" in i else "") for i in body["items"]
        )
    else:
        code = f"ok ({body.get('task_a', {}).get('label', '')}, text {body.get('text', {}).get('value', '')!r})"[:110]
    extra = {k: response.headers[k] for k in ("retry-after", "www-authenticate") if k in response.headers}
    return {"input": name, "status": response.status_code, "code": code, "detail": detail, "headers": extra}


# --- main ----------------------------------------------------------------------------------------


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*(str(c) for c in row)))


def _parse_args() -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of steady load (default 60)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=100_000, help="request budget of the steady phase")
    parser.add_argument(
        "--ocr-share", type=float, default=0.0, help="share of memes sent without text (read by OCR); 0 = OCR off"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--overload-duration", type=float, default=10.0)
    parser.add_argument("--overload-concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("bench/results/load_test.json"))
    return parser.parse_args()


def _gateway_env(args: argparse.Namespace, max_upload: int) -> dict[str, str]:
    """The gateway's environment: the two API keys, OCR, workers, queue, log level, upload limit."""
    keys = [
        {"name": "loadtest", "sha256": hash_key(LOAD_KEY), "rate_per_minute": 1e9, "burst": 100_000},
        {"name": "limited", "sha256": hash_key(LIMITED_KEY), "rate_per_minute": 1, "burst": 3},
    ]
    return {
        "MEMOTION_API_KEYS": json.dumps(keys),
        "MEMOTION_OCR": "easyocr" if args.ocr_share > 0 else "none",
        "MEMOTION_WORKERS": str(args.workers),
        "MEMOTION_MAX_QUEUE": str(args.max_queue),
        "MEMOTION_LOG_LEVEL": "warning",
        "MEMOTION_MAX_UPLOAD_BYTES": str(max_upload),
    }


@dataclass
class _Measurements:
    """What the phases measured on the running gateway."""

    rss_before: float
    steady: dict[str, Any]
    rss_after_steady: float
    overload: dict[str, Any]
    rss_after_overload: float
    bad: list[dict[str, Any]]
    health: int
    metrics: str
    rss_end: float


def _measure(url: str, pid: int, args: argparse.Namespace, max_upload: int) -> _Measurements:
    """Warm up, then run the steady, overload and bad-input phases, reading RSS between them."""
    make = meme_payloads(args.ocr_share)
    asyncio.run(drive(url, 3.0, 2, 20, make, pid))  # warm the connection pools and allocator
    rss_before = rss_mib(pid)
    steady = asyncio.run(drive(url, args.duration, args.concurrency, args.max_requests, make, pid))
    rss_after_steady = rss_mib(pid)
    overload = asyncio.run(drive(url, args.overload_duration, args.overload_concurrency, args.max_requests, make, pid))
    rss_after_overload = rss_mib(pid)
    bad = bad_inputs(url, max_upload)
    health = httpx.get(f"{url}/readyz").status_code
    metrics = httpx.get(f"{url}/metrics").text
    rss_end = rss_mib(pid)
    return _Measurements(
        rss_before, steady, rss_after_steady, overload, rss_after_overload, bad, health, metrics, rss_end
    )


def _build_report(args: argparse.Namespace, m: _Measurements, exit_code: int | None) -> dict[str, Any]:
    """The JSON report: machine, settings, memory, phases, bad inputs and the gateway's health."""
    return {
        "machine": {
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"repository": str(args.repository)},
        "memory_mib": {
            "before": round(m.rss_before, 1),
            "after_steady": round(m.rss_after_steady, 1),
            "after_overload": round(m.rss_after_overload, 1),
            "after_bad_inputs": round(m.rss_end, 1),
            "peak": max(m.steady["peak_rss_mib"], m.overload["peak_rss_mib"]),
        },
        "steady": m.steady,
        "overload": m.overload,
        "bad_inputs": m.bad,
        "ready_after": m.health,
        "internal_errors_in_metrics": 'code="internal_error"' in m.metrics,
        "exit_code_after_sigterm": exit_code,
    }


_PHASE_HEADER = [
    "phase",
    "clients",
    "s",
    "requests",
    "200",
    "memes/s",
    "p50 ms",
    "p99 ms",
    "non-200",
    "error codes",
    "peak RSS MiB",
]


def _phase_row(name: str, phase: dict[str, Any]) -> list[Any]:
    """One load phase as a row of the phase table."""
    lat = phase["latency_ms"]
    return [
        name,
        phase["concurrency"],
        phase["seconds"],
        phase["requests"],
        phase["ok"],
        phase["memes_per_s"],
        lat["p50"],
        lat["p99"],
        phase["non_200"],
        json.dumps(phase["error_codes"]),
        phase["peak_rss_mib"],
    ]


def _print_report(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Print the phase table, the memory and health line, and the bad-input table."""
    print(
        f"\nmemotion gateway load test on loopback ({args.repository}, {platform.python_version()}, "
        f"{report['machine']['cpus']} CPUs)\n"
    )
    rows = [_phase_row(name, report[name]) for name in ("steady", "overload")]
    print_table(rows, _PHASE_HEADER)
    memory = report["memory_mib"]
    print(
        f"\nserver RSS MiB: before {memory['before']}, after steady {memory['after_steady']}, after overload "
        f"{memory['after_overload']}, after bad inputs {memory['after_bad_inputs']}; ready afterwards: "
        f"{report['ready_after']}; internal errors: {report['internal_errors_in_metrics']}; exit code after "
        f"SIGTERM: {report['exit_code_after_sigterm']}\n"
    )
    print_table([[b["input"], b["status"], b["code"]] for b in report["bad_inputs"]], ["bad input", "status", "answer"])


def main() -> int:
    """Start the gateway, run every phase against it, stop it, then print and write the report."""
    args = _parse_args()
    max_upload = 10 * 1024 * 1024
    gateway = GatewayProcess(args.repository, env=_gateway_env(args, max_upload))
    url = gateway.start()
    try:
        assert gateway._process is not None
        measured = _measure(url, gateway._process.pid, args, max_upload)
    finally:
        exit_code = gateway.stop()

    report = _build_report(args, measured, exit_code)
    _print_report(args, report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
