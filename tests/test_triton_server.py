"""A real tritonserver (nvidia-pytriton's, python backend, CPU) serving the exported repository:
parity with the embedded ONNX Runtime backend, dynamic batching, the gateway classifying through
Triton over HTTP, and the faults: Triton down at start, Triton restarting, a model missing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from memotion.manifest import load_manifest
from service.classify_file import classify_file
from service.core.settings import GatewaySettings
from service.inference.backends.base import BackendUnavailable
from service.inference.backends.ort_backend import OnnxRuntimeBackend
from service.inference.backends.triton_backend import TritonBackend
from service.inference.classifier import MemeClassifier
from service.inference.ocr import NoOcr
from service.launchers.child_process import free_port
from service.launchers.gateway_process import GatewayProcess, GatewayStartError
from service.launchers.triton_server import TritonServerError, TritonServerProcess
from tests.gateway_fixtures import photo_jpeg, render_meme

pytestmark = pytest.mark.slow

TEXTS = ["when the code finally compiles", "bhai ekdum mast hai yaar", "monday again", ""]


@pytest.fixture(scope="module")
def triton(model_repository: Path) -> Iterator[TritonServerProcess]:
    with TritonServerProcess(model_repository) as server:
        yield server


def gateway_env(server: TritonServerProcess, **extra: str) -> dict[str, str]:
    return {
        "MEMOTION_BACKEND": "triton",
        "MEMOTION_TRITON_URL": server.grpc_url,
        "MEMOTION_TRITON_METRICS_URL": server.metrics_url,
        "MEMOTION_OCR": "none",
        **extra,
    }


def memes() -> list[Image.Image]:
    import io

    pictures = [
        render_meme("TOP TEXT", "BOTTOM"),
        photo_jpeg(seed=1),
        photo_jpeg((200, 500), seed=2),
        render_meme("NO", "CAPTION", size=(300, 300)),
    ]
    return [Image.open(io.BytesIO(data)).convert("RGB") for data in pictures]


def post(url: str, text: str = "a meme about tests", seed: int = 3) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/classify",
        files={"image": ("m.jpg", photo_jpeg(seed=seed), "image/jpeg")},
        data={"text": text},
        timeout=60,
    )


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the Prometheus sample ``name`` whose labels include ``labels`` (None if absent)."""
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(name + "{") and wanted <= set(head[len(name) + 1 : -1].split(",")):
            return float(value)
    return None


def wait_for(url: str, status: int = 200, timeout_s: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == status or time.monotonic() > deadline:
                return response
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.25)


@contextmanager
def live_gateway(repository: Path, env: dict[str, str]) -> Iterator[str]:
    """`memotion serve` waited for until it is *live* (/healthz), not ready: for Triton-down tests."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="memotion-gateway-", suffix=".log", delete=False)  # noqa: SIM115 (closed in finally)
    process = subprocess.Popen(
        [sys.executable, "-m", "memotion_cli", "serve", "--repository", str(repository), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"gateway exited: {Path(log.name).read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"gateway not live: {Path(log.name).read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)


# --- the backend, in process -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_triton_gives_the_embedded_onnxruntime_answers(
    model_repository: Path, triton: TritonServerProcess, protocol: str
) -> None:
    manifest = load_manifest(model_repository)
    url = triton.grpc_url if protocol == "grpc" else triton.http_url.removeprefix("http://")
    remote = TritonBackend(url, manifest.members(), protocol=protocol)  # type: ignore[arg-type]
    local = OnnxRuntimeBackend(model_repository, manifest.members())
    assert remote.ready(), remote.problem
    with_triton = MemeClassifier(manifest, model_repository, remote, NoOcr())
    embedded = MemeClassifier(manifest, model_repository, local, NoOcr())
    try:
        got = with_triton.classify_batch(memes(), TEXTS)
        expected = embedded.classify_batch(memes(), TEXTS)
    finally:
        remote.close()
        local.close()
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        assert a.votes == b.votes and set(a.votes) == {m.name for m in manifest.members()}
        assert a.task_b == b.task_b
        for head, prediction in a.tasks.items():
            assert prediction.label == b.tasks[head].label
            assert prediction.scores == pytest.approx(b.tasks[head].scores, abs=1e-5)


def test_dynamic_batching_merges_concurrent_requests_and_splits_the_answers(
    model_repository: Path, triton: TritonServerProcess
) -> None:
    import tritonclient.grpc as grpcclient

    manifest = load_manifest(model_repository)
    model = manifest.model("clip_text")
    backend = TritonBackend(triton.grpc_url, [model])
    local = OnnxRuntimeBackend(model_repository, [model])
    stats = grpcclient.InferenceServerClient(triton.grpc_url)

    def counts() -> tuple[int, int]:
        entry = stats.get_inference_statistics("clip_text", str(model.version)).model_stats[0]
        return entry.inference_count, entry.execution_count

    clients = 24
    rng = np.random.default_rng(0)
    requests = [rng.integers(1, 400, (1, manifest.tokenizer.context_length)) for _ in range(clients)]
    answers: list[dict[str, np.ndarray] | None] = [None] * clients
    barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        barrier.wait()
        answers[i] = backend.infer(model, {"input_ids": requests[i]})

    before = counts()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(answer is not None for answer in answers), "a request did not finish in 60 s"
    # Triton updates its statistics after it has sent the responses: wait for them to catch up.
    deadline = time.monotonic() + 15
    while True:
        inferences, executions = (a - b for a, b in zip(counts(), before))
        if inferences >= clients or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    stats.close()
    backend.close()
    assert inferences == clients
    assert executions < clients, f"{clients} concurrent requests ran in {executions} executions: no batching"
    for request, answer in zip(requests, answers):
        expected = local.infer(model, {"input_ids": request})
        assert answer is not None
        for name in model.outputs:
            np.testing.assert_allclose(answer[name], expected[name], atol=1e-5)


# --- the gateway through Triton ----------------------------------------------------------------


def test_gateway_classifies_through_triton_like_the_embedded_backend(
    model_repository: Path, triton: TritonServerProcess, tmp_path: Path
) -> None:
    embedded = GatewaySettings(model_repository=model_repository, ocr="none")
    with GatewayProcess(model_repository, env=gateway_env(triton)) as url:
        ready = httpx.get(f"{url}/readyz").json()
        assert (ready["backend"], ready["models"]) == (
            "triton",
            [m.name for m in load_manifest(model_repository).members()],
        )
        for seed, text in enumerate(TEXTS[:3]):
            path = tmp_path / f"meme-{seed}.jpg"
            path.write_bytes(photo_jpeg(seed=seed))
            remote = classify_file(path, text=text, url=url)
            local = classify_file(path, text=text, settings=embedded)
            assert remote["votes"] == local["votes"]
            assert remote["task_a"]["label"] == local["task_a"]["label"]
            assert remote["task_b"] == local["task_b"]
            for head, prediction in local["task_c"].items():
                assert remote["task_c"][head]["label"] == prediction["label"]
                assert remote["task_c"][head]["scores"] == pytest.approx(prediction["scores"], abs=1e-5)
        metrics = httpx.get(f"{url}/metrics").text
    assert metric(metrics, "memotion_backend_ready", backend="triton") == 1.0
    # Triton's own metrics, scraped from its metrics port and surfaced by the gateway.
    for member in [m.name for m in load_manifest(model_repository).members()]:  # the voters the gateway serves
        assert (metric(metrics, "nv_inference_request_success", model=member) or 0) >= 3


def test_triton_down_at_start_gives_503_then_the_gateway_serves_once_it_is_up(model_repository: Path) -> None:
    server = TritonServerProcess(model_repository)  # ports chosen, nothing started yet
    with live_gateway(model_repository, gateway_env(server)) as url:
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "backend_not_ready"
        assert server.grpc_url in ready.json()["error"]["message"]
        answer = post(url)
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error["code"] == "backend_unavailable" and "not reachable" in error["message"]
        assert answer.headers["retry-after"] == "1"
        assert metric(httpx.get(f"{url}/metrics").text, "memotion_backend_ready", backend="triton") == 0.0
        with server:
            assert wait_for(f"{url}/readyz", 200, timeout_s=30).status_code == 200
            assert post(url).status_code == 200


def test_gateway_recovers_when_triton_restarts_without_restarting_itself(model_repository: Path) -> None:
    with (
        TritonServerProcess(model_repository) as server,
        GatewayProcess(model_repository, env=gateway_env(server)) as url,
    ):
        assert post(url).status_code == 200
        server.kill()  # a crash: SIGKILL to tritonserver and its python-backend stubs
        down = post(url, seed=4)  # a meme not in the result cache: it needs Triton
        assert down.status_code == 503 and down.json()["error"]["code"] == "backend_unavailable"
        assert httpx.get(f"{url}/readyz").status_code == 503
        server.start()  # same ports
        assert wait_for(f"{url}/readyz", 200, timeout_s=30).status_code == 200
        assert post(url, seed=4).status_code == 200
        # The same gateway process throughout: its counters kept both successful answers.
        metrics = httpx.get(f"{url}/metrics").text
        assert metric(metrics, "memotion_requests_total", route="/v1/classify", status="200") == 2.0
        assert metric(metrics, "memotion_requests_total", route="/v1/classify", status="503") == 1.0


def test_a_model_missing_from_the_repository_is_a_startup_error_naming_it(
    model_repository: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "repository"
    shutil.copytree(model_repository, broken)
    (broken / "clip_multi" / "config.pbtxt").unlink()
    with pytest.raises(TritonServerError, match=r"clip_multi: missing clip_multi/config.pbtxt"):
        TritonServerProcess(broken).start()


def test_gateway_refuses_to_start_when_triton_does_not_serve_a_manifest_model(model_repository: Path) -> None:
    *served, missing = [m.name for m in load_manifest(model_repository).members()]  # one voter left out
    with TritonServerProcess(model_repository, models=served) as server:
        gateway = GatewayProcess(model_repository, env=gateway_env(server), ready_timeout_s=120)
        with pytest.raises(GatewayStartError) as caught:
            gateway.start()
    message = str(caught.value)
    assert "exited with status" in message
    assert f"does not serve model {missing} version 1" in message


def test_triton_serve_command_runs_until_terminated(model_repository: Path) -> None:
    ports = [str(free_port()) for _ in range(3)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memotion_cli",
            "triton-serve",
            "--repository",
            str(model_repository),
            "--grpc-port",
            ports[0],
            "--http-port",
            ports[1],
            "--metrics-port",
            ports[2],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("tritonserver ready"), line
        assert httpx.get(f"http://127.0.0.1:{ports[1]}/v2/health/ready", timeout=5).status_code == 200
        backend = TritonBackend(f"127.0.0.1:{ports[0]}", load_manifest(model_repository).members())
        assert backend.ready(), backend.problem
        backend.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # lets it stop its tritonserver
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    with pytest.raises(BackendUnavailable):
        TritonBackend(f"127.0.0.1:{ports[0]}", []).infer(
            load_manifest(model_repository).model("clip_text"), {"input_ids": np.zeros((1, 4), np.int64)}
        )
