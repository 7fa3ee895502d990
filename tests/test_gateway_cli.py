"""``classify_file`` (in process and through a gateway) and ``serve`` / start-up failures, with real
processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.classify_file import ClassifyError, classify_file
from service.core.settings import GatewaySettings
from service.launchers.child_process import free_port
from service.launchers.gateway_process import GatewayProcess, GatewayStartError
from tests.gateway_fixtures import photo_jpeg, start_gateway

pytestmark = pytest.mark.slow


@pytest.fixture()
def meme_file(tmp_path: Path) -> Path:
    path = tmp_path / "meme.jpg"
    path.write_bytes(photo_jpeg(seed=5))
    return path


def _settings(repository: Path) -> GatewaySettings:
    return GatewaySettings(model_repository=repository, ocr="none")


def test_classify_file_in_process_matches_the_gateway(
    model_repository: Path, gateway_url: str, meme_file: Path
) -> None:
    local = classify_file(meme_file, text="a meme about tests", settings=_settings(model_repository))
    remote = classify_file(meme_file, text="a meme about tests", url=gateway_url)
    assert local["text"] == remote["text"] == {"value": "a meme about tests", "source": "request"}
    for key in ("model_version", "task_a", "task_b", "votes", "notice"):
        assert local[key] == remote[key], key
    for head, prediction in local["task_c"].items():
        assert prediction["label"] == remote["task_c"][head]["label"]
        for label, score in prediction["scores"].items():
            assert score == pytest.approx(remote["task_c"][head]["scores"][label], abs=1e-6)


def test_classify_file_accepts_the_full_endpoint_url(gateway_url: str, meme_file: Path) -> None:
    result = classify_file(meme_file, text="x", url=gateway_url + "/v1/classify/")
    assert result["text"]["source"] == "request"


def test_classify_file_reports_gateway_errors(gateway_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    with pytest.raises(ClassifyError) as caught:
        classify_file(bad, url=gateway_url)
    assert (caught.value.status, caught.value.code) == (415, "unsupported_image")


def test_classify_file_reports_bad_files_in_process(model_repository: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ClassifyError) as caught:
        classify_file(empty, text="x", settings=_settings(model_repository))
    assert (caught.value.status, caught.value.code) == (400, "empty_file")
    with pytest.raises(ClassifyError) as missing:
        classify_file(tmp_path / "nope.jpg", settings=_settings(model_repository))
    assert missing.value.code == "unreadable_file"


def test_classify_file_unreachable_gateway(meme_file: Path) -> None:
    with pytest.raises(ClassifyError) as caught:
        classify_file(meme_file, text="x", url=f"http://127.0.0.1:{free_port()}")
    assert caught.value.code == "gateway_unreachable"


# --- start-up -----------------------------------------------------------------------------------


def _serve(repository: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memotion_cli", "serve", "--repository", str(repository)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MEMOTION_OCR": "none"},
    )


def test_serve_exits_clearly_without_a_manifest(tmp_path: Path) -> None:
    done = _serve(tmp_path)
    assert done.returncode == 2
    assert f"no manifest.json in model repository {tmp_path}" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_names_a_missing_model_file(tmp_path: Path, model_repository: Path) -> None:
    manifest = json.loads((model_repository / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    done = _serve(tmp_path)
    assert done.returncode == 2
    assert "which is missing from" in done.stderr and str(tmp_path) in done.stderr


def test_serve_runs_the_gateway(model_repository: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "serve.log"
    gateway = GatewayProcess(model_repository, env={"MEMOTION_OCR": "none"}, log_path=log_path)
    with gateway as base_url:
        response = httpx.post(
            f"{base_url}/v1/classify",
            timeout=30,
            files={"image": ("a.jpg", photo_jpeg(), "image/jpeg")},
            data={"text": "hello"},
            headers={"X-Request-ID": "serve-test-1"},
        )
        assert response.status_code == 200, response.text
    log_text = log_path.read_text()
    # One access-log line per request, with the request id and no image bytes.
    lines = [line for line in log_text.splitlines() if "serve-test-1" in line]
    assert len(lines) == 1 and "POST /v1/classify 200" in lines[0], log_text[-3000:]


def test_start_gateway_reports_a_server_that_dies(tmp_path: Path) -> None:
    with pytest.raises(GatewayStartError, match="no manifest.json"), start_gateway(tmp_path, MEMOTION_OCR="none"):
        pass
