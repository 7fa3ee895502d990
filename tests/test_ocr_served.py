"""OCR as served models (PP-OCR detector + recogniser in the model repository, issue 12): export,
parity of the gateway's pipeline with rapidocr's own, reading memes, concurrency without a lock;
over HTTP through ONNX Runtime (in a gateway process that cannot import torch or easyocr) and
through a real tritonserver."""

from __future__ import annotations

import io
import json
import shutil
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from memotion.manifest import load_manifest
from memotion.triton_repository import config_path
from service.inference.backends.ort_backend import OnnxRuntimeBackend
from service.inference.ocr.base import join_text
from service.inference.ocr.ppocr import (
    PpOcrEngine,
    detector_side,
    padded_width,
    recognizer_batch,
    recognizer_warmup_shapes,
    width_groups,
)
from service.launchers.gateway_process import GatewayProcess
from tests.gateway_fixtures import render_meme, start_gateway
from training.metrics import character_error_rate, edit_distance, folded_text
from training.ocr_export import add_ocr_to_repository, export_ocr

REAL_MEMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cm-off-meme-sample"


def meme(top: str, bottom: str, size: tuple[int, int] = (640, 480)) -> Image.Image:
    return Image.open(io.BytesIO(render_meme(top, bottom, size))).convert("RGB")


@pytest.fixture(scope="module")
def ocr_repository(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ocr-repository")
    entry = export_ocr(root)
    (root / "entry.json").write_text(entry.model_dump_json())
    return root


@pytest.fixture(scope="module")
def engine(ocr_repository: Path) -> PpOcrEngine:
    from memotion.manifest import OcrEntry

    entry = OcrEntry.model_validate_json((ocr_repository / "entry.json").read_text())
    return PpOcrEngine(entry, ocr_repository, OnnxRuntimeBackend(ocr_repository, entry.models()))


def test_export_writes_graphs_alphabet_and_triton_configs(ocr_repository: Path, engine: PpOcrEngine) -> None:
    import hashlib

    entry = engine.entry
    for model in entry.models():
        graph = ocr_repository / model.file
        assert hashlib.sha256(graph.read_bytes()).hexdigest() == model.sha256
        assert model.source.startswith("rapidocr ")
        config = config_path(ocr_repository / model.name, "cpu").read_text()
        assert f'name: "{model.name}"' in config and "dynamic_batching" in config
        assert config_path(ocr_repository / model.name, "gpu").is_file()
    assert "dims: [ 3, -1, -1 ]" in config_path(ocr_repository / "ocr_detector", "cpu").read_text()
    characters = (ocr_repository / entry.characters_file).read_text(encoding="utf-8").split("\n")
    assert {"a", "Z", "7", "!"} <= set(characters)


def test_reads_a_rendered_meme_in_reading_order(engine: PpOcrEngine) -> None:
    text = engine.read(meme("WHEN THE CODE", "FINALLY COMPILES"))
    assert folded_text(text) == "whenthecodefinallycompiles", text
    assert engine.read(Image.new("RGB", (320, 240), (90, 120, 200))) == ""


@pytest.fixture(scope="module")
def int8_engine(tmp_path_factory) -> PpOcrEngine:
    root = tmp_path_factory.mktemp("ocr-int8")
    entry = export_ocr(root, int8_calibration=parity_images())
    return PpOcrEngine(entry, root, OnnxRuntimeBackend(root, entry.models()))


def test_int8_export_serves_a_calibrated_detector_that_still_reads(int8_engine: PpOcrEngine) -> None:
    import hashlib

    import onnx

    entry, root = int8_engine.entry, int8_engine.repository_root
    detector = onnx.load(str(root / entry.detector.file))
    assert sum(node.op_type == "QuantizeLinear" for node in detector.graph.node) > 10
    assert "int8 static QDQ" in entry.detector.source and "int8" not in entry.recognizer.source
    assert not any(node.op_type == "QuantizeLinear" for node in onnx.load(str(root / entry.recognizer.file)).graph.node)
    assert hashlib.sha256((root / entry.detector.file).read_bytes()).hexdigest() == entry.detector.sha256
    text = int8_engine.read(meme("WHEN THE CODE", "FINALLY COMPILES"))
    assert folded_text(text) == "whenthecodefinallycompiles", text
    assert int8_engine.read(Image.new("RGB", (320, 240), (90, 120, 200))) == ""


def parity_images() -> list[Image.Image]:
    images = [meme("WHEN THE CODE", "FINALLY COMPILES"), meme("bhai ekdum mast", "hai yaar", (400, 400))]
    if (REAL_MEMES / "labels.csv").is_file():  # real memes read in place, when the shared data is there
        images += [Image.open(path).convert("RGB") for path in sorted((REAL_MEMES / "images").glob("*.jpg"))[:6]]
    return images


def test_same_boxes_and_text_as_rapidocr_itself(engine: PpOcrEngine) -> None:
    """Parity: the gateway's pipeline (graphs run by the backend, one recogniser batch per meme) vs
    rapidocr's own (same graphs in its own sessions, batches of 6): identical boxes, and text within
    a character error rate of 0.02 or one character per line (the only difference is the
    recogniser's padding: ours pads each line to its own width step, rapidocr to its batch's widest)."""
    from rapidocr import RapidOCR

    reference = RapidOCR(
        params={
            "Global.use_cls": False,
            "Global.use_preprocess_img": False,
            "Global.use_vertical_padding": False,
            "Global.log_level": "error",
            "Det.limit_side_len": engine.det_limit_side_len,
            "Det.limit_type": engine.det_limit_type,
        }
    )
    for image in parity_images():
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        ours = engine.read_boxes(bgr)
        theirs = reference(bgr)
        kept = [(box, text) for box, text, score in zip(theirs.boxes, theirs.txts, theirs.scores) if score >= 0.5]
        assert len(ours) == len(kept)
        for box, (their_box, their_text) in zip(
            sorted(ours, key=lambda b: (b.top, b.left)),
            sorted(kept, key=lambda k: (k[0][:, 1].min(), k[0][:, 0].min())),
        ):
            assert np.allclose(
                [box.left, box.top, box.right, box.bottom],
                [their_box[:, 0].min(), their_box[:, 1].min(), their_box[:, 0].max(), their_box[:, 1].max()],
                atol=1,
            )
            differ = edit_distance(folded_text(box.text), folded_text(their_text))
            assert differ <= max(1, 0.02 * len(folded_text(their_text))), (box.text, their_text)


def test_concurrent_reads_agree_without_a_lock(engine: PpOcrEngine) -> None:
    images = [meme("ONE DOES NOT SIMPLY", "READ MEMES"), meme("MONDAY", "AGAIN", (480, 360))]
    expected = [engine.read(image) for image in images]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(engine.read, images * 6))
    assert results == expected * 6
    assert getattr(engine, "thread_safe", False)


class RecordingBackend:
    """The real ONNX Runtime backend, noting the input shape of every call (model name, shape)."""

    def __init__(self, inner: OnnxRuntimeBackend) -> None:
        self.inner, self.name, self.calls = inner, inner.name, []

    def infer(self, model, inputs):
        self.calls += [(model.name, array.shape) for array in inputs.values()]
        return self.inner.infer(model, inputs)


def test_warm_up_runs_the_recogniser_once_at_each_common_shape(engine: PpOcrEngine) -> None:
    """1 to 4 crops at the 7 narrowest padded widths (320 to 704 px): the shapes 64 real memes gave most."""
    recording = RecordingBackend(engine.backend)  # type: ignore[arg-type]
    warmed = PpOcrEngine(engine.entry, engine.repository_root, recording).warm_up()
    shapes = [shape for name, shape in recording.calls if name == "ocr_recognizer"]
    assert warmed == len(shapes) == len(set(shapes)) == 28 and shapes == recognizer_warmup_shapes(engine.entry)
    assert {s[3] for s in shapes} == set(range(320, 705, 64)) and {s[0] for s in shapes} == {1, 2, 3, 4}
    lines = [np.zeros((30, width, 3), np.uint8) for width in (90, 200)]  # two short lines of a meme
    entry = engine.entry
    assert recognizer_batch(lines, entry.rec_height, entry.rec_min_width, entry.rec_width_step).shape in shapes


def test_ocr_warm_up_is_on_for_openvino_unless_set() -> None:
    from service.core.settings import GatewaySettings
    from service.inference.classifier import ocr_warmup_wanted

    assert ocr_warmup_wanted(GatewaySettings(engine="openvino"))
    assert not ocr_warmup_wanted(GatewaySettings())  # ONNX Runtime prepares no kernels per shape
    assert not ocr_warmup_wanted(GatewaySettings(engine="openvino", backend="triton"))
    assert not ocr_warmup_wanted(GatewaySettings(engine="openvino", ocr_warmup="off"))
    assert ocr_warmup_wanted(GatewaySettings(ocr_warmup="on"))


def test_width_groups_pad_each_line_to_its_own_width() -> None:
    assert padded_width(10, 64, 64) == 64 and padded_width(65, 64, 64) == 128 and padded_width(10, 320, 64) == 320
    groups = width_groups([700, 40, 130, 60, 120], min_width=64, width_step=64, max_batch=32)
    assert groups == [[1, 3], [4], [2], [0]]  # padded to 64, 128, 192, 704: narrowest first
    assert sorted(i for g in width_groups([50] * 5, 64, 64, max_batch=2) for i in g) == [0, 1, 2, 3, 4]
    assert [len(g) for g in width_groups([50] * 5, 64, 64, max_batch=2)] == [2, 2, 1]


def test_detector_cap_bounds_its_input_and_keeps_full_size_boxes(engine: PpOcrEngine) -> None:
    """``det_max_side``: a big meme is detected on a copy of at most that side; the boxes (and the
    crops the recogniser reads) are the full image's; each recogniser call pads to its own width."""
    recording = RecordingBackend(engine.backend)  # type: ignore[arg-type]
    capped = PpOcrEngine(engine.entry, engine.repository_root, recording, det_max_side=320)
    big = meme("WHEN THE CODE", "FINALLY COMPILES", (1280, 960))
    bgr = np.ascontiguousarray(np.asarray(big)[:, :, ::-1])
    boxes = capped.read_boxes(bgr)
    detector_shapes = [shape for name, shape in recording.calls if name == "ocr_detector"]
    assert detector_shapes == [(1, 3, 256, 320)]
    assert folded_text(join_text(boxes)) == "whenthecodefinallycompiles"
    assert max(b.right for b in boxes) > 640  # full-size coordinates, not the detector's
    recogniser_widths = [shape[3] for name, shape in recording.calls if name == "ocr_recognizer"]
    assert recogniser_widths == sorted(recogniser_widths) and all(w % 64 == 0 for w in recogniser_widths)


def test_gateway_settings_reach_the_ocr_engine(engine: PpOcrEngine, monkeypatch) -> None:
    from types import SimpleNamespace

    from service.core.settings import GatewaySettings
    from service.inference.ocr.factory import create_ocr

    manifest = SimpleNamespace(ocr=engine.entry)  # all create_ocr reads of a manifest
    monkeypatch.setenv("MEMOTION_OCR_DETECTOR_MAX_SIDE", "480")
    built = create_ocr(GatewaySettings(ocr="onnx"), manifest, engine.backend, engine.repository_root)  # type: ignore[arg-type]
    assert built.det_max_side == 480  # type: ignore[attr-defined]
    monkeypatch.setenv("MEMOTION_OCR_DETECTOR_MAX_SIDE", "0")  # off: the manifest's rule alone
    built = create_ocr(GatewaySettings(ocr="onnx"), manifest, engine.backend, engine.repository_root)  # type: ignore[arg-type]
    assert built.det_max_side is None  # type: ignore[attr-defined]


def test_detector_side_follows_the_manifest_rule() -> None:
    assert detector_side((960, 1280), 960, "max") == 960 and detector_side((200, 300), 960, "max") == 300
    assert detector_side((200, 300), 736, "min") == pytest.approx(1104) and detector_side((800, 900), 736, "min") == 900


# --- the gateway over HTTP -------------------------------------------------------------------

# Installed in the gateway process (PYTHONPATH): torch and easyocr cannot be imported there, and
# the names of every module it has imported are written out twice a second.
SITECUSTOMIZE = textwrap.dedent(
    """
    import json, os, sys, threading, time

    BLOCKED = ("torch", "torchvision", "easyocr")

    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    def _dump():
        out = os.environ["MEMOTION_TEST_MODULES_OUT"]
        while True:
            with open(out + ".tmp", "w") as handle:
                handle.write(json.dumps(sorted(sys.modules)))
            os.replace(out + ".tmp", out)
            time.sleep(0.5)

    sys.meta_path.insert(0, _Block())
    threading.Thread(target=_dump, daemon=True).start()
    """
)


@pytest.fixture(scope="module")
def repository_with_ocr(model_repository: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("with-ocr") / "model_repository"
    shutil.copytree(model_repository, root)
    add_ocr_to_repository(root, int8_calibration=parity_images())  # both gateway paths serve the INT8 detector
    ocr = load_manifest(root).ocr
    assert ocr is not None and "int8 static" in ocr.detector.source
    return root


def classify_without_text(url: str, image: bytes) -> dict:
    response = httpx.post(f"{url}/v1/classify", files={"image": ("m.png", image, "image/png")}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_gateway_reads_memes_with_onnx_ocr_and_never_imports_torch(repository_with_ocr: Path, tmp_path) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    modules_out = tmp_path / "modules.json"
    env = {"PYTHONPATH": str(tmp_path), "MEMOTION_TEST_MODULES_OUT": str(modules_out), "MEMOTION_OCR": "auto"}
    with GatewayProcess(repository_with_ocr, env=env) as url:
        body = classify_without_text(url, render_meme("WHEN THE CODE", "FINALLY COMPILES"))
        assert body["text"]["source"] == "ocr"
        assert character_error_rate(body["text"]["value"], "when the code finally compiles") <= 0.05, body["text"]
        health = httpx.get(f"{url}/readyz", timeout=10)
        assert health.status_code == 200
        time.sleep(1.5)  # the gateway's next list of its modules
        modules = json.loads(modules_out.read_text())
    assert "service.inference.ocr.ppocr" in modules and "onnxruntime" in modules
    assert not [m for m in modules if m.split(".")[0] in ("torch", "torchvision", "easyocr")]


@pytest.mark.slow
def test_gateway_reads_memes_with_ocr_through_triton(repository_with_ocr: Path) -> None:
    from service.launchers.triton_server import TritonServerProcess

    with TritonServerProcess(repository_with_ocr) as server:
        env = {"backend": "triton", "triton_url": server.grpc_url, "triton_metrics_url": server.metrics_url}
        with start_gateway(repository_with_ocr, ocr="onnx", **env) as url:
            body = classify_without_text(url, render_meme("ONE DOES NOT SIMPLY", "READ MEMES"))
            assert body["text"]["source"] == "ocr"
            assert character_error_rate(body["text"]["value"], "one does not simply read memes") <= 0.05, body["text"]
