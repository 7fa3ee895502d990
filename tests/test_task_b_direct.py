"""Task B predicted directly (multi-label, BCE) as an alternative to deriving it from Task C: the
loss, the four multi-label F1s (PM+MO paper Sec. 4), the manifest contract, the ensemble vote and
the gateway, end to end on a real exported model."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score

from memotion.labels import ALL_TASKS, TASK_B_NAMES, TASK_B_OUTPUT
from memotion.manifest import ModelEntry, load_manifest
from memotion.voting import member_presence
from training.losses import multitask_loss, task_b_bce, task_b_targets
from training.metrics import multilabel_f1_scores, task_b_direct_scores


def test_task_b_targets_are_intensity_above_zero() -> None:
    targets = torch.tensor([[2, 0, 3, 1, 0], [0, 2, 0, 0, 1]])  # sentiment, humour, sarcasm, offense, motivation
    assert task_b_targets(targets).tolist() == [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]]


def test_bce_loss_formula() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.0, 3.0]])
    targets = torch.tensor([[1, 1, 0, 2, 0]])  # present: humour, offense
    p = torch.sigmoid(logits[0])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    want = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(task_b_bce(logits, targets), want)


def test_multitask_loss_adds_bce_for_an_extra_task_b_output() -> None:
    g = torch.Generator().manual_seed(0)
    logits = tuple(torch.randn(4, t.num_classes, generator=g) for t in ALL_TASKS)
    targets = torch.stack([torch.randint(0, t.num_classes, (4,), generator=g) for t in ALL_TASKS], dim=1)
    task_b = torch.randn(4, len(TASK_B_NAMES), generator=g)
    base = multitask_loss(logits, targets.unbind(1), 2.0)
    torch.testing.assert_close(
        multitask_loss(logits + (task_b,), targets.unbind(1), 2.0), base + task_b_bce(task_b, targets)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_f1s_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.random((40, 4)) < 0.4
    y_pred = rng.random((40, 4)) < 0.5
    y_true[:3] = False  # samples with no emotion at all,
    y_pred[:2] = False  # some predicted empty too (F1 0 by sklearn's zero_division=0)
    y_true[:, 3] = False  # an emotion nobody has
    got = multilabel_f1_scores(y_true, y_pred)
    for average in ("micro", "macro", "weighted", "samples"):
        want = f1_score(y_true, y_pred, average=average, zero_division=0)
        assert got[average] == pytest.approx(want), average


def test_samples_f1_is_eq_7() -> None:
    y_true = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
    y_pred = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], dtype=bool)
    # (2*1/(2+2) + 2*1/(1+1)) / 2
    assert multilabel_f1_scores(y_true, y_pred)["samples"] == pytest.approx(0.75)


def test_direct_scores_only_for_models_with_the_head() -> None:
    y_true = {t.name: np.array([0, 1, 2, 1])[:4] % t.num_classes for t in ALL_TASKS}
    assert task_b_direct_scores(y_true, {t.name: np.ones((4, t.num_classes)) for t in ALL_TASKS}) == {}
    probabilities = {TASK_B_OUTPUT: np.array([[0.9, 0.9, 0.1, 0.9]] * 4)}
    scores = task_b_direct_scores(y_true, probabilities)
    true = np.stack([y_true[t.name] > 0 for t in ALL_TASKS[1:]], axis=1)
    assert scores["task_b_direct_micro"] == pytest.approx(
        f1_score(true, probabilities[TASK_B_OUTPUT] > 0.5, average="micro", zero_division=0)
    )
    assert set(scores) == {
        "task_b_direct",
        "task_b_direct_micro",
        "task_b_direct_macro",
        "task_b_direct_weighted",
        "task_b_direct_samples",
    }


def test_member_presence_prefers_the_direct_head() -> None:
    humour = np.array([[0.9, 0.05, 0.05, 0.0]])  # Task C: most likely not funny
    np.testing.assert_allclose(member_presence({"humour": humour}, "humour"), [[0.9, 0.1]])
    direct = {"humour": humour, TASK_B_OUTPUT: np.array([[0.8, 0.0, 0.0, 0.0]])}
    np.testing.assert_allclose(member_presence(direct, "humour"), [[0.2, 0.8]])


def test_manifest_task_b_output_is_optional_and_not_a_task() -> None:
    entry = dict(
        name="m",
        kind="fusion_concat",
        version=1,
        file="m/1/model.onnx",
        inputs=("input_ids", "pixel_values"),
        outputs=tuple(t.name for t in ALL_TASKS),
    )
    assert ModelEntry(**entry).task_b_output is None  # older manifests load unchanged
    assert ModelEntry(**entry, task_b_output=TASK_B_OUTPUT).task_b_output == "task_b"


# --- end to end: train, export, serve -----------------------------------------------------------


@pytest.fixture(scope="module")
def direct_repository(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one fusion model that has a direct Task B head, exported with
    ensemble.task_b = "direct". Its weights are then set so that the Task B head says every emotion
    is present while every Task C head says intensity 0, so the two rules disagree everywhere."""
    from training.export import export_run
    from training.factory import ModelConfig, load_checkpoint, save_checkpoint
    from training.recipe import tiny_recipe, train_recipe

    run_dir = tmp_path_factory.mktemp("task-b-direct-run")
    recipe = tiny_recipe(epochs=1, max_steps=2)
    recipe = replace(
        recipe,
        models=("fusion_concat",),
        ensemble_search=False,
        task_b="direct",
        model=replace(recipe.model, fusion_dim=32, task_b_direct=True),
    )
    train_recipe(synthetic_data, run_dir, recipe, progress=False, log=lambda _: None)
    checkpoint = run_dir / "fusion_concat" / "checkpoint.pt"
    model, meta = load_checkpoint(checkpoint)
    with torch.no_grad():
        model.head.task_b.net[-1].bias.fill_(20.0)
        for head in model.head.classifier.heads[1:]:  # Task C
            head.net[-1].bias.copy_(torch.tensor([40.0] + [-40.0] * (head.net[-1].bias.numel() - 1)))
    save_checkpoint(checkpoint, model, "fusion_concat", meta["clip"], ModelConfig(**meta["model_config"]))
    return export_run(run_dir, tmp_path_factory.mktemp("task-b-direct") / "repository")


def _classify(repository: Path) -> dict:
    from service.core.settings import GatewaySettings
    from service.inference.classifier import MemeClassifier

    classifier = MemeClassifier.from_settings(GatewaySettings(model_repository=repository, ocr="none"))
    try:
        result = classifier.classify(Image.new("RGB", (96, 96), "orange"), "when the code compiles")
    finally:
        classifier.close()
    return {"task_b": result.task_b, "task_c": {t.name: result.tasks[t.name].index for t in classifier.task_c}}


@pytest.mark.slow
def test_export_writes_the_task_b_output(direct_repository: Path) -> None:
    import onnx

    manifest = load_manifest(direct_repository)
    entry = manifest.model("fusion_concat")
    assert entry.task_b_output == TASK_B_OUTPUT and manifest.ensemble.task_b == "direct"
    graph = onnx.load(str(direct_repository / entry.file)).graph
    assert [o.name for o in graph.output] == [t.name for t in ALL_TASKS] + [TASK_B_OUTPUT]


@pytest.mark.slow
def test_gateway_votes_task_b_with_the_direct_head(direct_repository: Path) -> None:
    direct = _classify(direct_repository)
    assert set(direct["task_c"].values()) == {0}  # every intensity 0 ...
    assert all(direct["task_b"].values()) and len(direct["task_b"]) == 4  # ... yet every emotion present
    manifest_path = direct_repository / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["ensemble"]["task_b"] = "from_task_c"  # the default: Task B from the voted Task C
    manifest["ensemble"]["task_b_members"] = {}
    manifest_path.write_text(json.dumps(manifest))
    assert not any(_classify(direct_repository)["task_b"].values())
