"""The offline recipe's rows of the real-data experiment (issue 23): its two members trained as
``memotion train --recipe offline`` trains them, on the experiment's split, and its ensemble.

Rows: ``MiniLM-text`` (all-MiniLM-L6-v2 fine-tuned under the paper's text heads), ``TF-IDF + LR
(ONNX)`` (the served graph's probabilities), ``Offline (majority vote)`` (the paper's rule on the
two, searched subsets) and ``Offline recipe`` (the recipe's ensemble: per head the rule chosen on
validation by the recipe's objective). Everything is scored on the experiment's test split.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from memotion.data_format import MemeRecord
from training.dataset import MemeTensors
from training.ensemble_combination import search_combination
from training.ensemble_search import ensemble_predict, search_ensemble
from training.factory import KindData
from training.recipe import RecipeConfig, offline_recipe
from training.trainer import predict_probabilities, train_model

BERT_ROW = "MiniLM-text"
TFIDF_ROW = "TF-IDF + LR (ONNX)"
VOTE_ROW = "Offline (majority vote)"
RECIPE_ROW = "Offline recipe"

Split = dict[str, dict[str, np.ndarray]]  # split (val, test) -> head -> probabilities


def bert_member(
    records: dict[str, list[MemeRecord]],
    tensors: dict[str, MemeTensors],
    recipe: RecipeConfig,
    out_dir: Path,
    log: Callable[[str], None],
) -> tuple[Split, float]:
    """The bert_text member trained by the shared loop (validation picks the epoch)."""
    from training.pretrained_text.kind import prepare_bert_text

    prepared = prepare_bert_text(KindData(records, tensors, recipe, out_dir, False, log))
    result = train_model(
        prepared.model,
        "bert_text",
        prepared.tensors["train"],
        prepared.tensors["val"],
        recipe.train,
        out_dir,
        recipe.clip,
        prepared.model_config,
        False,
        lambda _: None,
    )
    test = predict_probabilities(result.model, "bert_text", prepared.tensors["test"])
    log(f"{BERT_ROW}: {result.seconds:.0f} s, best epoch {result.best_epoch}")
    return {"val": result.val_probabilities, "test": test}, result.seconds


def tfidf_member(
    records: dict[str, list[MemeRecord]], tensors: dict[str, MemeTensors], out_dir: Path, log: Callable[[str], None]
) -> tuple[Split, float]:
    """TF-IDF + LR fitted, exported to ONNX (parity checked); the graph's probabilities."""
    from training.tfidf_member import OnnxTextMember, fit_tfidf_member

    texts = {split: [r.text for r in rows] for split, rows in records.items()}
    labels = {split: t.target_columns() for split, t in tensors.items()}
    _, val, seconds = fit_tfidf_member(texts, labels, out_dir, log=log)
    test = OnnxTextMember(out_dir / "model.onnx").probabilities(texts["test"])
    return {"val": val, "test": test}, seconds


def offline_rows(
    records: dict[str, list[MemeRecord]],
    tensors: dict[str, MemeTensors],
    seed: int,
    log: Callable[[str], None],
    out_dir: str | None = None,
    recipe: RecipeConfig | None = None,
    tfidf: tuple[Split, float] | None = None,
) -> tuple[dict[str, Split], dict[str, dict], dict[str, float]]:
    """(row -> split -> head -> predictions as probabilities or one-hot, ensembles' choices, seconds).

    ``tfidf``: the TF-IDF member's outputs and seconds when already fitted on this split (it does
    not depend on the seed)."""
    recipe = recipe or offline_recipe(seed=seed)
    recipe = replace(recipe, train=replace(recipe.train, seed=seed))
    root = Path(out_dir or tempfile.mkdtemp(prefix="offline_")) / f"seed{seed}"
    started = time.perf_counter()
    bert, bert_seconds = bert_member(records, tensors, recipe, root / "bert_text", log)
    cached = tfidf is not None
    tfidf_probabilities, tfidf_seconds = tfidf or tfidf_member(records, tensors, root / "tfidf_lr", log)
    members = {"bert_text": bert, "tfidf_lr": tfidf_probabilities}
    ensembles, chosen = ensemble_rows(members, tensors["val"].target_columns(), recipe)
    rows: dict[str, Split] = {BERT_ROW: bert, TFIDF_ROW: tfidf_probabilities, **ensembles}
    seconds = {
        BERT_ROW: bert_seconds,
        TFIDF_ROW: tfidf_seconds,
        RECIPE_ROW: time.perf_counter() - started + (tfidf_seconds if cached else 0.0),
    }
    return rows, chosen, seconds


def ensemble_rows(
    members: dict[str, Split],
    y_val: dict[str, np.ndarray],
    recipe: RecipeConfig,
    variants: dict[str, tuple] | None = None,
) -> tuple[dict[str, Split], dict[str, dict]]:
    """The ensembles' rows (one-hot votes on val and test), each searched on validation: the paper's
    majority vote, the recipe's rules, and ``variants`` (row -> rules); and what each chose per head."""
    val = {m: p["val"] for m, p in members.items()}
    selections = {VOTE_ROW: search_ensemble(val, y_val, objective=recipe.ensemble_objective)}
    for name, rules in {RECIPE_ROW: recipe.ensemble_rules, **(variants or {})}.items():
        selections[name] = search_combination(val, y_val, recipe.ensemble_objective, rules)
    rows = {
        name: {
            split: _one_hot(ensemble_predict({m: p[split] for m, p in members.items()}, selection)[0])
            for split in ("val", "test")
        }
        for name, selection in selections.items()
    }
    chosen = {
        name: {"members": _lists(s.task_members), "rules": dict(s.task_rules), "offsets": _lists(s.task_offsets)}
        for name, s in selections.items()
    }
    return rows, chosen


def _lists(groups: Mapping[str, tuple]) -> dict[str, list]:
    return {k: list(v) for k, v in groups.items()}


def _one_hot(labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Voted labels as one-hot rows (so they score through argmax like probabilities)."""
    from training.baselines import NUM_CLASSES

    return {head: np.eye(NUM_CLASSES[head], dtype=np.float32)[np.asarray(y)] for head, y in labels.items()}
