"""The real-data experiment end to end on small built meme sets (no real data needed), and its quality
numbers on their way into the product: evaluation entries, the manifest and the model card."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from memotion.manifest import EvaluationEntry, Manifest
from training.evaluation_block import entries_from_report, entries_from_summary, run_evaluation, write_run_evaluation

MEMOTION_HEADER = "id,image_path,text,sentiment,humour,sarcasm,offensive,motivational"
CM_HEADER = f"{MEMOTION_HEADER},sarcasm_raw,offensive_level1,offensive_level2"
WORDS = ("awful sad", "plain okay", "great fun")


def _build_sets(root: Path, n: int = 45) -> Path:
    rng = np.random.default_rng(0)
    memotion, cm = [MEMOTION_HEADER], [CM_HEADER]
    for i in range(n):
        sentiment = i % 3
        for folder in ("memotion1-train-128px", "cm-off-meme-sample"):
            path = root / folder / "images" / f"m{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        text = f"{WORDS[sentiment]} meme {i}"
        label = ("negative", "neutral", "positive")[sentiment]
        humour = ("not_funny", "funny", "very_funny", "hilarious")[i % 4]
        memotion.append(f"m{i},images/m{i}.jpg,{text},{label},{humour},general,not_offensive,motivational")
        sarcasm = "sarcasm" if i % 2 else "non-sarcastic"
        offence = ("off", "explicit") if sentiment == 0 else ("non-off", "non-off")
        cm.append(f"m{i},images/m{i}.jpg,{text},{label},,,,,{sarcasm},{offence[0]},{offence[1]}")
    (root / "memotion1-train-128px" / "labels.csv").write_text("\n".join(memotion) + "\n")
    (root / "cm-off-meme-sample" / "labels.csv").write_text("\n".join(cm) + "\n")
    return root


@pytest.mark.slow
def test_the_experiment_scores_baselines_models_and_ensembles_on_both_sets(tmp_path: Path, one_torch_thread) -> None:
    from training.experiments.real_data import RealDataConfig, run_experiment
    from training.experiments.real_data_models import ModelPlan

    config = RealDataConfig(
        data_root=str(_build_sets(tmp_path / "data")),
        seeds=(0,),
        plan=ModelPlan(1, 1, 1, multi_variants=("CLIP-multi",), fusion=(), out_dir=str(tmp_path / "runs")),
    )
    config = replace(config, recipe=replace(config.recipe, train=replace(config.recipe.train, batch_size=16)))
    report = run_experiment(tmp_path / "out", config, progress=False, log=lambda _: None)
    for name in ("memotion1", "cm-off-meme"):
        rows = report["datasets"][name]["test"]
        assert {"Majority class", "TF-IDF + LR", "CLIP-text", "CLIP-image", "CLIP-multi", "CLIP-text balanced"} <= set(
            rows
        )
        assert "Ensemble (all models + TF-IDF)" in rows
        keys = ("task_a", "task_b", "task_c") if name == "memotion1" else ("task_a", "sarcastic", "offensive")
        assert set(rows["TF-IDF + LR"]["macro"]) == set(keys)
        assert rows["TF-IDF + LR"]["macro"]["task_a"]["mean"] == 1.0  # the caption names the sentiment
    markdown = (tmp_path / "out" / "real_data.md").read_text()
    assert "SemEval-2020 best" in markdown and "pretrained: none" in markdown
    assert (tmp_path / "out" / "real_data.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "real_data.json").read_text())["datasets"]["cm-off-meme"]["kind"] == "binary"
    entries = entries_from_report(report, rows=["TF-IDF + LR"])
    assert len(entries) == 2 and all(EvaluationEntry.model_validate(e).split == "test" for e in entries)
    assert entries[0]["scores"]["macro_f1"]["task_a"] == 1.0


def test_evaluation_entries_from_a_run_summary_and_file(tmp_path: Path) -> None:
    summary = {
        "data": {"dir": "data/memotion3", "train": 10, "val": 5},
        "models": {"clip_text": {"validation": {"task_a": 0.41234, "task_b": 0.7, "task_c": 0.5, "other": 1}}},
        "ensemble": {"validation": {"task_a": 0.45, "task_b": 0.71, "task_c": 0.52}},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    extra = {"dataset": "memotion1", "split": "test", "model": "ensemble", "scores": {"macro_f1": {"task_a": 0.3}}}
    write_run_evaluation(tmp_path, [extra])
    entries = run_evaluation(tmp_path)
    assert [e["model"] for e in entries] == ["clip_text", "ensemble", "ensemble"]
    assert entries[0]["scores"] == {"weighted_f1": {"task_a": 0.4123, "task_b": 0.7, "task_c": 0.5}}
    assert entries_from_summary({}) == []
    validated = [EvaluationEntry.model_validate(e) for e in entries]
    assert validated[2].scores["macro_f1"]["task_a"] == 0.3 and validated[0].split == "validation"
    with pytest.raises(ValueError):
        EvaluationEntry.model_validate({**extra, "unknown": 1})
    assert Manifest.model_fields["evaluation"].default == ()


def test_the_model_card_shows_models_ensemble_and_evaluation() -> None:
    from service.api.model_card import model_card_from_manifest

    entry = EvaluationEntry(dataset="memotion1", split="test", model="ensemble", scores={"macro_f1": {"task_a": 0.3}})
    manifest = SimpleNamespace(
        repository_version="v1",
        created_at="2026-12-01T00:00:00Z",
        notice="random weights",
        models=[
            SimpleNamespace(name="clip_text", kind="clip_text", version=1, validation={"task_a": 0.4}, backbone={})
        ],
        ensemble=SimpleNamespace(method="majority_vote", members=("clip_text",), task_members={}, task_b="from_task_c"),
        evaluation=(entry,),
        training={"clip": "memotion-tiny", "secret": "not shown"},
    )
    card = model_card_from_manifest(manifest).model_dump()
    assert card["evaluation"][0]["scores"] == {"macro_f1": {"task_a": 0.3}} and card["notice"] == "random weights"
    assert card["models"][0]["validation"] == {"task_a": 0.4} and card["training"] == {"clip": "memotion-tiny"}

    from fastapi.testclient import TestClient

    from service.api.app import create_app

    app = create_app()
    client = TestClient(app)  # no lifespan: no models are loaded, the card reads the classifier's manifest
    assert client.get("/v1/model-card").status_code == 503
    app.state.classifier = SimpleNamespace(manifest=manifest)
    response = client.get("/v1/model-card")
    assert response.status_code == 200 and response.json()["evaluation"][0]["dataset"] == "memotion1"
