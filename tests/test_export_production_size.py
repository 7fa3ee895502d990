"""Export at the paper's size (issue 21): CLIP ViT-B-32 (random init; the --pretrained path with a
state dict saved here) trained a step on real memes, exported with parity and INT8, served by the
real gateway with OCR over HTTP. Also: export works whatever attention path PyTorch takes, a
repository is never left half written, and what is served is said.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from torch import nn

from memotion.data_format import load_split, write_split
from memotion.manifest import EnsembleEntry, load_manifest
from memotion.voters import served_voters
from service.launchers.gateway_process import GatewayProcess
from tests.gateway_fixtures import render_meme
from training.ensemble_evidence import noise_bound, selection_warnings
from training.export import ExportError, export_onnx, export_run, parity_error

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
REAL_MEMES = Path(os.environ.get("MEMOTION_SHARED_DATA", REPO.parent / "shared" / "data")) / "memotion1-train-128px"


class SelfAttention(nn.Module):
    """Even head count, batch first: eval mode under no_grad takes PyTorch's fused MHA fast path."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.attn(x, x, x, need_weights=False)[0][:, 0, :k] for k in (3, 4, 4, 4, 2))


def test_export_works_where_pytorch_takes_the_fused_attention_path(tmp_path):
    model = SelfAttention().eval()
    inputs = {"input_ids": np.random.default_rng(0).standard_normal((2, 5, 32)).astype(np.float32)}
    with torch.no_grad(), pytest.raises(Exception, match="_native_multi_head_attention"):
        torch.onnx.export(model, (torch.from_numpy(inputs["input_ids"]),), str(tmp_path / "raw.onnx"), dynamo=False)
    assert torch.backends.mha.get_fastpath_enabled()
    export_onnx(model, inputs, tmp_path / "model.onnx")
    assert torch.backends.mha.get_fastpath_enabled()  # switched off for the export only
    assert parity_error(model, tmp_path / "model.onnx", inputs) < 1e-5


def test_a_failed_export_leaves_the_old_repository_and_no_partial_one(tiny_run, tmp_path, monkeypatch):
    target = tmp_path / "model_repository"
    target.mkdir()
    (target / "README.md").write_text("kept\n")
    lines: list[str] = []
    export_run(tiny_run, target, log=lines.append)
    before = (target / "manifest.json").read_text()
    assert (target / "README.md").read_text() == "kept\n"
    assert any(line.startswith("serving ") for line in lines) and any(" <- " in line for line in lines)

    monkeypatch.setattr("training.export.parity_error", lambda *a, **k: 1.0)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_run(tiny_run, target, version=2)
    assert (target / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_repository"]
    assert load_manifest(target).models[0].version == 1


def test_small_validation_set_warns_that_members_were_not_told_apart():
    rng = np.random.default_rng(0)
    heads = {"sentiment": 3, "humour": 4, "sarcasm": 4, "offensive": 4, "motivational": 2}
    y_true = {head: rng.integers(0, k, 12) for head, k in heads.items()}
    probabilities = {m: {h: rng.random((12, k)) for h, k in heads.items()} for m in ("a", "b", "c")}
    warnings = selection_warnings(probabilities, y_true, dict.fromkeys(heads, ("a",)))
    assert len(warnings) == 1 and "12 memes" in warnings[0] and f"{noise_bound(12):.3f}" in warnings[0]
    assert selection_warnings(probabilities, y_true, dict.fromkeys(heads, ("a", "b", "c"))) == []
    # A large validation set on which member "a" is right and the others guess: told apart.
    y_big = {head: rng.integers(0, k, 4000) for head, k in heads.items()}
    big = {m: {h: rng.random((4000, k)) for h, k in heads.items()} for m in ("a", "b", "c")}
    for head, k in heads.items():
        big["a"][head] = np.eye(k)[y_big[head]]
    assert selection_warnings(big, y_big, dict.fromkeys(heads, ("a",))) == []
    lines = served_voters(
        EnsembleEntry(members=("a",), task_members=dict.fromkeys(heads, ("a",)), warnings=tuple(warnings)), list(heads)
    )
    assert lines[0].startswith("serving 1 member(s) a") and lines[-1].startswith("WARNING: the validation set")


@pytest.fixture(scope="module")
def real_meme_data(tmp_path_factory, request) -> Path:
    """train.csv / val.csv of 8 real memes each (paths into the shared data), else the synthetic set."""
    if not (REAL_MEMES / "labels.csv").is_file():
        return request.getfixturevalue("synthetic_data")
    records = load_split(REAL_MEMES / "labels.csv")
    root = tmp_path_factory.mktemp("real-memes")
    write_split(root / "train.csv", records[:8])
    write_split(root / "val.csv", records[8:16])
    return root


@pytest.fixture(scope="module")
def vit_b_run(real_meme_data, tmp_path_factory) -> Iterator[Path]:
    """CLIP-image on a ViT-B-32 loaded from a state dict saved here, trained one step (about 2 GB
    of checkpoints and ONNX files, removed afterwards)."""
    from training.backbone import create_clip
    from training.recipe import RecipeConfig, train_recipe
    from training.trainer import TrainConfig

    root = tmp_path_factory.mktemp("vit-b-32")
    torch.manual_seed(21)
    torch.save(create_clip("ViT-B-32", None).state_dict(), root / "clip.pt")
    config = RecipeConfig(
        clip="ViT-B-32",
        pretrained=str(root / "clip.pt"),
        models=("clip_image",),
        train=TrainConfig(epochs=1, batch_size=4, max_steps=1),
        threads=2,
    )
    train_recipe(real_meme_data, root / "run", config, progress=False, log=lambda _: None)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def vit_b_export(vit_b_run) -> tuple[Path, list[str]]:
    """The ViT-B-32 run exported with INT8 members, and what export said."""
    lines: list[str] = []
    repository = export_run(vit_b_run / "run", vit_b_run / "model_repository", log=lines.append, quantize="int8")
    return repository, lines


def test_vit_b_32_trains_exports_int8_and_serves_real_memes_over_http(vit_b_run, vit_b_export, real_meme_data):
    from training.factory import load_checkpoint

    run = vit_b_run / "run"
    trained, _ = load_checkpoint(run / "clip_image" / "checkpoint.pt")
    saved = torch.load(vit_b_run / "clip.pt")["visual.conv1.weight"]
    assert torch.allclose(trained.encoder.visual.conv1.weight, saved, atol=1e-3)  # loaded, then one small step
    del trained
    repository, lines = vit_b_export
    manifest = load_manifest(repository)
    (entry,) = manifest.models
    assert manifest.preprocessing.image_size == 224 and manifest.tokenizer.context_length == 77
    assert entry.quantization is not None and entry.quantization.memes == 8
    assert entry.quantization.inputs == (
        "validation memes" if real_meme_data.name.startswith("real") else "sample inputs"
    )
    assert set(entry.quantization.label_agreement) == {t.name for t in manifest.tasks}
    assert (repository / entry.file).stat().st_size < 150e6  # ViT-B-32 image tower: ~350 MB in FP32
    assert any("ONNX Runtime vs PyTorch" in line for line in lines)
    assert any(line.startswith("serving 1 member(s) clip_image") for line in lines)
    real_meme = load_split(real_meme_data / "val.csv")[0].image_path.read_bytes()
    gateway = GatewayProcess(repository)
    with gateway as url, httpx.Client(base_url=url, timeout=120) as client:
        read = client.post("/v1/classify", files={"image": ("meme.png", render_meme("WHEN THE CODE", "COMPILES"))})
        assert read.status_code == 200, read.text
        assert read.json()["text"]["source"] == "ocr" and "CODE" in read.json()["text"]["value"].upper()
        given = client.post("/v1/classify", files={"image": ("meme.jpg", real_meme)}, data={"text": "a caption"})
        assert given.status_code == 200, given.text
        assert given.json()["task_a"]["label"] in manifest.tasks[0].labels
        log = gateway.log_text()
    assert "serving 1 member(s) clip_image" in log and " <- clip_image" in log


def test_vit_b_32_served_by_tritonserver_answers_as_the_embedded_gateway(vit_b_export, real_meme_data):
    """The same INT8 ViT-B-32 repository through a real tritonserver (OCR in Triton too), over HTTP."""
    from service.launchers.triton_server import TritonServerProcess

    repository, _ = vit_b_export
    memes = [r.image_path.read_bytes() for r in load_split(real_meme_data / "val.csv")[:3]]
    memes.append(render_meme("WHEN THE CODE", "COMPILES"))
    with TritonServerProcess(repository) as server:
        env = {"MEMOTION_BACKEND": "triton", "MEMOTION_TRITON_URL": server.grpc_url}
        with GatewayProcess(repository, env=env, ready_timeout_s=180) as url:
            assert httpx.get(f"{url}/readyz").json()["backend"] == "triton"
            remote = [classify(url, meme) for meme in memes]
    with GatewayProcess(repository) as url:
        local = [classify(url, meme) for meme in memes]
    assert remote[-1]["text"]["source"] == "ocr" and "CODE" in remote[-1]["text"]["value"].upper()
    for got, expected in zip(remote, local):
        assert got["text"] == expected["text"]
        assert predictions(got) == predictions(expected)
        assert scores(got) == pytest.approx(scores(expected), abs=1e-4)


def predictions(answer: dict) -> dict[str, str]:
    return {"task_a": answer["task_a"]["label"], **{h: p["label"] for h, p in answer["task_c"].items()}}


def scores(answer: dict) -> dict[str, float]:
    heads = {"task_a": answer["task_a"], **answer["task_c"]}
    return {f"{h}/{label}": s for h, p in heads.items() for label, s in p["scores"].items()}


def classify(url: str, meme: bytes) -> dict:
    answer = httpx.post(f"{url}/v1/classify", files={"image": ("meme.jpg", meme)}, timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_training_cost_is_estimated_and_the_batch_lowered_to_fit_the_memory():
    from training.cost_estimate import Tower, fit_batch_size, training_cost

    towers = {"text": Tower(63_000_000, 12, 512, 77), "image": Tower(88_000_000, 12, 768, 50)}
    members = ("clip_text", "clip_image", "clip_multi")

    def estimate(batch: int, available: float = 64e9):
        return training_cost(towers, members, (128, 32), 602_728, batch, 100e9, available)

    roomy = estimate(32)
    assert 6e9 < roomy.peak_bytes < 12e9 and roomy.fits()  # issue 21 measured 8.8 GB on this set-up
    assert 60 < roomy.seconds_per_epoch < 600
    tight = fit_batch_size(estimate(32, 7e9), lambda b: estimate(b, 7e9))
    assert tight.batch_size < 32 and tight.fits() and "batch" in tight.describe(members, 128)
    with pytest.raises(MemoryError, match="even at batch 1"):
        fit_batch_size(estimate(32, 2e9), lambda b: estimate(b, 2e9))


def test_training_cost_counts_the_text_encoder_and_not_the_tfidf_member():
    """The offline recipe (bert_text + tfidf_lr on a tiny CLIP): the estimate is MiniLM's, from its
    config.json; the scikit-learn member trains no tower."""
    from training.cost_estimate import Tower, bert_tower, training_cost

    minilm = {"vocab_size": 30522, "hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}
    bert = bert_tower({**minilm, "max_position_embeddings": 512}, tokens=48)
    assert 21e6 < bert.parameters < 24e6  # all-MiniLM-L6-v2: 22.7 M
    tiny = {"text": Tower(10_000, 1, 8, 16), "image": Tower(10_000, 1, 8, 4), "bert": bert}

    def cost(members):
        return training_cost(tiny, members, (600, 300), 1000, 32, 100e9, None)

    offline, alone = cost(("bert_text", "tfidf_lr")), cost(("bert_text",))
    assert offline == alone
    assert offline.seconds_per_epoch == pytest.approx((3 * 600 + 300) * bert.forward_flops() / 100e9)
    assert offline.peak_bytes > 16 * bert.parameters + 32 * bert.activation_bytes()
    assert cost(("tfidf_lr",)).peak_bytes < cost(("clip_multi",)).peak_bytes
