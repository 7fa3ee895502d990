"""Task A candidates for the offline recipe (issue 23), scored out-of-fold on the TRAINING memes only
(the test split is never read): 5 stratified folds of the real-data split's train rows; each fold's
regressions are fitted on the other four folds and, as ``memotion train`` does, their C and class
weighting chosen on the validation split by macro F1; the held-out fold's probabilities are kept.

    python bench/offline_task_a_oof.py --out OUT [--datasets memotion1 cm-off-meme]

Rows: the TF-IDF + LR baseline's features, the word member, the word member with sentiment-lexicon
features (training/sentiment_lexicon.py) at a few scales, NB-LR (training/nb_lr.py, Wang & Manning
2012: binary word n-grams scaled by the log-count ratio), the character member, and equal means of
each with the character member, and of word, NB-LR and character members (``--only`` picks rows by
name). Prints a table of Task A macro / weighted F1 (out-of-fold) and writes OUT/task_a_oof.json and
each row's out-of-fold probabilities (OUT/<data set>-<row>.npz).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memotion.raw_text import fold_whitespace
from training.baselines import TfidfConfig, fit_head, tfidf_vectoriser
from training.data.real_sets import DATA_SETS
from training.experiments.real_data import RealDataConfig, load_data_set, truth
from training.experiments.real_data_cli import shared_data_root
from training.metrics import macro_f1
from training.real_scores import f1_both
from training.sentiment_lexicon import lexicon_features, load_lexicon
from training.tfidf_member import CHAR_TFIDF, MEMBER_TFIDF, NB_TFIDF

HEAD = "sentiment"
FOLDS = 5
GRID = [(c, w) for c in (0.3, 1.0, 3.0, 10.0) for w in (None, "balanced")]
Features = Callable[[list[str], list[list[str]]], list]  # (fit texts, other texts) -> matrices


def tfidf_features(config: TfidfConfig, lexicons: tuple[str, ...] = (), scale: float = 1.0) -> tuple[Features, bool]:
    """The member's TF-IDF rows (training/baselines.py), with the lexicons' features beside them, and
    whether the member fits Task A by NB-LR (``config.nb_heads``)."""
    from scipy import sparse

    loaded = [load_lexicon(n) for n in lexicons]

    def make(fit: list[str], others: list[list[str]]) -> list:
        vectoriser = tfidf_vectoriser(config)
        mats = [vectoriser.fit_transform(fit)] + [vectoriser.transform(o) for o in others]
        if not loaded:
            return mats
        texts = [fit, *others]
        return [sparse.hstack([m, lexicon_features(t, loaded, scale)]).tocsr() for m, t in zip(mats, texts)]

    return make, HEAD in config.nb_heads


def fit_predict(train, y: np.ndarray, x_list: list, c: float, weight, nb: bool) -> list[np.ndarray]:
    """Probabilities on each of ``x_list`` from a head fitted on (train, y) as the members fit it:
    multinomial, or NB-LR (training/nb_lr.py) when ``nb``."""
    model = fit_head(nb, c, weight, 2000, train, y)
    return [model.predict_proba(x) for x in x_list]


def oof(
    make: Features, nb: bool, texts: list[str], y: np.ndarray, val_texts: list[str], y_val: np.ndarray, folds
) -> dict:
    """Out-of-fold probabilities with C / class weight chosen on val per fold ('chosen'), and per grid point."""
    chosen = np.zeros((len(texts), 3))
    per_grid = {g: np.zeros((len(texts), 3)) for g in GRID}
    for fit_rows, held in folds:
        fit = [texts[i] for i in fit_rows]
        mats = make(fit, [val_texts, [texts[i] for i in held]])
        best = (-1.0, None)
        for c, w in GRID:
            val_p, held_p = fit_predict(mats[0], y[fit_rows], mats[1:], c, w, nb)
            per_grid[(c, w)][held] = held_p
            score = macro_f1(y_val, val_p.argmax(1), 3)
            if score > best[0]:
                best = (score, held_p)
        chosen[held] = best[1]
    return {"chosen": chosen, "grid": per_grid}


def candidates() -> dict[str, tuple[Features, bool]]:
    baseline = TfidfConfig()
    rows: dict[str, tuple[Features, bool]] = {
        "TF-IDF + LR (baseline features)": tfidf_features(baseline),
        "word member": tfidf_features(MEMBER_TFIDF),
        "char member": tfidf_features(CHAR_TFIDF),
        "NB-LR word 1-2": tfidf_features(NB_TFIDF),
    }
    for lexicons in (("vader",), ("afinn",), ("vader", "afinn")):
        for scale in (0.3, 1.0):
            rows[f"word + {'+'.join(lexicons)} x{scale}"] = tfidf_features(MEMBER_TFIDF, lexicons, scale)
    rows["char + vader+afinn x0.3"] = tfidf_features(CHAR_TFIDF, ("vader", "afinn"), 0.3)
    return rows


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {measure: round(value, 4) for measure, value in f1_both(y, p.argmax(1), 3).items()}


def run(name: str, only: list[str] | None, out_dir: Path) -> dict:
    from sklearn.model_selection import StratifiedKFold

    data = load_data_set(RealDataConfig(data_root=str(shared_data_root())), name)
    train, val = data.records_of("train"), data.records_of("val")
    texts = [fold_whitespace(r.text) for r in train]
    val_texts = [fold_whitespace(r.text) for r in val]
    y, y_val = truth(train)[HEAD], truth(val)[HEAD]
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(texts, y))
    probs, out = {}, {}
    for row, (make, nb) in candidates().items():
        if only and not any(o in row for o in only):
            continue
        started = time.perf_counter()
        result = oof(make, nb, texts, y, val_texts, y_val, folds)
        probs[row] = result["chosen"]
        np.savez(
            out_dir / f"{name}-{row.replace(' ', '_')}.npz",
            chosen=result["chosen"],
            **{f"C={c} {w}": p for (c, w), p in result["grid"].items()},
        )
        grid = {f"C={c} {w}": scores(y, p)["macro"] for (c, w), p in result["grid"].items()}
        out[row] = {**scores(y, result["chosen"]), "grid_macro": grid, "seconds": round(time.perf_counter() - started)}
        print(f"[{name}] {row}: {out[row]}", flush=True)
    three = ("word member", "NB-LR word 1-2", "char member")
    if all(row in probs for row in three):
        out[f"mean({', '.join(three)})"] = scores(y, sum(probs[row] for row in three) / 3)
    for row in list(probs):
        for other in ("char member", "char + vader+afinn x0.3"):
            if other in probs and not row.startswith("char"):
                out[f"mean({row}, {other})"] = scores(y, (probs[row] + probs[other]) / 2)
                print(f"[{name}] mean({row}, {other}): {out[f'mean({row}, {other})']}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", default=list(DATA_SETS), choices=list(DATA_SETS))
    parser.add_argument("--only", nargs="*", help="rows whose name contains one of these")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {name: run(name, args.only, args.out) for name in args.datasets}
    (args.out / "task_a_oof.json").write_text(json.dumps(report, indent=2))
    for name, rows in report.items():
        print(f"\n{name}: Task A out-of-fold on the training memes\n| row | macro | weighted |\n|---|---|---|")
        for row, s in rows.items():
            print(f"| {row} | {s['macro']:.3f} | {s['weighted']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
