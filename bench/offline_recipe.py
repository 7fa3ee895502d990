"""The offline recipe on real memes (issue 23): its members and ensemble beside TF-IDF + LR, on the
real-data experiment's fixed split (training/experiments/real_data.py), per seed.

    python bench/offline_recipe.py --out OUT [--datasets memotion1 cm-off-meme] [--seeds 3]
    python bench/offline_recipe.py --out OUT --rescore RUN1 RUN2   # refit the ensembles only, merge runs

Per data set the baselines are fitted once; per seed the recipe's members are fitted as
``memotion train --recipe offline`` fits them (the TF-IDF members have no random state: every seed
gives the same rows; ``--models`` adds ``bert_text``, which does depend on the seed). Writes
OUT/offline_recipe.json after every (data set, seed), OUT/offline_recipe.md (mean +- std over the
seeds done), OUT/offline_recipe.png (macro F1 per row) and prints the table. Scores: test macro and
weighted F1 (training/real_scores.py). The members' validation and test probabilities are saved
(OUT/members/) so that ``--rescore`` can refit the combination (and its ablations, ``VARIANTS``)
without training again.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data.real_sets import DATA_SETS
from training.ensemble_combination import RULE_CHOICES
from training.experiments.real_data import RealDataConfig, baseline_probabilities, load_data_set, truth
from training.experiments.real_data_cli import shared_data_root
from training.experiments.real_data_models import make_tensors
from training.experiments.real_data_offline import MEMBER_ROWS, ensemble_rows, offline_rows
from training.real_scores import MEASURES, TASK_KEYS, score_predictions
from training.recipe import RecipeConfig, offline_recipe


def run_data_set(
    name: str, seeds: range, out: Path, report: dict, max_train: int | None = None, recipe: RecipeConfig | None = None
) -> None:
    config = RealDataConfig(data_root=str(shared_data_root()), max_train=max_train)
    data = load_data_set(config, name)
    kind = data.spec.kind
    records = {s: data.records_of(s) for s in ("train", "val", "test")}
    y = {s: truth(records[s]) for s in ("val", "test")}
    started = time.perf_counter()
    baselines = baseline_probabilities(data, config)
    baseline_seconds = time.perf_counter() - started
    recipe = recipe or offline_recipe()
    tensors = make_tensors(records, recipe) if "bert_text" in recipe.models else None
    entry = report.setdefault(name, {"kind": kind, "split": data.report["split"], "per_seed": []})
    entry["baseline_seconds"] = round(baseline_seconds, 1)
    for seed in seeds:
        rows, chosen, seconds = offline_rows(
            records,
            tensors,
            seed,
            lambda line, seed=seed: print(f"[{name} seed {seed}] {line}", flush=True),
            str(out / "runs" / name),
            recipe,
            VARIANTS,
        )
        predictions = {**baselines, **rows}
        save_members(out / "members" / f"{name}-seed{seed}.pkl", rows, y["val"], y["test"])
        scores = {
            row: score_predictions(kind, y["test"], {h: p.argmax(1) for h, p in probs["test"].items()})
            for row, probs in predictions.items()
        }
        entry["per_seed"].append({"seed": seed, "test": scores, "chosen": chosen, "seconds": seconds})
        (out / "offline_recipe.json").write_text(json.dumps(report, indent=2))
        print(table(report), flush=True)


def save_members(path: Path, rows: dict, y_val: dict, y_test: dict) -> None:
    """The members' validation and test probabilities and the truth, so the combination can be
    refitted without retraining (``--rescore``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    members = {row: rows[row] for row in MEMBER_ROWS.values() if row in rows}
    path.write_bytes(pickle.dumps({"members": members, "y_val": y_val, "y_test": y_test}))


PLAIN_RULES = ("majority_vote", "mean_probability", "weighted_mean")
VARIANTS = {  # ablations of the combination, refitted on the same members' validation probabilities
    "rule per head searched on val": PLAIN_RULES,
    "rule per head + calibration (val)": RULE_CHOICES,
}


def rescore(dirs: list[Path], out: Path) -> dict:
    """Every (data set, seed) of ``dirs``' reports with the ensembles refitted by the current code
    from the saved member probabilities (members and baselines as they were measured)."""
    merged: dict = {}
    recipe = offline_recipe()
    for folder in dirs:
        for name, entry in json.loads((folder / "offline_recipe.json").read_text()).items():
            target = merged.setdefault(name, {**entry, "per_seed": []})
            for done in entry["per_seed"]:
                saved = pickle.loads((folder / "members" / f"{name}-seed{done['seed']}.pkl").read_bytes())
                members = {kind: saved["members"][row] for kind, row in MEMBER_ROWS.items() if row in saved["members"]}
                rows, chosen = ensemble_rows(members, saved["y_val"], recipe, VARIANTS)
                test = {
                    row: score_predictions(
                        entry["kind"], saved["y_test"], {h: p.argmax(1) for h, p in r["test"].items()}
                    )
                    for row, r in rows.items()
                }
                target["per_seed"].append({**done, "test": {**done["test"], **test}, "chosen": chosen})
    (out / "offline_recipe.json").write_text(json.dumps(merged, indent=2))
    return merged


def plot(report: dict, path: Path) -> Path:
    """OUT/offline_recipe.png: test macro F1 (mean +- std over the seeds) per row, as the real-data plot."""
    from training.experiments.real_data_report import plot_scores

    summary: dict = {"datasets": {}}
    for name, entry in report.items():
        seeds, keys = entry["per_seed"], TASK_KEYS[entry["kind"]]
        summary["datasets"][name] = {
            "kind": entry["kind"],
            "test": {
                row: {"macro": {k: _mean_std([s["test"][row]["macro"][k] for s in seeds]) for k in keys}}
                for row in seeds[0]["test"]
            },
        }
    return plot_scores(summary, path)


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def table(report: dict) -> str:
    lines = []
    for name, entry in report.items():
        keys = TASK_KEYS[entry["kind"]]
        seeds = entry["per_seed"]
        lines += [
            f"\n{name} (test {entry['split']['test']} memes, {len(seeds)} seed(s); mean +- std)\n",
            "| row | " + " | ".join(f"{m} {k}" for m in MEASURES for k in keys) + " |",
            "|---|" + "---|" * (len(MEASURES) * len(keys)),
        ]
        for row in seeds[0]["test"]:
            cells = []
            for measure in MEASURES:
                for key in keys:
                    values = np.array([s["test"][row][measure][key] for s in seeds])
                    std = values.std(ddof=1) if len(values) > 1 else 0.0
                    cells.append(f"{values.mean():.3f} +- {std:.3f}")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        mean_seconds = {k: np.mean([s["seconds"][k] for s in seeds]) for k in seeds[0]["seconds"]}
        lines.append("\nseconds (mean per seed): " + ", ".join(f"{k} {v:.0f}" for k, v in mean_seconds.items()))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--rescore", type=Path, nargs="+", help="refit the ensembles of these earlier --out folders (no training)"
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATA_SETS), choices=list(DATA_SETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+N-1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=0, help="stratified cap on training memes (0: all)")
    parser.add_argument("--models", help="the recipe's members, comma-separated (default: the offline recipe's)")
    parser.add_argument(
        "--paper-task-a", action="store_true", help="variant: MiniLM-text's Task A CE unweighted (the paper's)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.rescore:
        merged = rescore(args.rescore, args.out)
        (args.out / "offline_recipe.md").write_text(table(merged) + "\n")
        plot(merged, args.out / "offline_recipe.png")
        print(table(merged))
        return 0
    report: dict = {}
    for name in args.datasets:
        recipe = offline_recipe()
        if args.models:
            recipe = replace(recipe, models=tuple(args.models.split(",")))
        if args.paper_task_a:
            recipe = replace(recipe, train=replace(recipe.train, task_a_balanced=False))
        run_data_set(
            name, range(args.first_seed, args.first_seed + args.seeds), args.out, report, args.max_train or None, recipe
        )
    (args.out / "offline_recipe.md").write_text(table(report) + "\n")
    plot(report, args.out / "offline_recipe.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
