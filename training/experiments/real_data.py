"""Real memes beside honest baselines (issue 15): Memotion 1 and CM-Off-Meme, one fixed split each.

For every data set: a lenient load (memes that cannot be used are counted by reason), one seeded
train / validation / test split stratified by Task A with near-duplicates kept together, and
optionally a stratified cap on the training memes. Then per seed, on that split: majority class,
TF-IDF + logistic regression, CLIP-text, CLIP-image, four CLIP-multi variants (GB and PMR on and
off), the attention fusion head, PM+MO, a re-balanced CLIP-text, and majority-vote ensembles
searched on validation; everything is scored on test with macro F1 (SemEval-2020 Task 8) and
weighted F1 (Memotion 3). Writes ``real_data.json``, ``real_data.md`` and ``real_data.png``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from memotion.data_format import MemeRecord, load_split_checked
from memotion.labels import ALL_TASKS
from memotion.progress import progress_bar
from training.baselines import TfidfConfig, majority_probabilities, tfidf_lr_probabilities
from training.data.cm_off_meme import load_cm_off_meme
from training.data.real_sets import DATA_SETS, DataSetSpec
from training.data.splits import duplicate_groups, stratified_cap, stratified_split
from training.dataset import MemeTensors
from training.ensemble_search import ensemble_predict, search_ensemble
from training.experiments.real_data_models import ModelPlan, train_models
from training.real_scores import MEASURES, TASK_KEYS, score_predictions
from training.recipe import RecipeConfig, tiny_recipe
from training.trainer import predict_probabilities

RESULT_FILE = "real_data"


@dataclass(frozen=True)
class RealDataConfig:
    data_root: str = "../shared/data"
    datasets: tuple[str, ...] = ("memotion1", "cm-off-meme")
    seeds: tuple[int, ...] = (0, 1, 2)
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    max_train: int | None = None  # a stratified cap on training memes (None: all)
    plan: ModelPlan = field(default_factory=ModelPlan)
    recipe: RecipeConfig = field(default_factory=tiny_recipe)
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)
    threads: int | None = 1
    workers: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.datasets) - set(DATA_SETS)
        if unknown:
            raise ValueError(f"unknown data sets {sorted(unknown)}; choose from {sorted(DATA_SETS)}")


@dataclass
class SplitData:
    """One data set's records (as training records), its split and its load report."""

    spec: DataSetSpec
    records: list[MemeRecord]
    split: dict[str, np.ndarray]
    report: dict

    def records_of(self, split: str) -> list[MemeRecord]:
        return [self.records[i] for i in self.split[split]]


def load_data_set(config: RealDataConfig, name: str) -> SplitData:
    """Lenient load, grouped stratified split, stratified training cap (all deterministic)."""
    spec = DATA_SETS[name]
    path = Path(config.data_root) / spec.labels
    if spec.kind == "binary":
        binary, report = load_cm_off_meme(path)
        records = [r.as_training_record() for r in binary]
    else:
        records, report = load_split_checked(path)
    sentiment = np.array([r.sentiment for r in records])
    groups = duplicate_groups([r.text for r in records], [r.image_path for r in records])
    split = stratified_split(sentiment, groups, config.fractions, config.split_seed)
    uncapped = len(split["train"])
    split["train"] = stratified_cap(split["train"], sentiment, config.max_train, config.split_seed)
    info = {
        **report.to_json(),
        "report_lines": report.lines(),
        "near_duplicate_groups": int(len(groups) - len(np.unique(groups))),
        "split": {s: int(len(rows)) for s, rows in split.items()},
        "train_before_cap": int(uncapped),
        "task_a_counts": {s: np.bincount(sentiment[rows], minlength=3).tolist() for s, rows in split.items()},
    }
    return SplitData(spec, records, split, info)


def truth(records: list[MemeRecord]) -> dict[str, np.ndarray]:
    return {spec.name: np.array([getattr(r, spec.name) for r in records]) for spec in ALL_TASKS}


def baseline_probabilities(data: SplitData, config: RealDataConfig) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """name -> split (val, test) -> head -> probabilities, for the majority class and TF-IDF + LR."""
    records = {s: data.records_of(s) for s in ("train", "val", "test")}
    labels = {s: truth(r) for s, r in records.items()}
    majority = {s: majority_probabilities(labels["train"], len(records[s])) for s in ("val", "test")}
    tfidf, chosen = tfidf_lr_probabilities({s: [m.text for m in r] for s, r in records.items()}, labels, config.tfidf)
    data.report["tfidf_chosen"] = chosen
    return {"Majority class": majority, "TF-IDF + LR": tfidf}


def ensembles(models: list[str], baselines: list[str]) -> dict[str, tuple[str, ...]]:
    paper = tuple(m for m in ("CLIP-text", "CLIP-image", "CLIP-multi +GB") if m in models)
    out = {"Ensemble (text, image, multi +GB)": paper, "Ensemble (all models)": tuple(models)}
    if "TF-IDF + LR" in baselines:
        out["Ensemble (all models + TF-IDF)"] = (*models, "TF-IDF + LR")
    return {name: members for name, members in out.items() if members}


def run_job(config: RealDataConfig, name: str, seed: int, log: Callable[[str], None] = print) -> dict:
    """One (data set, seed): baselines, models, ensembles; per row test (and validation) scores."""
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        data = load_data_set(config, name)
        kind = data.spec.kind
        probabilities = baseline_probabilities(data, config)
        trained, tensors = train_models(
            {s: data.records_of(s) for s in ("train", "val", "test")},
            config.recipe,
            config.plan,
            seed,
            lambda line: log(f"[{name} seed {seed}] {line}"),
        )
        seconds = {n: round(r.seconds, 1) for n, r in trained.items()}
        if config.plan.offline:  # the offline recipe's members and ensemble (issue 23)
            from training.experiments.real_data_offline import offline_rows

            records = {s: data.records_of(s) for s in ("train", "val", "test")}
            rows_offline, _, offline_seconds = offline_rows(records, tensors, seed, log, config.plan.out_dir)
            probabilities.update(rows_offline)
            seconds.update({n: round(v, 1) for n, v in offline_seconds.items()})
        for model_name, result in trained.items():
            test: MemeTensors = tensors[result.test_tensors]
            probabilities[model_name] = {
                "val": result.result.val_probabilities,
                "test": predict_probabilities(result.result.model, result.result.kind, test),
            }
        y = {s: truth(data.records_of(s)) for s in ("val", "test")}
        rows = {
            n: {
                s: score_predictions(kind, y[s], {h: p.argmax(1) for h, p in probs[s].items()}) for s in ("val", "test")
            }
            for n, probs in probabilities.items()
        }
        shares = {n: _task_a_share(probs["test"]) for n, probs in probabilities.items()}
        selections = _ensemble_rows(kind, list(trained), probabilities, y, rows)
        log(f"[{name} seed {seed}] " + ", ".join(f"{n} {r['test']['macro']['task_a']:.3f}" for n, r in rows.items()))
        return {"rows": rows, "seconds": seconds, "task_a_share": shares, "selections": selections, "data": data.report}
    finally:
        torch.set_num_threads(threads)


def _ensemble_rows(kind: str, trained: list[str], probabilities: dict, y: dict, rows: dict) -> dict[str, object]:
    """Each ensemble's voters searched on validation, its val/test scores added to ``rows``; the voters."""
    selections = {}
    for ens_name, members in ensembles(trained, ["TF-IDF + LR"]).items():
        selection = search_ensemble({m: probabilities[m]["val"] for m in members}, y["val"])
        rows[ens_name] = {
            s: score_predictions(kind, y[s], ensemble_predict({m: probabilities[m][s] for m in members}, selection)[0])
            for s in ("val", "test")
        }
        selections[ens_name] = selection.to_json()["task_members"]
    return selections


def _task_a_share(probabilities: dict[str, np.ndarray]) -> list[float]:
    """How often each Task A class is predicted on test (a collapsed model predicts one class)."""
    predicted = probabilities["sentiment"].argmax(1)
    return (np.bincount(predicted, minlength=3) / max(1, len(predicted))).round(3).tolist()


def aggregate(per_seed: list[dict], kind: str) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """row -> measure -> task key -> {mean, std} over seeds (test split)."""
    table: dict = {}
    for name in per_seed[0]["rows"]:
        table[name] = {}
        for measure in MEASURES:
            table[name][measure] = {}
            for key in TASK_KEYS[kind]:
                values = np.array([seed["rows"][name]["test"][measure][key] for seed in per_seed])
                std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                table[name][measure][key] = {"mean": float(values.mean()), "std": std}
    return table


def run_experiment(
    out: Path, config: RealDataConfig, progress: bool = True, log: Callable[[str], None] = print
) -> dict:
    """Every data set and seed (``config.workers`` processes); write the JSON, table and PNG."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(name, seed) for name in config.datasets for seed in config.seeds]
    results: dict[tuple[str, int], dict] = {}
    bar = progress_bar(total=len(jobs), desc="real data", disable=not progress, unit="run")
    if config.workers == 1:
        for name, seed in jobs:
            results[name, seed] = run_job(config, name, seed, log)
            bar.update(1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_job, config, n, s, _flushed_print): (n, s) for n, s in jobs}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    bar.close()
    report: dict = {"config": _jsonable(asdict(config)), "datasets": {}}
    for name in config.datasets:
        per_seed = [results[name, seed] for seed in config.seeds]
        kind = DATA_SETS[name].kind
        report["datasets"][name] = {
            "kind": kind,
            "data": per_seed[0]["data"],
            "test": aggregate(per_seed, kind),
            "seconds": {m: float(np.mean([s["seconds"][m] for s in per_seed])) for m in per_seed[0]["seconds"]},
            "task_a_share": {m: per_seed[0]["task_a_share"][m] for m in per_seed[0]["task_a_share"]},
            "selections": [s["selections"] for s in per_seed],
            "per_seed": [s["rows"] for s in per_seed],
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report(out, report, config)
    return report


def _flushed_print(line: str) -> None:
    print(line, flush=True)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def write_report(out: Path, report: dict, config: RealDataConfig) -> None:
    from training.experiments.real_data_report import markdown, plot_scores

    (out / f"{RESULT_FILE}.json").write_text(json.dumps(_jsonable(report), indent=2))
    (out / f"{RESULT_FILE}.md").write_text(markdown(report, config))
    plot_scores(report, out / f"{RESULT_FILE}.png")
