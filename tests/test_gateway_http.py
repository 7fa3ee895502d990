"""The gateway over real HTTP: a uvicorn process serving the test model repository (ONNX Runtime and
real EasyOCR), no mocks."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway_fixtures import photo_jpeg, png_bomb, render_meme, start_gateway, truncated_jpeg

pytestmark = pytest.mark.slow

SMALL_UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def manifest(model_repository: Path) -> dict[str, Any]:
    return json.loads((model_repository / "manifest.json").read_text())


@pytest.fixture(scope="module")
def client(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=60.0) as http:
        yield http


@pytest.fixture(scope="module")
def small_limit_url(model_repository: Path) -> Iterator[str]:
    """A second gateway with a 200 kB upload limit and OCR off (starts in a few seconds)."""
    with start_gateway(model_repository, MEMOTION_MAX_UPLOAD_BYTES=SMALL_UPLOAD_LIMIT, MEMOTION_OCR="none") as url:
        yield url


def _post(client: httpx.Client, image: bytes | None, text: str | None = None, **kwargs: Any) -> httpx.Response:
    files = {"image": ("meme.jpg", image, "image/jpeg")} if image is not None else None
    data = {"text": text} if text is not None else None
    return client.post("/v1/classify", files=files, data=data, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "status"}
    assert error["status"] == status
    assert error["code"] == code, error
    assert re.fullmatch(r"[a-z][a-z0-9_]*", error["code"])
    assert len(error["message"]) > 20
    assert response.headers.get("x-request-id")
    return error


def assert_classify_shape(body: dict[str, Any], manifest: dict[str, Any]) -> None:
    tasks = {t["name"]: t for t in manifest["tasks"]}
    task_b_names: dict[str, str] = manifest["task_b_names"]
    (task_a_name,) = [name for name in tasks if name not in task_b_names]
    members = list(manifest["ensemble"]["members"])

    assert body["model_version"] == manifest["repository_version"]
    assert body["notice"] == manifest.get("notice", "")

    def check(prediction: dict[str, Any], task: dict[str, Any]) -> None:
        assert list(prediction["scores"]) == list(task["labels"])
        assert prediction["label"] in task["labels"]
        assert math.isclose(sum(prediction["scores"].values()), 1.0, abs_tol=1e-6)
        assert all(0.0 <= s <= 1.0 for s in prediction["scores"].values())

    check(body["task_a"], tasks[task_a_name])
    assert list(body["task_c"]) == [name for name in tasks if name in task_b_names]
    for head, prediction in body["task_c"].items():
        check(prediction, tasks[head])
        assert prediction["code"] == tasks[head]["codes"][tasks[head]["labels"].index(prediction["label"])]
    # Task B: present iff the voted Task C intensity is above the first ("none") label.
    assert body["task_b"] == {
        task_b_names[head]: tasks[head]["labels"].index(p["label"]) > 0 for head, p in body["task_c"].items()
    }
    assert list(body["votes"]) == members
    for member_votes in body["votes"].values():
        assert set(member_votes) == set(tasks)
        for head, label in member_votes.items():
            assert label in tasks[head]["labels"]
    # With majority voting, the ensemble's label got at least as many votes as any other label among
    # the head's voters (the ensemble search may pick a subset of the members per head).
    voters = manifest["ensemble"].get("task_members", {})
    for head in tasks:
        voted = body["task_a"]["label"] if head == task_a_name else body["task_c"][head]["label"]
        counts = [body["votes"][m][head] for m in voters.get(head, members)]
        assert counts.count(voted) == max(counts.count(label) for label in counts)
    timings = body["timings_ms"]
    inputs = {name for model in manifest["models"] if model["name"] in members for name in model["inputs"]}
    expected = {"decode", "inference", "vote", "total", *(f"inference.{m}" for m in members)}
    expected |= {"tokenize"} if "input_ids" in inputs else set()
    expected |= {"preprocess"} if "pixel_values" in inputs else set()
    assert expected <= set(timings) <= expected | {"ocr", "text"}  # text: cleaning, language id (service/text)
    assert all(isinstance(v, float) and v >= 0 for v in timings.values())
    assert timings["inference"] == pytest.approx(sum(timings[f"inference.{m}"] for m in members))
    assert timings["total"] >= max(v for k, v in timings.items() if k != "total")


# --- good requests ----------------------------------------------------------------------------


def test_classify_with_text(client: httpx.Client, manifest: dict[str, Any]) -> None:
    response = _post(client, photo_jpeg(), text="when the tests pass on the first try")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == {"value": "when the tests pass on the first try", "source": "request"}
    assert "ocr" not in body["timings_ms"]
    assert_classify_shape(body, manifest)


def test_classify_without_text_runs_ocr(client: httpx.Client, manifest: dict[str, Any]) -> None:
    meme = render_meme("WHEN THE CODE", "FINALLY COMPILES")
    response = client.post("/v1/classify", files={"image": ("meme.png", meme, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"]["source"] == "ocr"
    words = body["text"]["value"].upper().split()
    assert words == ["WHEN", "THE", "CODE", "FINALLY", "COMPILES"], body["text"]
    assert body["timings_ms"]["ocr"] > 0
    assert_classify_shape(body, manifest)


def test_request_text_overrides_ocr(client: httpx.Client) -> None:
    meme = render_meme("WHEN THE CODE", "FINALLY COMPILES")
    response = client.post(
        "/v1/classify", files={"image": ("meme.png", meme, "image/png")}, data={"text": "typed by the client"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["text"] == {"value": "typed by the client", "source": "request"}


def test_same_input_same_answer(client: httpx.Client) -> None:
    first = _post(client, photo_jpeg(seed=3), text="same").json()
    second = _post(client, photo_jpeg(seed=3), text="same").json()
    for key in ("task_a", "task_b", "task_c", "votes"):
        assert first[key] == second[key]


def test_healthz_and_readyz(client: httpx.Client, manifest: dict[str, Any]) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert body["model_version"] == manifest["repository_version"]
    assert (
        body["backend"] == "onnxruntime" and body["ocr"] == "ppocr"
    )  # the repository's OCR models (MEMOTION_OCR=auto)
    assert body["models"] == list(manifest["ensemble"]["members"])


def test_request_id_is_echoed_or_made(client: httpx.Client) -> None:
    echoed = client.get("/healthz", headers={"X-Request-ID": "trace-abc-123"})
    assert echoed.headers["x-request-id"] == "trace-abc-123"
    made = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert made.headers["x-request-id"] != client.get("/healthz").headers["x-request-id"]
    # An id that could forge log lines is replaced, not echoed.
    forged = client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert forged.headers["x-request-id"] != "a b\tc"
    # Errors carry it too.
    missing = client.get("/nope", headers={"X-Request-ID": "trace-404"})
    assert missing.headers["x-request-id"] == "trace-404"


def test_openapi_documents_the_response(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/classify"]["post"]
    schema_ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref.endswith("/ClassifyResponse")
    properties = spec["components"]["schemas"]["ClassifyResponse"]["properties"]
    assert {"task_a", "task_b", "task_c", "text", "votes", "timings_ms", "model_version", "notice"} <= set(properties)
    assert "413" in operation["responses"] and "415" in operation["responses"]


# --- bad requests: each a 4xx with the JSON error shape, never a 500 ----------------------------


BAD_UPLOADS = {
    "text_file": (b"this is not an image, just some text\n" * 10, 415, "unsupported_image"),
    "empty_file": (b"", 400, "empty_file"),
    "truncated_jpeg": (truncated_jpeg(), 400, "corrupt_image"),
    "png_bomb_20000x20000": (png_bomb(), 413, "image_too_large"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads(client: httpx.Client, case: str) -> None:
    data, status, code = BAD_UPLOADS[case]
    if case == "png_bomb_20000x20000":
        assert len(data) < 200_000  # small on the wire, 400 megapixels declared
    response = client.post(
        "/v1/classify", files={"image": ("upload.bin", data, "application/octet-stream")}, data={"text": "some text"}
    )
    assert_error(response, status, code)


def test_missing_image_field(client: httpx.Client) -> None:
    error = assert_error(client.post("/v1/classify", data={"text": "no image here"}), 422, "missing_field")
    assert "image" in error["message"]


def test_image_sent_as_plain_field(client: httpx.Client) -> None:
    response = client.post("/v1/classify", data={"image": "not a file", "text": "x"})
    error = assert_error(response, 422, "invalid_request")
    assert "image" in error["message"]


def test_not_multipart(client: httpx.Client) -> None:
    # JSON is accepted too (base64 image and/or text): "abc" decodes to bytes that are no image.
    assert_error(client.post("/v1/classify", json={"image": "abc"}), 415, "unsupported_image")
    assert_error(client.post("/v1/classify", json={"picture": "abc"}), 422, "invalid_request")
    assert_error(
        client.post("/v1/classify", content=b"abc", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


def test_broken_multipart(client: httpx.Client) -> None:
    response = client.post(
        "/v1/classify", content=b"garbage" * 100, headers={"content-type": "multipart/form-data; boundary=xyz"}
    )
    assert_error(response, 400, "invalid_body")


def test_text_too_long(client: httpx.Client) -> None:
    error = assert_error(_post(client, photo_jpeg(), text="x" * 2001), 422, "text_too_long")
    assert "2000" in error["message"] and "2001" in error["message"]


def test_unknown_route_and_wrong_method(client: httpx.Client) -> None:
    assert_error(client.get("/v2/classify"), 404, "not_found")
    error = assert_error(client.get("/v1/classify"), 405, "method_not_allowed")
    assert "POST" in error["message"]
    assert_error(client.put("/healthz"), 405, "method_not_allowed")


def test_upload_over_limit_with_content_length(small_limit_url: str) -> None:
    big = photo_jpeg(size=(600, 500))
    assert len(big) > SMALL_UPLOAD_LIMIT
    with httpx.Client(base_url=small_limit_url, timeout=30.0) as http:
        error = assert_error(_post(http, big, text="x"), 413, "payload_too_large")
        assert str(SMALL_UPLOAD_LIMIT) in error["message"]


def test_chunked_upload_over_limit(small_limit_url: str) -> None:
    boundary = "memotion-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    payload = head + photo_jpeg(size=(800, 600)) + f"\r\n--{boundary}--\r\n".encode()
    assert len(payload) > SMALL_UPLOAD_LIMIT

    def chunks() -> Iterator[bytes]:  # a generator body: httpx sends it chunked, without Content-Length
        for start in range(0, len(payload), 16_384):
            yield payload[start : start + 16_384]

    with httpx.Client(base_url=small_limit_url, timeout=30.0) as http:
        response = http.post(
            "/v1/classify", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
        )
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "payload_too_large")


def test_small_limit_gateway_serves_small_uploads(small_limit_url: str, manifest: dict[str, Any]) -> None:
    with httpx.Client(base_url=small_limit_url, timeout=30.0) as http:
        response = _post(http, photo_jpeg(size=(200, 150)), text="small enough")
        assert response.status_code == 200, response.text
        assert_classify_shape(response.json(), manifest)
        # OCR is off on this gateway: without text, the models read an empty text.
        no_text = _post(http, photo_jpeg(size=(200, 150)))
        assert no_text.status_code == 200 and no_text.json()["text"] == {"value": "", "source": "ocr"}
        metrics = http.get("/metrics").text
        assert 'memotion_errors_total{code="payload_too_large"}' in metrics


# --- after all of that ------------------------------------------------------------------------


def test_still_serves_after_bad_inputs(client: httpx.Client, manifest: dict[str, Any]) -> None:
    response = _post(client, photo_jpeg(seed=11), text="still alive")
    assert response.status_code == 200, response.text
    assert_classify_shape(response.json(), manifest)


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        metric_name, _, label_part = metric.partition("{")
        if metric_name != name:
            continue
        found = ",".join(sorted(label_part.rstrip("}").split(","))) if label_part else ""
        if found == wanted:
            return float(value)
    raise AssertionError(f"{name}{{{wanted}}} not in metrics")


def test_metrics_after_requests(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _metric(text, "memotion_requests_total", route="/v1/classify", method="POST", status="200") >= 5
    assert _metric(text, "memotion_requests_total", route="/v1/classify", method="POST", status="413") >= 1
    assert _metric(text, "memotion_requests_total", route="unmatched", method="GET", status="404") >= 1
    assert _metric(text, "memotion_request_seconds_count", route="/v1/classify") >= 5
    for stage in ("decode", "ocr", "inference", "vote", "total"):
        assert _metric(text, "memotion_stage_seconds_count", stage=stage) >= 1, stage
    for code in (
        "unsupported_image",
        "empty_file",
        "corrupt_image",
        "image_too_large",
        "missing_field",
        "text_too_long",
        "not_found",
        "method_not_allowed",
    ):
        assert _metric(text, "memotion_errors_total", code=code) >= 1, code
    assert "internal_error" not in text
