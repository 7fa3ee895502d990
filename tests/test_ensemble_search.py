"""The paper's exhaustive ensemble search (Sec. 5), Task B from Task C or voted directly, the manifest
entry that carries the result, and the gateway honouring it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import f1_score

from memotion.labels import ALL_TASKS, TASK_C
from memotion.voting import majority_vote, presence_probabilities
from training.ensemble_search import (
    MAX_SEARCH_MODELS,
    all_members,
    best_subset,
    combinations,
    ensemble_predict,
    ensemble_scores,
    search_ensemble,
)


def _one_hot(labels: np.ndarray, classes: int, confidence: float = 0.7) -> np.ndarray:
    p = np.full((len(labels), classes), (1 - confidence) / (classes - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


def _noisy(truth: np.ndarray, classes: int, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    wrong = rng.random(len(truth)) > accuracy
    labels = np.where(wrong, rng.integers(0, classes, len(truth)), truth)
    return _one_hot(labels, classes)


def _data(models: dict[str, float], n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = {t.name: rng.integers(0, t.num_classes, n) for t in ALL_TASKS}
    probabilities = {
        m: {t.name: _noisy(truth[t.name], t.num_classes, acc, rng) for t in ALL_TASKS} for m, acc in models.items()
    }
    return probabilities, truth


def test_combinations_in_tie_break_order():
    assert combinations(["a", "b", "c"]) == [
        ("a",),
        ("b",),
        ("c",),
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
        ("a", "b", "c"),
    ]


def test_search_finds_the_best_subset_per_task_by_brute_force():
    probabilities, truth = _data({"m1": 0.5, "m2": 0.6, "m3": 0.55, "m4": 0.3})
    selection = search_ensemble(probabilities, truth)
    for spec in ALL_TASKS:
        # Independent brute force with sklearn's weighted F1.
        scores = {
            subset: f1_score(
                truth[spec.name], majority_vote([probabilities[m][spec.name] for m in subset]), average="weighted"
            )
            for subset in combinations(list(probabilities))
        }
        best = max(scores.values())
        chosen = selection.task_members[spec.name]
        assert scores[chosen] == pytest.approx(best)
        # Tie-break: no subset listed before it (fewer members, then model order) scores as high.
        earlier = list(scores)[: list(scores).index(chosen)]
        assert all(scores[s] < best - 1e-12 for s in earlier)


def test_ties_go_to_fewest_members_then_model_order():
    truth = np.array([0, 1, 2, 0])
    perfect = _one_hot(truth, 3)
    probabilities = {"late": perfect, "early": perfect, "other": _one_hot(np.array([1, 1, 1, 1]), 3)}
    # "late" is first in model order; the identical "early" and any bigger perfect subset tie.
    assert best_subset(probabilities, truth, 3, ["late", "early", "other"]) == (("late",), 1.0)
    assert best_subset(probabilities, truth, 3, ["early", "late", "other"]) == (("early",), 1.0)


def test_direct_task_b_votes_on_presence():
    # Intensity argmax 0 (absent) but P(present) = 0.6: from Task C says absent, directly present.
    p = np.array([[0.4, 0.3, 0.3, 0.0]])
    assert presence_probabilities(p).tolist() == [[0.4, 0.6]]
    probabilities = {
        "m": {t.name: np.array([[0.4] + [0.6 / (t.num_classes - 1)] * (t.num_classes - 1)]) for t in ALL_TASKS}
    }
    truth = {t.name: np.array([1]) for t in ALL_TASKS}
    from_c = ensemble_predict(probabilities, all_members(["m"], "from_task_c"))[1]
    direct = ensemble_predict(probabilities, all_members(["m"], "direct"))[1]
    for spec in TASK_C:
        assert direct[spec.name].tolist() == [True]
        # With two classes the rules agree; with four, the argmax is "absent".
        assert from_c[spec.name].tolist() == [spec.num_classes == 2]
    assert ensemble_scores(probabilities, truth, all_members(["m"], "direct"))["task_b"] == 1.0
    assert ensemble_scores(probabilities, truth, all_members(["m"], "from_task_c"))["task_b"] == 0.25


def test_every_member_votes_by_the_mean_probability_when_asked():
    # Two members of three classes disagree; a third's confident vote is outvoted but tips the mean.
    p = {
        "a": np.array([[0.4, 0.6, 0.0]]),
        "b": np.array([[0.4, 0.6, 0.0]]),
        "c": np.array([[1.0, 0.0, 0.0]]),
    }
    probabilities = {
        m: {t.name: np.eye(t.num_classes)[[0]] for t in ALL_TASKS} | {"sentiment": v} for m, v in p.items()
    }
    vote = all_members(list(p))
    mean = all_members(list(p), rule="mean_probability")
    assert mean.task_rules == {t.name: "mean_probability" for t in ALL_TASKS} and vote.task_rules == {}
    assert ensemble_predict(probabilities, vote)[0]["sentiment"].tolist() == [1]
    assert ensemble_predict(probabilities, mean)[0]["sentiment"].tolist() == [0]  # mean 0.6 > 0.4
    with pytest.raises(ValueError, match="stacked_lr"):
        all_members(list(p), rule="stacked_lr")


def test_direct_search_picks_task_b_voters_separately():
    probabilities, truth = _data({"a": 0.4, "b": 0.7, "c": 0.5}, seed=3)
    selection = search_ensemble(probabilities, truth, "direct")
    assert set(selection.task_b_members) == {t.name for t in TASK_C}
    for spec in TASK_C:
        presence = {m: presence_probabilities(probabilities[m][spec.name]) for m in probabilities}
        _, best = best_subset(presence, truth[spec.name] > 0, 2, list(probabilities))
        chosen = majority_vote([presence[m] for m in selection.task_b_members[spec.name]])
        assert f1_score(truth[spec.name] > 0, chosen == 1, average="weighted") == pytest.approx(best)
    summary = selection.to_json()
    assert summary["task_b"] == "direct" and summary["subset_tie_break"]
    assert summary["members"] == [m for m in "abc" if m in summary["members"]]


def test_search_is_limited():
    many = {f"m{i}": {t.name: np.ones((2, t.num_classes)) for t in ALL_TASKS} for i in range(MAX_SEARCH_MODELS + 1)}
    with pytest.raises(ValueError, match="limited"):
        search_ensemble(many, {t.name: np.zeros(2, int) for t in ALL_TASKS})


# --- the manifest and the gateway -----------------------------------------------------------------


def test_manifest_ensemble_entry_validates_per_task_members():
    from memotion.manifest import EnsembleEntry

    entry = EnsembleEntry(members=("a", "b"), task_members={"sentiment": ("b",)})
    assert entry.members_for("sentiment") == ("b",) and entry.members_for("humour") == ("a", "b")
    assert entry.task_b_members_for("humour") == ("a", "b")


@pytest.mark.slow
def test_export_writes_the_search_and_the_gateway_honours_it(model_repository, tmp_path):
    from memotion.manifest import ManifestError, load_manifest
    from memotion.preprocess import images_to_batch
    from service.core.settings import GatewaySettings
    from service.inference.classifier import MemeClassifier
    from service.inference.imaging import decode_image
    from tests.gateway_fixtures import photo_jpeg

    manifest = load_manifest(model_repository)
    searched = manifest.ensemble
    assert searched.selection in ("exhaustive", "all")
    assert set(searched.task_members) <= {t.name for t in ALL_TASKS}
    for task in searched.task_members:
        assert set(searched.members_for(task)) <= set(searched.members)

    # Rewrite the ensemble: sentiment by CLIP-text alone, humour's Task B directly by CLIP-image.
    repository = tmp_path / "repository"
    shutil.copytree(model_repository, repository)
    payload = json.loads((repository / "manifest.json").read_text())
    payload["ensemble"].update(
        members=["clip_text", "clip_image", "clip_multi"],
        task_members={"sentiment": ["clip_text"]},
        task_b="direct",
        task_b_members={"humour": ["clip_image"]},
    )
    (repository / "manifest.json").write_text(json.dumps(payload))
    classifier = MemeClassifier.from_settings(GatewaySettings(model_repository=repository, ocr="none"))
    try:
        image = decode_image(photo_jpeg(seed=5), 10_000_000)
        result = classifier.classify(image, "when the code finally compiles")
        assert result.tasks["sentiment"].label == result.votes["clip_text"]["sentiment"]
        member = classifier.manifest.model("clip_image")
        tensors = {"pixel_values": images_to_batch([image], classifier.manifest.preprocessing)}
        logits = classifier.backend.infer(member, tensors)["humour"][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        assert result.task_b["humorous"] == bool(1 - p[0] > 0.5)
    finally:
        classifier.close()

    payload["ensemble"]["task_members"] = {"sentiment": ["oscar"]}
    (repository / "manifest.json").write_text(json.dumps(payload))
    with pytest.raises(ManifestError):
        load_manifest(repository)
