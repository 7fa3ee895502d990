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


async def drive(
    url: str,
    duration_s: float,
    concurrency: int,
    max_requests: int,
    make_request: Callable[[int], dict[str, Any]],
    pid: int,
) -> dict[str, Any]:
    """``concurrency`` clients send requests back to back until the time or request budget is spent."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    error_codes: dict[str, int] = {}
    sent = 0
    peak_rss = rss_mib(pid)
    deadline = time.monotonic() + duration_s
    headers = {"Authorization": f"Bearer {LOAD_KEY}"}

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.monotonic() < deadline and sent < max_requests:
            number = sent
            sent += 1
            started = time.perf_counter()
            try:
                response = await http.post("/v1/classify", headers=headers, **make_request(number))
                key = str(response.status_code)
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000.0)
                else:
                    code = response.json().get("error", {}).get("code", "?")
                    error_codes[code] = error_codes.get(code, 0) + 1
            except httpx.HTTPError as err:
                key = type(err).__name__
            statuses[key] = statuses.get(key, 0) + 1

    async def sample_memory() -> None:
        nonlocal peak_rss
        while time.monotonic() < deadline and sent < max_requests:
            peak_rss = max(peak_rss, rss_mib(pid))
            await asyncio.sleep(0.5)

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as http:
        await asyncio.gather(sample_memory(), *(client(http) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    ok = statuses.get("200", 0)
    return {
        "seconds": round(elapsed, 2),
        "concurrency": concurrency,
        "requests": sent,
        "ok": ok,
        "non_200": sent - ok,
        "statuses": statuses,
        "error_codes": error_codes,
        "memes_per_s": round(ok / elapsed, 2),
        "latency_ms": {
            "mean": round(statistics.fmean(ordered), 1) if ordered else None,
            "p50": round(percentile(ordered, 0.50), 1),
            "p90": round(percentile(ordered, 0.90), 1),
            "p99": round(percentile(ordered, 0.99), 1),
            "max": round(ordered[-1], 1) if ordered else None,
        },
        "peak_rss_mib": round(peak_rss, 1),
    }


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


def bad_inputs(url: str, max_upload_bytes: int) -> list[dict[str, Any]]:
    key = {"Authorization": f"Bearer {LOAD_KEY}"}
    jpeg = photo_jpeg()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731

    def multipart(data: bytes, text: str | None = "x", name: str = "upload.bin") -> dict[str, Any]:
        return {
            "files": {"image": (name, data, "application/octet-stream")},
            **({"data": {"text": text}} if text else {}),
        }

    def chunked_body() -> Any:
        boundary = "b"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'.encode()
        payload = head + b"\xff" * (max_upload_bytes + 1000) + f"\r\n--{boundary}--\r\n".encode()
        return {
            "content": (payload[i : i + 65536] for i in range(0, len(payload), 65536)),
            "headers": {**key, "content-type": f"multipart/form-data; boundary={boundary}"},
        }

    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        ("empty file", "POST", "/v1/classify", multipart(b"")),
        ("text file named .jpg", "POST", "/v1/classify", multipart(b"hello, not an image\n" * 20, name="x.jpg")),
        ("truncated JPEG", "POST", "/v1/classify", multipart(truncated_jpeg())),
        ("PNG bomb 20000x20000 (small on the wire)", "POST", "/v1/classify", multipart(png_bomb())),
        ("PNG bomb with garbage pixel data", "POST", "/v1/classify", multipart(png_bomb(corrupt_pixels=True))),
        (
            "upload over the size limit (Content-Length)",
            "POST",
            "/v1/classify",
            multipart(b"\xff\xd8\xff" + b"0" * (max_upload_bytes + 10)),
        ),
        ("chunked upload over the size limit", "POST", "/v1/classify", chunked_body()),
        ("text over 2000 characters", "POST", "/v1/classify", multipart(jpeg, text="x" * 5000)),
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
        ("JSON base64 of a text file", "POST", "/v1/classify", {"json": {"image": b64(b"plain text here")}}),
        ("JSON image as a number", "POST", "/v1/classify", {"json": {"image": 12345}}),
        ("JSON unknown field", "POST", "/v1/classify", {"json": {"text": "x", "colour": "red"}}),
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
            {"json": {"items": [{"image": b64(jpeg), "text": "ok"}, {"image": b64(truncated_jpeg())}, {}]}},
        ),
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
            {"json": {"text": "x"}, "headers": {**key, "X-Request-ID": "a b\tc"}},
        ),
        ("GET on the classify route", "GET", "/v1/classify", {}),
        ("unknown route", "GET", "/v2/classify", {}),
        # Odd but valid inputs: must be answered, not crash.
        ("1x1 PNG", "POST", "/v1/classify", multipart(_png("RGB", (1, 1)))),
        ("16-bit greyscale PNG", "POST", "/v1/classify", multipart(_png("I;16"))),
        ("CMYK JPEG", "POST", "/v1/classify", multipart(_cmyk_jpeg())),
        ("animated GIF", "POST", "/v1/classify", multipart(_animated_gif())),
        (
            "text with NUL, emoji, RTL and Devanagari",
            "POST",
            "/v1/classify",
            multipart(jpeg, text="nul\x00 😂 مرحبا मेरा दोस्त imgflip.com"),
        ),
        ("text-only JSON (romanised Hindi)", "POST", "/v1/classify", {"json": {"text": "bhai kya scene hai"}}),
    ]
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


def main() -> int:
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
    args = parser.parse_args()

    keys = [
        {"name": "loadtest", "sha256": hash_key(LOAD_KEY), "rate_per_minute": 1e9, "burst": 100_000},
        {"name": "limited", "sha256": hash_key(LIMITED_KEY), "rate_per_minute": 1, "burst": 3},
    ]
    max_upload = 10 * 1024 * 1024
    env = {
        "MEMOTION_API_KEYS": json.dumps(keys),
        "MEMOTION_OCR": "easyocr" if args.ocr_share > 0 else "none",
        "MEMOTION_WORKERS": str(args.workers),
        "MEMOTION_MAX_QUEUE": str(args.max_queue),
        "MEMOTION_LOG_LEVEL": "warning",
        "MEMOTION_MAX_UPLOAD_BYTES": str(max_upload),
    }
    gateway = GatewayProcess(args.repository, env=env)
    url = gateway.start()
    try:
        assert gateway._process is not None
        pid = gateway._process.pid
        make = meme_payloads(args.ocr_share)
        asyncio.run(drive(url, 3.0, 2, 20, make, pid))  # warm the connection pools and allocator
        rss_before = rss_mib(pid)
        steady = asyncio.run(drive(url, args.duration, args.concurrency, args.max_requests, make, pid))
        rss_after_steady = rss_mib(pid)
        overload = asyncio.run(
            drive(url, args.overload_duration, args.overload_concurrency, args.max_requests, make, pid)
        )
        rss_after_overload = rss_mib(pid)
        bad = bad_inputs(url, max_upload)
        health = httpx.get(f"{url}/readyz").status_code
        metrics = httpx.get(f"{url}/metrics").text
        rss_end = rss_mib(pid)
    finally:
        exit_code = gateway.stop()

    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"repository": str(args.repository)},
        "memory_mib": {
            "before": round(rss_before, 1),
            "after_steady": round(rss_after_steady, 1),
            "after_overload": round(rss_after_overload, 1),
            "after_bad_inputs": round(rss_end, 1),
            "peak": max(steady["peak_rss_mib"], overload["peak_rss_mib"]),
        },
        "steady": steady,
        "overload": overload,
        "bad_inputs": bad,
        "ready_after": health,
        "internal_errors_in_metrics": 'code="internal_error"' in metrics,
        "exit_code_after_sigterm": exit_code,
    }
    print(
        f"\nmemotion gateway load test on loopback ({args.repository}, {platform.python_version()}, "
        f"{report['machine']['cpus']} CPUs)\n"
    )
    rows = []
    for name, phase in (("steady", steady), ("overload", overload)):
        lat = phase["latency_ms"]
        rows.append(
            [
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
        )
    print_table(
        rows,
        [
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
        ],
    )
    memory = report["memory_mib"]
    print(
        f"\nserver RSS MiB: before {memory['before']}, after steady {memory['after_steady']}, after overload "
        f"{memory['after_overload']}, after bad inputs {memory['after_bad_inputs']}; ready afterwards: {health}; "
        f"internal errors: {report['internal_errors_in_metrics']}; exit code after SIGTERM: {exit_code}\n"
    )
    print_table([[b["input"], b["status"], b["code"]] for b in bad], ["bad input", "status", "answer"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
