"""Rough edges a newcomer meets on the command line (issue 14): `memotion classify a b` prints JSON
Lines (one answer or error per file), `memotion serve --help` lists every endpoint the app serves,
and `memotion score` refuses an output it cannot use in one line, at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from service.cli import ENDPOINTS, main
from tests.gateway_fixtures import photo_jpeg


def test_serve_help_lists_every_endpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from service.api.app import create_app
    from service.core.settings import GatewaySettings

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = capsys.readouterr().out
    app = create_app(GatewaySettings(model_repository=tmp_path, ocr="none"))  # routes only, no models
    served = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    served |= {("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json"), ("GET", "/ui")}
    listed = {(method, path) for method, path, _ in ENDPOINTS}
    assert served <= listed, served - listed
    for method, path in served:
        assert f"{method:<5} {path}" in help_text


@pytest.mark.slow
def test_classify_prints_json_lines(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMOTION_OCR", "none")
    first, second, broken = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"
    first.write_bytes(photo_jpeg(seed=1))
    second.write_bytes(photo_jpeg(seed=2))
    broken.write_bytes(b"not an image")
    status = main(["classify", str(first), str(broken), str(second), "--repository", str(model_repository)])
    lines = capsys.readouterr().out.splitlines()
    assert status == 1 and len(lines) == 3  # the broken file does not stop the others
    answers = [json.loads(line) for line in lines]
    assert [a["file"] for a in answers] == [str(first), str(broken), str(second)]
    assert "task_a" in answers[0] and "task_a" in answers[2]
    assert answers[1]["error"]["code"] == "unsupported_image"


def test_score_refuses_a_never_ending_output_at_once(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    memes = tmp_path / "memes"
    memes.mkdir()
    (memes / "a.jpg").write_bytes(photo_jpeg())
    out = tmp_path / "results.jsonl"
    out.symlink_to("/dev/full")
    start = time.perf_counter()
    status = main(["score", str(memes), "--out", str(out), "--repository", str(model_repository), "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1 and "not a regular file" in error, error
    assert time.perf_counter() - start < 60  # a bound on a hang (it used to read /dev/full for ever)
