"""The offline recipe's rows of the real-data experiment (issue 23): its members fitted as
``memotion train --recipe offline`` fits them, on the experiment's split, and its ensemble.

Rows: one per member (``MEMBER_ROWS``: the TF-IDF graphs' probabilities as served, MiniLM-text when
the recipe has ``bert_text``), ``Offline (majority vote)`` (the paper's rule, subsets searched on
validation) and ``Offline recipe`` (the recipe's ensemble: every member, equal-weight mean
probability; or, for a recipe with ``ensemble_search``, per head the rule chosen on validation).
Everything is scored on the experiment's test split.
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
from training.ensemble_search import EnsembleSelection, ensemble_predict, search_ensemble
from training.factory import KindData
from training.recipe import RecipeConfig, offline_recipe, plain_selection
from training.trainer import predict_probabilities, train_model

MEMBER_ROWS = {
    "tfidf_lr": "TF-IDF word (ONNX)",
    "tfidf_char": "TF-IDF char (ONNX)",
    "tfidf_nb": "NB-LR word (ONNX)",
    "bert_text": "MiniLM-text",
}
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
    log(f"{MEMBER_ROWS['bert_text']}: {result.seconds:.0f} s, best epoch {result.best_epoch}")
    return {"val": result.val_probabilities, "test": test}, result.seconds


def tfidf_member(
    kind: str, records: dict[str, list[MemeRecord]], recipe: RecipeConfig, out_dir: Path, log: Callable[[str], None]
) -> tuple[Split, float]:
    """A TF-IDF member (``tfidf_lr`` or ``tfidf_char``, the recipe's options) fitted, exported to
    ONNX (parity checked); the graph's probabilities."""
    from training.experiments.real_data import truth
    from training.tfidf_member import KIND_CONFIGS, OnnxTextMember, fit_tfidf_member

    texts = {split: [r.text for r in rows] for split, rows in records.items()}
    labels = {split: truth(rows) for split, rows in records.items()}
    config = getattr(recipe, KIND_CONFIGS[kind][0])
    fit = {s: texts[s] for s in ("train", "val")}
    _, val, seconds = fit_tfidf_member(fit, {s: labels[s] for s in fit}, out_dir, config, log, kind)
    test = OnnxTextMember(out_dir / "model.onnx").probabilities(texts["test"])
    return {"val": val, "test": test}, seconds


def fit_members(
    records: dict[str, list[MemeRecord]],
    tensors: dict[str, MemeTensors] | None,
    recipe: RecipeConfig,
    root: Path,
    log: Callable[[str], None],
) -> tuple[dict[str, Split], dict[str, float]]:
    """Each of the recipe's members (kind -> split -> head -> probabilities) and its seconds."""
    members, seconds = {}, {}
    for kind in recipe.models:
        if kind == "bert_text":
            if tensors is None:
                raise ValueError(
                    "bert_text needs the shared tensors (training.experiments.real_data_models.make_tensors)"
                )
            members[kind], seconds[kind] = bert_member(records, tensors, recipe, root / kind, log)
        else:
            members[kind], seconds[kind] = tfidf_member(kind, records, recipe, root / kind, log)
    return members, seconds


def offline_rows(
    records: dict[str, list[MemeRecord]],
    tensors: dict[str, MemeTensors] | None,
    seed: int,
    log: Callable[[str], None],
    out_dir: str | None = None,
    recipe: RecipeConfig | None = None,
    variants: dict[str, tuple] | None = None,
) -> tuple[dict[str, Split], dict[str, dict], dict[str, float]]:
    """(row -> split -> head -> predictions as probabilities or one-hot, ensembles' choices, seconds).
    ``tensors``: the shared tensors, needed only by ``bert_text``; ``variants``: ``ensemble_rows``'."""
    from training.experiments.real_data import truth

    recipe = recipe or offline_recipe(seed=seed)
    recipe = replace(recipe, train=replace(recipe.train, seed=seed))
    root = Path(out_dir or tempfile.mkdtemp(prefix="offline_")) / f"seed{seed}"
    started = time.perf_counter()
    members, member_seconds = fit_members(records, tensors, recipe, root, log)
    ensembles, chosen = ensemble_rows(members, truth(records["val"]), recipe, variants)
    rows: dict[str, Split] = {MEMBER_ROWS[kind]: split for kind, split in members.items()}
    rows.update(ensembles)
    seconds = {MEMBER_ROWS[kind]: s for kind, s in member_seconds.items()}
    seconds[RECIPE_ROW] = time.perf_counter() - started
    return rows, chosen, seconds


def recipe_selection(val: dict[str, Split], y_val: dict[str, np.ndarray], recipe: RecipeConfig) -> EnsembleSelection:
    """The recipe's ensemble as ``memotion train`` fits it (training/recipe.py ``ensemble_summary``)."""
    if not recipe.ensemble_search:
        return plain_selection(list(val), recipe.task_b, recipe.ensemble_rules, recipe.member_heads)
    return search_combination(val, y_val, recipe.ensemble_objective, recipe.ensemble_rules)


def ensemble_rows(
    members: dict[str, Split],
    y_val: dict[str, np.ndarray],
    recipe: RecipeConfig,
    variants: dict[str, tuple] | None = None,
) -> tuple[dict[str, Split], dict[str, dict]]:
    """The ensembles' rows (one-hot votes on val and test): the paper's majority vote searched on
    validation, the recipe's ensemble, and ``variants`` (row -> rules searched per head on
    validation); and what each chose per head."""
    val = {m: p["val"] for m, p in members.items()}
    selections = {
        VOTE_ROW: search_ensemble(val, y_val, objective=recipe.ensemble_objective),
        RECIPE_ROW: recipe_selection(val, y_val, recipe),
    }
    for name, rules in (variants or {}).items():
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
