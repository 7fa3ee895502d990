"""OSCAR served by the gateway over HTTP, next to a CLIP member: its region detector runs through
the backend (one image per call, never batched), its inputs are made by the contract's
``memotion/oscar_inputs.py``, and its vote equals what training's own ``OscarFeeder`` + ONNX
Runtime give on the same meme -- with the embedded ONNX Runtime backend and through a real
tritonserver."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from memotion.manifest import load_manifest
from memotion.triton_repository import NO_BATCHING, config_path, model_batching
from service.launchers.gateway_process import GatewayProcess
from tests.gateway_fixtures import render_meme
from tests.tooling import tool_missing

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

# Two memes of different shapes (the detector's input has no batch axis: each runs alone).
MEMES = [
    (("WHEN THE CODE", "FINALLY COMPILES"), (320, 240), "when the code finally compiles"),
    (("MONDAY", "AGAIN"), (240, 320), "monday again"),
]


@pytest.fixture(scope="module")
def oscar_repository(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run of a CLIP member and OSCAR, exported (ONNX, tokenizers, Triton configs)."""
    from training.export import export_run
    from training.recipe import tiny_recipe, train_recipe

    run_dir = tmp_path_factory.mktemp("oscar-served-run")
    # every member votes: these tests are about serving OSCAR, not about which members the search keeps
    config = replace(tiny_recipe(epochs=1, max_steps=2), models=("clip_text", "oscar"), ensemble_search=False)
    train_recipe(synthetic_data, run_dir, config, progress=False, log=lambda _: None)
    return export_run(run_dir, tmp_path_factory.mktemp("oscar-served") / "repository")


def expected_votes(repository: Path, image: Image.Image, text: str) -> dict[str, str]:
    """Training's own path: OscarFeeder (detector in ONNX Runtime) and the OSCAR graph, argmax per head."""
    from training.oscar.inputs import OscarFeeder

    manifest = load_manifest(repository)
    entry = manifest.model("oscar")
    feeds = OscarFeeder(entry, repository, providers=["CPUExecutionProvider"])([image], [text])
    session = ort.InferenceSession(str(repository / entry.file), providers=["CPUExecutionProvider"])
    logits = session.run(list(entry.outputs), {name: feeds[name] for name in entry.inputs})
    return {task.name: task.labels[int(np.argmax(row[0]))] for task, row in zip(manifest.tasks, logits)}


def post_meme(url: str, meme: tuple[tuple[str, str], tuple[int, int], str]) -> tuple[dict, Image.Image]:
    (top, bottom), size, text = meme
    png = render_meme(top, bottom, size)
    response = httpx.post(
        f"{url}/v1/classify", files={"image": ("m.png", png, "image/png")}, data={"text": text}, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json(), Image.open(io.BytesIO(png)).convert("RGB")


def check_votes(url: str, repository: Path) -> None:
    """The memes posted with their texts, concurrently (the members batch across requests, the
    detector runs per image): OSCAR votes on each, as training's path on that meme does."""
    memes = MEMES + [(lines, size, f"{text} again and again") for lines, size, text in MEMES]
    with ThreadPoolExecutor(len(memes)) as pool:
        answers = list(pool.map(lambda meme: post_meme(url, meme), memes))
    for body, image in answers:
        assert set(body["votes"]) == {"clip_text", "oscar"}, body["votes"]
        assert body["text"]["source"] == "request"
        assert body["votes"]["oscar"] == expected_votes(repository, image, body["text"]["value"])


def test_export_writes_an_unbatched_triton_config_for_the_detector(oscar_repository: Path) -> None:
    manifest = load_manifest(oscar_repository)
    (detector,) = manifest.stage_models()
    assert (detector.name, detector.version, detector.inputs) == ("oscar_detector", 1, ("image",))
    for variant in ("cpu", "gpu"):
        config = config_path(oscar_repository / detector.name, variant).read_text()
        assert "max_batch_size: 0" in config and "dynamic_batching" not in config
        assert "dims: [ 3, -1, -1 ]" in config, config
    assert model_batching(oscar_repository, detector) == NO_BATCHING
    assert "dynamic_batching" in config_path(oscar_repository / "oscar", "cpu").read_text()
    assert (oscar_repository / "oscar_detector" / "1" / "model.py").is_file()


def test_the_gateway_makes_the_inputs_training_makes(oscar_repository: Path) -> None:
    """In process: the gateway's OSCAR inputs (detector through the backend, contract tokenizer)
    equal OscarFeeder's bit for bit, and so do the OSCAR logits."""
    from service.core.settings import GatewaySettings
    from service.inference.classifier import MemeClassifier, StageTimer
    from training.oscar.inputs import OscarFeeder

    classifier = MemeClassifier.from_settings(
        GatewaySettings(model_repository=oscar_repository, ocr="none", batching=False)
    )
    try:
        entry = classifier.manifest.model("oscar")
        images = [Image.open(io.BytesIO(render_meme(*lines, size))).convert("RGB") for lines, size, _ in MEMES]
        texts = [text for _, _, text in MEMES]
        staged = classifier._staged_inputs(images, texts, [entry], StageTimer(), lambda: None)["oscar"]
        expected = OscarFeeder(entry, oscar_repository, providers=["CPUExecutionProvider"])(images, texts)
        for name in entry.inputs:
            np.testing.assert_array_equal(staged[name], expected[name], err_msg=name)
        session = ort.InferenceSession(str(oscar_repository / entry.file), providers=["CPUExecutionProvider"])
        logits = session.run(list(entry.outputs), {name: expected[name] for name in entry.inputs})
        served = classifier.backend.infer(entry, staged)
        for name, value in zip(entry.outputs, logits):
            np.testing.assert_allclose(served[name], value, rtol=0, atol=1e-6)
    finally:
        classifier.close()


def test_gateway_serves_oscar_with_onnxruntime(oscar_repository: Path) -> None:
    with GatewayProcess(oscar_repository, env={"MEMOTION_OCR": "none", "MEMOTION_BACKEND": "onnxruntime"}) as url:
        check_votes(url, oscar_repository)


def test_gateway_serves_oscar_through_triton(oscar_repository: Path) -> None:
    from service.launchers.triton_server import TritonServerError, TritonServerProcess, find_triton_install

    try:
        install = find_triton_install()
    except TritonServerError as err:
        tool_missing(f"no tritonserver to serve OSCAR with: {err}")
    manifest = load_manifest(oscar_repository)
    models = [*manifest.ensemble.members, *(m.name for m in manifest.stage_models())]  # no OCR here
    with TritonServerProcess(oscar_repository, models=models, install=install) as server:
        env = {
            "MEMOTION_BACKEND": "triton",
            "MEMOTION_TRITON_URL": server.grpc_url,
            "MEMOTION_TRITON_METRICS_URL": server.metrics_url,
            "MEMOTION_OCR": "none",
        }
        with GatewayProcess(oscar_repository, env=env) as url:
            check_votes(url, oscar_repository)
