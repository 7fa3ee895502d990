"""Drive a real gateway with generated requests and record what came back (tests/test_fuzz_api.py
runs a few hundred cases, bench/fuzz.py a few thousand). Issue 20's sources (text at every entry,
odd form charsets, batch pixel totals, a follow-up on the same connection after every error status,
client hang-ups, a frozen Redis) are in tests/fuzz_round2.py.

Two sources of cases: Schemathesis, from the gateway's own OpenAPI schema (every operation, valid
and invalid data: ``positive`` and ``negative`` generation), and the Hypothesis strategies of
tests/fuzz_strategies.py (hostile image files as multipart uploads and as base64 JSON, hostile JSON
bodies, form thresholds). The contract checked by the callers: no 5xx, every answer within the
configured limits, the server's memory bounded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from tests.fuzz_strategies import classify_json_bodies, image_files, thresholds_values

if TYPE_CHECKING:
    from tests.fuzz_round2 import FrozenCache


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A process's resident memory (``VmHWM``: its peak so far) in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    return 0


def server_pid(base_url: str) -> int:
    """The pid of the process listening on ``base_url``'s port (from /proc/net/tcp and /proc/*/fd)."""
    port = int(base_url.rsplit(":", 1)[1])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(entry.name)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


@dataclass
class EndpointStats:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    worst_s: float = 0.0
    worst_case: str = ""
    failures: list[str] = field(default_factory=list)  # 5xx and transport errors, described


@dataclass
class FuzzReport:
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)
    peak_rss_mib: float = 0.0  # sampled during the run
    rss_before_mib: float = 0.0
    seconds: float = 0.0

    def record(self, endpoint: str, status: int | None, seconds: float, what: str, problem: str | None = None) -> None:
        """One case; a failure when ``status`` is None (transport error) or 5xx, or ``problem`` says so."""
        stats = self.endpoints.setdefault(endpoint, EndpointStats())
        stats.cases += 1
        stats.statuses[status if status is not None else 0] += 1
        if seconds > stats.worst_s:
            stats.worst_s, stats.worst_case = seconds, what[:300]
        if status is None or status >= 500 or problem:
            stats.failures.append(f"{status}: {(problem + ': ') if problem else ''}{what[:500]}")

    @property
    def cases(self) -> int:
        return sum(s.cases for s in self.endpoints.values())

    @property
    def server_errors(self) -> list[str]:
        return [f"{name} {failure}" for name, s in self.endpoints.items() for failure in s.failures]

    @property
    def worst_s(self) -> float:
        return max((s.worst_s for s in self.endpoints.values()), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "server_errors": len(self.server_errors),
            "worst_latency_s": round(self.worst_s, 3),
            "peak_server_rss_mib": round(self.peak_rss_mib, 1),
            "server_rss_before_mib": round(self.rss_before_mib, 1),
            "seconds": round(self.seconds, 1),
            "endpoints": {
                name: {
                    "cases": s.cases,
                    "statuses": dict(sorted(s.statuses.items())),
                    "worst_latency_s": round(s.worst_s, 3),
                    "worst_case": s.worst_case,
                    "failures": s.failures[:20],
                }
                for name, s in sorted(self.endpoints.items())
            },
        }


class MemorySampler:
    """Samples the server's resident memory every ``interval_s`` while the run lasts."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            except OSError:
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _hypothesis_settings(examples: int, seed: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed == 0,
        suppress_health_check=list(HealthCheck),
    )


def fuzz_schema(
    base_url: str, report: FuzzReport, examples: int, timeout_s: float, headers: dict[str, str] | None = None
) -> None:
    """Every operation of the gateway's OpenAPI schema, valid and invalid data (Schemathesis);
    ``headers`` (a staff key) go with every case, so the admin and review endpoints get past the key check."""
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(base_url, report, examples, timeout_s, operation, mode, headers)


def _fuzz_operation(
    base_url: str,
    report: FuzzReport,
    examples: int,
    timeout_s: float,
    operation: Any,
    mode: Any,
    headers: dict[str, str] | None = None,
) -> None:
    import requests

    name = f"{operation.method.upper()} {operation.path}"

    @_hypothesis_settings(max(1, examples // 2), 0)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        start = time.perf_counter()
        try:
            response = case.call(base_url=base_url, timeout=timeout_s, headers=headers)
            status: int | None = response.status_code
            detail = f" -> {response.text[:300]}" if status is not None and status >= 500 else ""
        except requests.RequestException as err:
            status, detail = None, f" -> {type(err).__name__}: {err}"
        what = f"{mode.value}: {case.as_curl_command()}"[:400]
        report.record(name, status, time.perf_counter() - start, what + detail)

    with contextlib.suppress(Unsatisfiable):  # nothing invalid to generate (a GET without parameters)
        run()


def _timed(
    report: FuzzReport,
    name: str,
    what: str,
    call: Callable[[], httpx.Response],
    check: Callable[[httpx.Response], str | None] | None = None,
) -> float:
    """Run one case and record it (``check``: what is wrong with an answer, beyond a 5xx); its seconds."""
    start = time.perf_counter()
    problem = None
    try:
        response = call()
        status: int | None = response.status_code
        detail = f" -> {response.text[:300]}" if response.status_code >= 500 else ""
        problem = check(response) if check is not None else None
    except httpx.LocalProtocolError:
        return 0.0  # the client itself refused to send it (a header value HTTP forbids): not a case
    except httpx.HTTPError as err:
        status, detail = None, f" -> {type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    report.record(name, status, seconds, what + detail, problem)
    return seconds


def fuzz_uploads(base_url: str, report: FuzzReport, examples: int, client: httpx.Client, seed: int = 0) -> None:
    """Hostile image files (multipart and base64 JSON, single and batch), hostile JSON bodies and
    form thresholds (Hypothesis)."""
    url = f"{base_url}/v1/classify"

    @_hypothesis_settings(examples, seed)
    @given(data=image_files(), text=st.none() | st.text(max_size=60), thresholds=_sometimes(thresholds_values()))
    def multipart(data: bytes, text: str | None, thresholds: Any) -> None:
        form: dict[str, str] = {} if text is None else {"text": text}
        if thresholds is not None:
            form["thresholds"] = thresholds if isinstance(thresholds, str) else json.dumps(thresholds)
        what = f"multipart {len(data)} bytes {data[:24]!r} text={text!r} thresholds={str(thresholds)[:80]}"
        _timed(
            report, "POST /v1/classify (multipart)", what, lambda: client.post(url, files={"image": data}, data=form)
        )

    @_hypothesis_settings(examples, seed)
    @given(data=image_files(), body=classify_json_bodies())
    def json_bodies(data: bytes, body: Any) -> None:
        if isinstance(body, dict) and "image" not in body:
            body = {**body, "image": base64.b64encode(data).decode()}
        raw = json.dumps(body).encode()  # NaN and Infinity as JavaScript literals: hostile JSON too
        what = f"json {raw[:200]!r}"
        headers = {"Content-Type": "application/json"}
        _timed(report, "POST /v1/classify (json)", what, lambda: client.post(url, content=raw, headers=headers))

    @_hypothesis_settings(max(1, examples // 4), seed)
    @given(images=st.lists(image_files(), min_size=1, max_size=5), text=st.none() | st.text(max_size=40))
    def batches(images: list[bytes], text: str | None) -> None:
        items = [{"id": str(i), "image": base64.b64encode(d).decode(), "text": text} for i, d in enumerate(images)]
        what = f"batch of {len(items)}: {[len(d) for d in images]} bytes"
        _timed(
            report, "POST /v1/classify/batch (images)", what, lambda: client.post(f"{url}/batch", json={"items": items})
        )

    multipart()
    json_bodies()
    batches()


def _sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """None three times in four: most cases should reach the image, not stop at a bad field."""
    return st.one_of(st.none(), st.none(), st.none(), strategy)


ROUTES = ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/ui", "/v1/classify", "/v1/nope")


def fuzz_routes(base_url: str, report: FuzzReport, examples: int, client: httpx.Client, seed: int = 0) -> None:
    """Any method on any route (and unknown ones) with hostile query strings and headers."""
    header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)

    @_hypothesis_settings(examples, seed)
    @given(
        method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
        route=st.sampled_from(ROUTES),
        query=st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=3),
        request_id=st.none() | header_text,
        authorization=st.none() | header_text,
        content_type=st.none() | header_text | st.sampled_from(["application/json", "multipart/form-data"]),
        body=st.binary(max_size=300),
    )
    def probe(
        method: str,
        route: str,
        query: dict[str, str],
        request_id: str | None,
        authorization: str | None,
        content_type: str | None,
        body: bytes,
    ) -> None:
        headers = {
            k: v
            for k, v in {
                "X-Request-ID": request_id,
                "Authorization": authorization,
                "Content-Type": content_type,
            }.items()
            if v is not None
        }
        what = f"{method} {route} query={query} headers={headers} body={body[:40]!r}"
        name = f"{method if method in ('GET', 'HEAD') else 'other'} (any route)"
        content = body if method not in ("GET", "HEAD") else None
        _timed(
            report,
            name,
            what,
            lambda: client.request(method, base_url + route, params=query, headers=headers, content=content),
        )

    probe()


def run_fuzz(
    base_url: str,
    pid: int,
    *,
    examples: int,
    timeout_s: float,
    seed: int = 0,
    max_side: int = 2000,
    frozen_cache: FrozenCache | None = None,
    schema_headers: dict[str, str] | None = None,
) -> FuzzReport:
    """The whole run: ``examples`` cases per Schemathesis operation and per Hypothesis source
    (``max_side``: the largest side of the batch pixel-total cases; ``frozen_cache``: how to freeze
    the gateway's Redis, for the frozen-dependency cases; ``schema_headers``: sent with every
    Schemathesis case, a staff key for the admin and review endpoints). Last, /metrics must count no 5xx."""
    from tests.fuzz_round2 import fuzz_frozen_cache, fuzz_hostile_round2, server_counted_5xx

    report = FuzzReport(rss_before_mib=rss_kib(pid) / 1024.0)
    start = time.perf_counter()
    with MemorySampler(pid) as sampler, httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0)) as client:
        fuzz_schema(base_url, report, examples, timeout_s, schema_headers)
        fuzz_uploads(base_url, report, examples, client, seed)
        fuzz_routes(base_url, report, examples, client, seed)
        fuzz_hostile_round2(base_url, report, examples, client, seed, max_side)
        if frozen_cache is not None:
            fuzz_frozen_cache(base_url, report, examples, client, frozen_cache, seed)
        counted = server_counted_5xx(client, base_url)
        report.record("/metrics: 5xx counted by the server", 200, 0.0, f"{counted}", "5xx counted" if counted else None)
    report.peak_rss_mib = sampler.peak_kib / 1024.0
    report.seconds = time.perf_counter() - start
    return report
