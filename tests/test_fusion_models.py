"""The fusion kinds as the rest of the system sees them: built from the registry, the PMR encoder
protocol, ONNX export (posterior mean for PM+MO) equal to PyTorch, and the recipe training them
(PM+MO by SVI, PMR on) into a run that exports to a repository the gateway can serve."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import open_clip
import pytest
import torch

from memotion.labels import ALL_TASKS, TASK_B_NAMES, TASK_B_OUTPUT
from memotion.manifest import load_manifest
from training.backbone import TINY_CLIP, register_model_configs
from training.export import PARITY_TOLERANCE, export_onnx, output_names, parity_error
from training.factory import (
    MODEL_REGISTRY,
    ModelConfig,
    build_model,
    has_encoder_features,
    load_checkpoint,
    model_kind,
    run_branches_and_features,
)
from training.fusion.kinds import FUSION_KINDS
from training.fusion.pmmo import PmmoHead

CONFIG = ModelConfig(head_hidden=16, fusion_dim=16, attention_heads=4, dropout=0.1)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    register_model_configs()
    ids = open_clip.get_tokenizer(TINY_CLIP, context_length=32)(["when the code compiles", "bhai", ""])
    return ids, torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_every_fusion_kind_is_registered() -> None:
    for kind in FUSION_KINDS:
        spec = model_kind(kind)
        assert spec.inputs == ("input_ids", "pixel_values") and spec.branch == "multi"
        assert (spec.train is not None) == (kind == "pmmo")
    assert set(FUSION_KINDS) <= set(MODEL_REGISTRY) and len(FUSION_KINDS) == 10


@pytest.mark.parametrize("kind", FUSION_KINDS)
def test_kind_outputs_encoder_features_and_onnx_parity(kind: str, batch, tmp_path: Path) -> None:
    ids, pixels = batch
    torch.manual_seed(0)
    model = build_model(kind, TINY_CLIP, replace(CONFIG, task_b_direct=True)).eval()
    outputs = model(ids, pixels)
    assert [tuple(o.shape) for o in outputs] == [(3, t.num_classes) for t in ALL_TASKS] + [(3, len(TASK_B_NAMES))]
    # PMR's protocol (training/factory.py): the encoders' CLS features, and one pass for both.
    assert has_encoder_features(model)
    text, image = model.encoder_features(ids, pixels)
    torch.testing.assert_close(text, model.text_encoder(ids)[1])
    torch.testing.assert_close(image, model.image_encoder(pixels)[1])
    branches, (text2, image2) = run_branches_and_features(model, kind, ids, pixels)
    torch.testing.assert_close(text2, text)
    for got, want in zip(branches["multi"], outputs):
        torch.testing.assert_close(got, want)
    # ONNX: every output (Task B too), any batch size; PM+MO exports its posterior-mean path.
    inputs = {"input_ids": ids.numpy(), "pixel_values": pixels.numpy()}
    path = export_onnx(model, inputs, tmp_path / "model.onnx")
    assert parity_error(model, path, inputs) < PARITY_TOLERANCE
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == output_names(model)
    single = session.run(None, {k: v[1:2] for k, v in inputs.items()})
    for got, want in zip(single, model(ids[1:2], pixels[1:2])):
        np.testing.assert_allclose(got, want.detach().numpy(), atol=PARITY_TOLERANCE)


def test_without_task_b_head_a_kind_has_the_usual_outputs(batch) -> None:
    ids, pixels = batch
    model = build_model("gmu", TINY_CLIP, CONFIG).eval()
    assert len(model(ids, pixels)) == len(ALL_TASKS) and output_names(model) == [t.name for t in ALL_TASKS]


@pytest.fixture(scope="module")
def fusion_run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe trains an attention head, the GMU baseline and PM+MO (SVI), with PMR on."""
    from training.pmr import PMRConfig
    from training.recipe import tiny_recipe, train_recipe

    recipe = tiny_recipe(epochs=2, max_steps=3)
    recipe = replace(
        recipe,
        models=("fusion_attention", "gmu", "pmmo"),
        model=replace(recipe.model, fusion_dim=32, task_b_direct=True),
        train=replace(recipe.train, pmr=PMRConfig(enabled=True)),
    )
    run_dir = tmp_path_factory.mktemp("fusion-run")
    train_recipe(synthetic_data, run_dir, recipe, progress=False, log=lambda _: None)
    return run_dir


@pytest.mark.slow
def test_recipe_trains_fusion_kinds_and_pmmo_by_svi(fusion_run: Path) -> None:
    summary = json.loads((fusion_run / "summary.json").read_text())
    assert list(summary["models"]) == ["fusion_attention", "gmu", "pmmo"]
    for kind in summary["models"]:
        for name in ("checkpoint.pt", "history.json", "val_probabilities.npz", "training_curves.png"):
            assert (fusion_run / kind / name).stat().st_size > 0, (kind, name)
        probabilities = np.load(fusion_run / kind / "val_probabilities.npz")
        assert probabilities[TASK_B_OUTPUT].shape[1] == len(TASK_B_NAMES)
        assert 0 <= summary["models"][kind]["validation"]["task_b_direct_weighted"] <= 1
    assert (fusion_run / "fusion_attention" / "pmr_rho.json").is_file()  # PMR ran in the shared loop
    history = json.loads((fusion_run / "pmmo" / "history.json").read_text())
    assert {"train_elbo", "kl_weight", "val_task_b_direct_samples"} <= set(history[0])
    model, meta = load_checkpoint(fusion_run / "pmmo" / "checkpoint.pt")
    assert isinstance(model.head, PmmoHead) and meta["pmmo_config"]["elbo"] == "trace"


@pytest.mark.slow
def test_fusion_run_exports_to_a_servable_repository(fusion_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    from service.core.settings import GatewaySettings
    from service.inference.classifier import MemeClassifier
    from training.export import export_run

    repository = export_run(fusion_run, tmp_path / "repository")  # raises if ORT != PyTorch
    manifest = load_manifest(repository)
    assert [m.kind for m in manifest.models] == ["fusion_attention", "gmu", "pmmo"]
    assert all(m.task_b_output == TASK_B_OUTPUT for m in manifest.models)
    classifier = MemeClassifier.from_settings(GatewaySettings(model_repository=repository, ocr="none"))
    try:
        result = classifier.classify(Image.new("RGB", (80, 80), "teal"), "keep going never give up")
    finally:
        classifier.close()
    assert set(result.votes) <= {"fusion_attention", "gmu", "pmmo"} and len(result.task_b) == 4
