"""Feedback into training, end to end with real parts: a gateway queues memes for review, a moderator
corrects their labels through the API, `memotion export-reviews` writes a Memotion-format folder that
loads with nothing lost, a tiny model trains on it, is exported and served, and the reviewed memes'
answers follow the corrections.

The honest formulation: a tiny random-initialised model cannot learn a correction from one meme
among many in a test's time, so a tiny CLIP-text model (the fastest member; 30 epochs, about 20 s
on 2 cores) trains on the exported reviews alone, that is, it fits them, and validates on them too
(the loop keeps the first epoch with the best validation score, which a lone held-out meme saturates
early); the test checks that the loop carries the corrected labels, unchanged, from the moderator to
the served model's answer on every reviewed meme. (All three tiny members for 20 epochs also follow
every correction, in about three times the time.)
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from memotion.data_format import load_split, load_split_checked, write_split
from service.access.keys import hash_key
from tests.gateway_fixtures import start_gateway

pytestmark = pytest.mark.slow

STAFF = "mk_review-training-moderator-0123456789"
SENTIMENTS = ("negative", "neutral", "positive")
MEMES = 8


def _classify(url: str, image: Path, text: str) -> dict:
    body = {"image": base64.b64encode(image.read_bytes()).decode(), "text": text}
    answer = httpx.post(f"{url}/v1/classify", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_classify_review_export_train_serve(model_repository: Path, synthetic_data: Path, tmp_path: Path) -> None:
    memes = load_split(synthetic_data / "val.csv")[:MEMES]
    database = f"sqlite:///{tmp_path / 'memotion.db'}"
    staff = {"Authorization": f"Bearer {STAFF}"}
    keys = json.dumps([{"name": "moderator-1", "sha256": hash_key(STAFF), "role": "admin"}])
    corrected: dict[str, str] = {}  # text -> corrected sentiment
    with start_gateway(model_repository, ocr="none", database_url=database, admin_keys=keys) as url:
        policy = {"rules": [], "default_action": "review", "keep_full_image": True}
        httpx.put(f"{url}/v1/admin/policies/review-all", json=policy, headers=staff).raise_for_status()
        httpx.put(f"{url}/v1/admin/assignments/*", json={"policy": "review-all"}, headers=staff).raise_for_status()
        for meme in memes:
            answer = _classify(url, meme.image_path, meme.text)
            wrong = SENTIMENTS[(SENTIMENTS.index(answer["task_a"]["label"]) + 1) % 3]  # differs from the model
            corrected[meme.text] = wrong
            decision = {"action": "allow", "labels": {"sentiment": wrong}, "note": "sentiment corrected"}
            item = answer["decision"]["review_id"]
            httpx.post(f"{url}/v1/reviews/{item}/decision", json=decision, headers=staff).raise_for_status()

    out = tmp_path / "reviews"
    command = [sys.executable, "-m", "service", "export-reviews", "--url", database, "--out", str(out)]
    done = subprocess.run([*command, "--val-share", "0.25"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    train, report = load_split_checked(out / "train.csv")
    val, val_report = load_split_checked(out / "val.csv")
    assert not report.skipped and not val_report.skipped and len(train) + len(val) == MEMES
    assert {r.text: SENTIMENTS[r.sentiment] for r in train + val} == corrected

    from training.export import export_run
    from training.recipe import tiny_recipe, train_recipe

    # Validation on the corrected memes themselves: the loop keeps the first epoch with the best
    # validation score, and a lone held-out meme saturates that score before the corrections are fitted.
    fit = tmp_path / "fit"
    write_split(fit / "train.csv", train + val)
    write_split(fit / "val.csv", train + val)
    run = tmp_path / "run"
    recipe = tiny_recipe(epochs=30)
    recipe = replace(recipe, models=("clip_text",), train=replace(recipe.train, lr=3e-3))
    train_recipe(fit, run, recipe, progress=False, log=lambda _: None)
    repository = export_run(run, tmp_path / "repository", version=2)
    with start_gateway(repository, ocr="none", database_url="none") as url:
        answers = {r.text: _classify(url, r.image_path, r.text)["task_a"]["label"] for r in train + val}
    assert answers == corrected
