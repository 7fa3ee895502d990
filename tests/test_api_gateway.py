"""The production API over real HTTP: API keys, rate limits, CORS, JSON + base64 bodies, text-only
requests, per-task thresholds, ?explain=true with the real offline translator, the batch endpoint
with per-item failures, OpenAPI, and JSON logs without image bytes. One `memotion serve` process."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.access.keys import hash_key
from service.launchers.gateway_process import GatewayProcess
from tests.gateway_fixtures import photo_jpeg, png_bomb, truncated_jpeg

pytestmark = pytest.mark.slow

ALICE = "mk_alice-test-key-0123456789abcdefghijklmnop"
BOB = "mk_bob-test-key-0123456789abcdefghijklmnopqrs"  # burst 3, 1 meme per minute
DASHBOARD = "https://dashboard.example"
MAX_ITEMS = 4


@pytest.fixture(scope="module")
def gateway(model_repository: Path, translation_model_dir: Path, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    log_path = tmp_path_factory.mktemp("api-gateway") / "gateway.log"
    keys = [
        {"name": "alice", "sha256": hash_key(ALICE), "rate_per_minute": 6000, "burst": 100},
        {"name": "bob", "sha256": hash_key(BOB), "rate_per_minute": 1, "burst": 3},
    ]
    env = {
        "MEMOTION_OCR": "none",
        "MEMOTION_API_KEYS": json.dumps(keys),
        "MEMOTION_CORS_ORIGINS": json.dumps([DASHBOARD]),
        "MEMOTION_TRANSLATOR": "ctranslate2",
        "MEMOTION_TRANSLATOR_MODEL_DIR": str(translation_model_dir),
        "MEMOTION_MAX_BATCH_ITEMS": str(MAX_ITEMS),
        "MEMOTION_LOG_FORMAT": "json",
    }
    with GatewayProcess(model_repository, env=env, log_path=log_path) as url:
        yield url, log_path


@pytest.fixture(scope="module")
def client(gateway: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway[0], timeout=60.0, headers={"Authorization": f"Bearer {ALICE}"}) as http:
        yield http


@pytest.fixture(scope="module")
def manifest(model_repository: Path) -> dict[str, Any]:
    return json.loads((model_repository / "manifest.json").read_text())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["status"] == status, error
    return error


# --- access ------------------------------------------------------------------------------------


def test_api_keys(gateway: tuple[str, Path]) -> None:
    url = gateway[0]
    body = {"text": "hello there"}
    missing = httpx.post(f"{url}/v1/classify", json=body)
    error_of(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    error_of(
        httpx.post(f"{url}/v1/classify", json=body, headers={"Authorization": "Bearer mk_wrong"}), 401, "unauthorized"
    )
    error_of(
        httpx.post(f"{url}/v1/classify", json=body, headers={"Authorization": f"Basic {ALICE}"}), 401, "unauthorized"
    )
    error_of(httpx.post(f"{url}/v1/classify/batch", json={"items": [body]}), 401, "unauthorized")
    assert httpx.post(f"{url}/v1/classify", json=body, headers={"Authorization": f"Bearer {ALICE}"}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/ui/"):
        assert httpx.get(f"{url}{open_path}").status_code == 200, open_path


def test_rate_limit_per_key(gateway: tuple[str, Path]) -> None:
    url = gateway[0]
    with httpx.Client(base_url=url, timeout=60.0, headers={"Authorization": f"Bearer {BOB}"}) as bob:
        # A batch larger than the key's burst can never pass: 413, and it costs nothing.
        too_big = bob.post("/v1/classify/batch", json={"items": [{"text": f"t{i}"} for i in range(4)]})
        assert "at most 3" in error_of(too_big, 413, "batch_over_rate_limit")["message"]
        assert [bob.post("/v1/classify", json={"text": "one"}).status_code for _ in range(3)] == [200, 200, 200]
        limited = bob.post("/v1/classify", json={"text": "one too many"})
        error_of(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
    # Other keys have their own buckets.
    assert (
        httpx.post(f"{url}/v1/classify", json={"text": "x"}, headers={"Authorization": f"Bearer {ALICE}"}).status_code
        == 200
    )


def test_cors(gateway: tuple[str, Path]) -> None:
    url = gateway[0]
    preflight = httpx.options(
        f"{url}/v1/classify",
        headers={
            "Origin": DASHBOARD,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == DASHBOARD
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    refused = httpx.options(
        f"{url}/v1/classify", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in refused.headers
    actual = httpx.post(
        f"{url}/v1/classify", json={"text": "hi"}, headers={"Origin": DASHBOARD, "Authorization": f"Bearer {ALICE}"}
    )
    assert actual.headers["access-control-allow-origin"] == DASHBOARD
    assert "x-request-id" in actual.headers["access-control-expose-headers"].lower()


# --- JSON bodies, text-only, thresholds, explain -----------------------------------------------


def test_json_with_base64_image_matches_multipart(client: httpx.Client, manifest: dict[str, Any]) -> None:
    image = photo_jpeg(seed=5)
    multipart = client.post("/v1/classify", files={"image": ("m.jpg", image, "image/jpeg")}, data={"text": "same text"})
    as_json = client.post("/v1/classify", json={"image": b64(image), "text": "same text"})
    data_url = client.post("/v1/classify", json={"image": "data:image/jpeg;base64," + b64(image), "text": "same text"})
    for response in (multipart, as_json, data_url):
        assert response.status_code == 200, response.text
    for key in ("task_a", "task_b", "task_c", "votes", "task_b_scores"):
        assert multipart.json()[key] == as_json.json()[key] == data_url.json()[key]
    body = as_json.json()
    assert body["api_version"] == "1" and body["model_version"] == manifest["repository_version"]
    assert as_json.headers["x-model-version"] == manifest["repository_version"]
    assert body["request_id"] == as_json.headers["x-request-id"]
    assert list(body["votes"]) == list(manifest["ensemble"]["members"])
    assert "explain" not in body


def test_text_only_request_uses_the_text_only_members(client: httpx.Client, manifest: dict[str, Any]) -> None:
    text_only = [
        m["name"]
        for m in manifest["models"]
        if m["name"] in manifest["ensemble"]["members"] and "pixel_values" not in m["inputs"]
    ]
    # (The gateway back-translates with the tiny test model, which knows this sentence.)
    response = client.post("/v1/classify", json={"text": "my friend is crazy"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body["votes"]) == text_only
    assert "decode" not in body["timings_ms"] and "preprocess" not in body["timings_ms"]
    assert body["text"] == {"value": "my friend is crazy", "source": "request"}


def test_thresholds(client: httpx.Client) -> None:
    low = client.post("/v1/classify", json={"text": "you idiot", "thresholds": {"offensive": 0.0, "humour": 1.0}})
    assert low.status_code == 200, low.text
    body = low.json()
    assert body["thresholds"] == {"offensive": 0.0, "humorous": 1.0}
    assert body["task_b"]["offensive"] is True and body["task_b"]["humorous"] is False
    scores = body["task_b_scores"]
    for head, prediction in body["task_c"].items():
        emotion = {"humour": "humorous", "sarcasm": "sarcastic"}.get(head, head)
        assert scores[emotion] == pytest.approx(1.0 - list(prediction["scores"].values())[0])
    form = client.post(
        "/v1/classify",
        files={"image": ("m.jpg", photo_jpeg(), "image/jpeg")},
        data={"text": "x", "thresholds": '{"motivational": 0}'},
    )
    assert form.status_code == 200 and form.json()["task_b"]["motivational"] is True
    error_of(client.post("/v1/classify", json={"text": "x", "thresholds": {"anger": 0.5}}), 422, "invalid_thresholds")
    error_of(
        client.post("/v1/classify", json={"text": "x", "thresholds": {"offensive": 1.5}}), 422, "invalid_thresholds"
    )
    error_of(
        client.post(
            "/v1/classify", files={"image": ("m.jpg", photo_jpeg(), "image/jpeg")}, data={"thresholds": "{not json"}
        ),
        422,
        "invalid_thresholds",
    )


def test_explain_shows_the_text_path(client: httpx.Client) -> None:
    response = client.post(
        "/v1/classify", params={"explain": "true"}, json={"text": "mera dost\npagal hai imgflip.com"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    steps = body["explain"]["text_steps"]
    assert [s["step"] for s in steps] == ["input", "clean", "language", "transliterate", "translate.hi-en"]
    assert steps[1]["text"] == "mera dost pagal hai" and steps[1]["detail"]["removed"] == ["imgflip.com"]
    assert steps[2]["detail"]["language"] == "hi-Latn"
    assert steps[3]["text"] == "मेरा दोस्त पागल है"
    assert steps[4]["text"] == "my friend is crazy"
    # What the models read is the back-translation.
    assert body["text"]["value"] == "my friend is crazy" and body["language"] == "hi-Latn"
    assert body["explain"]["text_config"]["translator"] == "ctranslate2"
    assert body["explain"]["members"] == list(body["votes"])
    assert "text" in body["timings_ms"]


BAD_JSON = {
    "no_fields": ({}, 422, "missing_field"),
    "blank_text_only": ({"text": "   "}, 422, "missing_field"),
    "unknown_field": ({"text": "x", "colour": "red"}, 422, "invalid_request"),
    "image_not_base64": ({"image": "%%%not base64%%%"}, 422, "invalid_base64"),
    "image_wrong_type": ({"image": 12345}, 422, "invalid_request"),
    "base64_of_text": ({"image": b64(b"just some text, not an image")}, 415, "unsupported_image"),
    "base64_truncated_jpeg": ({"image": b64(truncated_jpeg()), "text": "x"}, 400, "corrupt_image"),
    "base64_png_bomb": ({"image": b64(png_bomb()), "text": "x"}, 413, "image_too_large"),
    "base64_empty": ({"image": "", "text": "x"}, 400, "empty_file"),
    "text_too_long": ({"text": "x" * 2001}, 422, "text_too_long"),
}


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_bad_json_bodies(client: httpx.Client, case: str) -> None:
    body, status, code = BAD_JSON[case]
    error_of(client.post("/v1/classify", json=body), status, code)


def test_bad_content(client: httpx.Client) -> None:
    error_of(
        client.post("/v1/classify", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )
    error_of(
        client.post("/v1/classify", content=b"hello", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    error_of(client.post("/v1/classify", params={"explain": "maybe"}, json={"text": "x"}), 422, "invalid_request")


# --- batch -------------------------------------------------------------------------------------


def test_batch_reports_each_item(client: httpx.Client) -> None:
    image = photo_jpeg(seed=9)
    items = [
        {"id": "good", "image": b64(image), "text": "hello world"},
        {"id": "broken", "image": b64(truncated_jpeg()), "text": "x"},
        {"text": "only a caption"},
        {"id": "nothing"},
    ]
    response = client.post("/v1/classify/batch", json={"items": items, "thresholds": {"offensive": 0.0}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["count"], body["succeeded"], body["failed"]) == (4, 2, 2)
    assert [(i["index"], i["id"], i["status"]) for i in body["items"]] == [
        (0, "good", 200),
        (1, "broken", 400),
        (2, "2", 200),
        (3, "nothing", 422),
    ]
    assert body["items"][1]["error"]["code"] == "corrupt_image" and "result" not in body["items"][1]
    assert body["items"][3]["error"]["code"] == "missing_field"
    assert all(i["result"]["task_b"]["offensive"] for i in body["items"] if i["status"] == 200)
    # The batch answer for an item is the single endpoint's answer.
    single = client.post(
        "/v1/classify", json={"image": b64(image), "text": "hello world", "thresholds": {"offensive": 0.0}}
    ).json()
    batched = body["items"][0]["result"]
    for key in ("task_a", "task_b", "task_c", "votes", "task_b_scores", "text", "language"):
        assert batched[key] == pytest.approx(single[key]) if key == "task_b_scores" else batched[key] == single[key]


def test_batch_limits(client: httpx.Client) -> None:
    too_many = client.post("/v1/classify/batch", json={"items": [{"text": "x"}] * (MAX_ITEMS + 1)})
    assert str(MAX_ITEMS) in error_of(too_many, 413, "too_many_items")["message"]
    error_of(client.post("/v1/classify/batch", json={"items": []}), 422, "invalid_request")
    error_of(client.post("/v1/classify/batch", json={"memes": []}), 422, "invalid_request")
    error_of(
        client.post("/v1/classify/batch", content=b"[1,2", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )


# --- docs and logs -----------------------------------------------------------------------------


def test_openapi_documents_both_body_kinds_and_the_batch(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    classify = spec["paths"]["/v1/classify"]["post"]
    content = classify["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(content)
    assert {"image_and_text", "text_only", "thresholds"} <= set(content["application/json"]["examples"])
    assert {"401", "413", "415", "422", "429", "503", "504"} <= set(classify["responses"])
    assert any(p["name"] == "explain" for p in classify["parameters"])
    batch = spec["paths"]["/v1/classify/batch"]["post"]
    assert batch["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/BatchResponse")
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    properties = spec["components"]["schemas"]["ClassifyResponse"]["properties"]
    assert {"api_version", "model_version", "request_id", "task_b_scores", "thresholds", "explain"} <= set(properties)


def test_logs_are_json_without_image_bytes_or_keys(client: httpx.Client, gateway: tuple[str, Path]) -> None:
    image = photo_jpeg(seed=21)
    encoded = b64(image)
    response = client.post(
        "/v1/classify", json={"image": encoded, "text": "log me"}, headers={"X-Request-ID": "log-check-1"}
    )
    assert response.status_code == 200
    wrong_key = httpx.post(
        f"{gateway[0]}/v1/classify",
        json={"text": "x"},
        headers={"Authorization": "Bearer mk_guess", "X-Request-ID": "log-check-2"},
    )
    assert wrong_key.status_code == 401
    deadline = time.monotonic() + 10  # an access line is written just after its answer is sent
    while "log-check-2" not in (log_text := gateway[1].read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    records = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    assert len(records) >= 10
    access = [r for r in records if r.get("request_id") == "log-check-1"]
    assert len(access) == 1
    assert access[0]["status"] == 200 and access[0]["client"] == "alice" and access[0]["route"] == "/v1/classify"
    assert access[0]["bytes_in"] > len(encoded)
    assert {"ts", "level", "logger", "message", "duration_ms", "method", "path"} <= set(access[0])
    assert encoded[1000:1100] not in log_text and ALICE not in log_text and BOB not in log_text
    refused = [r for r in records if r.get("request_id") == "log-check-2"]
    assert refused and refused[0]["status"] == 401 and refused[0]["error"] == "unauthorized"
    assert refused[0]["client"] == "-"
    assert re.search(r"API keys required: 2 configured", log_text)
