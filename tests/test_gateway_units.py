"""Gateway parts on their own: image decoding, OCR reading order, the body-size middleware, the
error shape, readiness and time-outs (in process, where a real server adds nothing)."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.api.app import create_app
from service.api.body_limit import BodyLimitMiddleware
from service.core.errors import ApiError, GatewayStartupError
from service.core.settings import GatewaySettings
from service.inference.classifier import ClassificationCancelled, MemeClassifier
from service.inference.imaging import decode_image
from service.inference.ocr import NoOcr, TextBox, join_text, reading_order
from tests.gateway_fixtures import photo_jpeg, png_bomb, truncated_jpeg

MAX_PIXELS = 36_000_000


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _decode_error(data: bytes, max_pixels: int = MAX_PIXELS) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode_image(data, max_pixels)
    return caught.value


# --- decode_image -----------------------------------------------------------------------------


def test_decode_jpeg_to_rgb() -> None:
    image = decode_image(photo_jpeg((64, 48)), MAX_PIXELS)
    assert image.mode == "RGB" and image.size == (64, 48)


def test_decode_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _encode(Image.new("RGB", (40, 20), (255, 0, 0)), "JPEG", exif=exif.tobytes())
    assert decode_image(data, MAX_PIXELS).size == (20, 40)


def test_decode_takes_first_frame_of_animation() -> None:
    frames = [Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = decode_image(data, MAX_PIXELS)
    red, green, blue = image.getpixel((8, 8))  # type: ignore[misc]
    assert image.mode == "RGB" and red > 200 and blue < 50


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "1", "P", "CMYK", "I;16"])
def test_decode_converts_modes_to_rgb(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = Image.new(mode, (10, 12))
    assert decode_image(_encode(image, fmt), MAX_PIXELS).mode == "RGB"


def test_decode_palette_with_transparency() -> None:
    data = _encode(Image.new("P", (10, 10), 3), "PNG", transparency=3)
    assert decode_image(data, MAX_PIXELS).mode == "RGB"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"hello, I am text\n", 415, "unsupported_image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 415, "unsupported_image"),  # never Ghostscript
        (b"\xff\xd8\xff\xe0", 400, "corrupt_image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", 400, "corrupt_image"),
    ],
    ids=["empty", "text", "eps", "jpeg-header-only", "png-signature-only"],
)
def test_decode_rejects(data: bytes, status: int, code: str) -> None:
    error = _decode_error(data)
    assert (error.status, error.code) == (status, code)


def test_decode_rejects_truncated_jpeg() -> None:
    error = _decode_error(truncated_jpeg())
    assert (error.status, error.code) == (400, "corrupt_image")


def test_decode_rejects_truncated_png() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels), "PNG")
    error = _decode_error(data[: len(data) // 3])
    assert (error.status, error.code) == (400, "corrupt_image")


def test_decode_rejects_decompression_bomb_quickly() -> None:
    start = time.perf_counter()
    error = _decode_error(png_bomb(20000, 20000))
    assert (error.status, error.code) == (413, "image_too_large")
    assert time.perf_counter() - start < 1.0


def test_pixel_limit_is_decided_from_the_header() -> None:
    # 42 MP declared, pixel data garbage: the answer is 413 (size), not 400 (corrupt) -> no decoding.
    error = _decode_error(png_bomb(7000, 6000, corrupt_pixels=True))
    assert (error.status, error.code) == (413, "image_too_large")
    assert "7000x6000" in error.message and str(MAX_PIXELS) in error.message


def test_pixel_limit_is_inclusive() -> None:
    data = _encode(Image.new("RGB", (100, 50)), "PNG")
    assert decode_image(data, 5000).size == (100, 50)
    assert _decode_error(data, 4999).code == "image_too_large"


# --- OCR reading order ------------------------------------------------------------------------


def test_reading_order_lines_then_left_to_right() -> None:
    boxes = [
        TextBox(300, 400, 420, 440, "COMPILES"),
        TextBox(10, 12, 100, 50, "WHEN"),
        TextBox(220, 10, 330, 52, "CODE"),
        TextBox(110, 14, 210, 49, "THE"),
        TextBox(100, 405, 290, 438, "FINALLY"),
    ]
    assert [b.text for b in reading_order(boxes)] == ["WHEN", "THE", "CODE", "FINALLY", "COMPILES"]
    assert join_text(boxes) == "WHEN THE CODE FINALLY COMPILES"


def test_text_box_from_points_and_blank_text() -> None:
    box = TextBox.from_points([[5, 10], [50, 12], [48, 30], [4, 28]], "hi")
    assert (box.left, box.top, box.right, box.bottom) == (4, 10, 50, 30)
    assert join_text([box, TextBox(0, 100, 5, 110, "  ")]) == "hi"
    assert join_text([]) == ""


# --- body-size middleware ---------------------------------------------------------------------

LIMIT = 1000


def _echo_app(calls: list[str]) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        calls.append("called")
        try:
            body = await request.body()
        except ApiError:
            return JSONResponse({"swallowed": True})  # an app that hides the error still answers 413
        return JSONResponse({"received": len(body)})

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    app.add_middleware(BodyLimitMiddleware, max_bytes=LIMIT)
    return app


def test_body_under_limit_passes() -> None:
    calls: list[str] = []
    with TestClient(_echo_app(calls)) as client:
        response = client.post("/echo", content=b"x" * LIMIT)
    assert response.json() == {"received": LIMIT}


def test_content_length_over_limit_is_rejected_without_calling_the_app() -> None:
    calls: list[str] = []
    with TestClient(_echo_app(calls)) as client:
        response = client.post("/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert calls == []


def test_streamed_body_over_limit_is_cut_off() -> None:
    calls: list[str] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 300

    with TestClient(_echo_app(calls)) as client:
        response = client.post("/echo", content=chunks())
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {
        "error": {"code": "payload_too_large", "status": 413, "message": response.json()["error"]["message"]}
    }
    assert calls == ["called"]


def test_streamed_body_under_limit_passes() -> None:
    calls: list[str] = []
    with TestClient(_echo_app(calls)) as client:
        response = client.post("/echo", content=iter([b"a" * 400, b"b" * 400]))
    assert response.json() == {"received": 800}


# --- the pipeline -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(model_repository: Path) -> Iterator[MemeClassifier]:
    instance = MemeClassifier.from_settings(_settings(model_repository))
    yield instance
    instance.close()


def test_batch_equals_one_by_one(classifier: MemeClassifier) -> None:
    images = [decode_image(photo_jpeg(seed=s), MAX_PIXELS) for s in (1, 2, 3)]
    texts = ["first meme", None, "third meme"]
    batch = classifier.classify_batch(images, texts)
    assert [r.text_source for r in batch] == ["request", "ocr", "request"]
    for image, text, together in zip(images, texts, batch):
        alone = classifier.classify(image, text)
        assert alone.votes == together.votes and alone.task_b == together.task_b
        for name, prediction in alone.tasks.items():
            assert prediction.label == together.tasks[name].label
            assert prediction.scores == pytest.approx(together.tasks[name].scores, abs=1e-5)


def test_task_b_follows_voted_task_c(classifier: MemeClassifier) -> None:
    result = classifier.classify(decode_image(photo_jpeg(seed=4), MAX_PIXELS), "x")
    names = classifier.manifest.task_b_names
    assert result.task_b == {names[t.name]: result.tasks[t.name].index > 0 for t in classifier.task_c}
    assert set(result.votes) == {m.name for m in classifier.members}


def test_cancelled_classification_stops(classifier: MemeClassifier) -> None:
    image = decode_image(photo_jpeg(), MAX_PIXELS)
    with pytest.raises(ClassificationCancelled):
        classifier.classify(image, None, cancelled=lambda: True)
    assert isinstance(classifier.ocr, NoOcr)


# --- the app in process -----------------------------------------------------------------------


def _settings(repository: Path, **overrides: object) -> GatewaySettings:
    return GatewaySettings(model_repository=repository, ocr="none", **overrides)  # type: ignore[arg-type]


def test_readyz_is_503_until_models_are_loaded(model_repository: Path) -> None:
    client = TestClient(create_app(_settings(model_repository)))  # no `with`: lifespan never runs
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    classify = client.post("/v1/classify", files={"image": ("a.jpg", photo_jpeg(), "image/jpeg")})
    assert classify.status_code == 503


def test_unexpected_errors_are_500_json(model_repository: Path) -> None:
    app = create_app(_settings(model_repository))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    client = TestClient(app, raise_server_exceptions=False)
    response = client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "req-500" in response.json()["error"]["message"]
    assert response.headers["x-request-id"] == "req-500"
    metrics = client.get("/metrics").text
    assert 'memotion_errors_total{code="internal_error"} 1.0' in metrics
    assert 'memotion_requests_total{method="GET",route="/boom",status="500"} 1.0' in metrics


def test_timeout_is_504(model_repository: Path) -> None:
    app = create_app(_settings(model_repository, request_timeout_s=0.001))
    data = photo_jpeg((1600, 1200))  # decoding and resizing it takes well over 1 ms
    with TestClient(app) as client:
        response = client.post("/v1/classify", files={"image": ("big.jpg", data, "image/jpeg")}, data={"text": "t"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"


def test_unusable_repository_fails_startup(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    expected = re.escape(f"no manifest.json in model repository {tmp_path}")
    with pytest.raises(GatewayStartupError, match=expected), TestClient(app):
        pass


def test_triton_backend_without_a_triton_starts_but_is_not_ready(model_repository: Path) -> None:
    # Nothing listens on port 9 (discard): the gateway runs, answers 503, and says why.
    # (A real tritonserver: tests/test_triton_server.py.)
    app = create_app(_settings(model_repository, backend="triton", triton_url="127.0.0.1:9"))
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "127.0.0.1:9 is not reachable" in ready.json()["error"]["message"]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMOTION_MODEL_REPOSITORY", "/srv/models")
    monkeypatch.setenv("MEMOTION_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("MEMOTION_OCR", "none")
    settings = GatewaySettings()
    assert settings.model_repository == Path("/srv/models")
    assert settings.max_upload_bytes == 1234 and settings.ocr == "none"
    defaults = GatewaySettings(_env_file=None, model_repository=Path("x"))  # type: ignore[call-arg]
    assert defaults.max_image_pixels == 36_000_000 and defaults.max_text_chars == 2000
    assert defaults.request_timeout_s == 30 and defaults.backend == "onnxruntime"
