"""Task A candidates for the offline recipe (issue 23), scored out-of-fold on the TRAINING memes only
(the test split is never read): 5 stratified folds of the real-data split's train rows; each fold's
regressions are fitted on the other four folds and, as ``memotion train`` does, their C and class
weighting chosen on the validation split by macro F1; the held-out fold's probabilities are kept.

    python bench/offline_task_a_oof.py --out OUT [--datasets memotion1 cm-off-meme]

Rows: the TF-IDF + LR baseline's features, the word member, the word member with sentiment-lexicon
features (training/sentiment_lexicon.py) at a few scales, NB-LR (training/nb_lr.py, Wang & Manning
2012: binary word n-grams scaled by the log-count ratio), the character member, and equal means of
each with the character member, and of word, NB-LR and character members (``--only`` picks rows by
name); word and character rows in one regression. ``--fine``: the three members fitted on Memotion
1's five sentiment levels (``overall_sentiment_5``), their probabilities summed into three.
``--combine``: nested (fitted on four folds' out-of-fold probabilities, scored on the fifth) per-class
offsets and stackers over the three's mean; ``--cross-head``: stackers that also read the other
heads' out-of-fold probabilities. ``--reuse DIR``: rows' probabilities from an earlier ``--out``.
Prints a table of Task A macro / weighted F1 (out-of-fold) and writes OUT/task_a_oof.json and
each row's out-of-fold probabilities (OUT/<data set>-<row>.npz).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memotion.labels import parse_label
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
OTHER_HEADS_POINT = (1.0, "balanced")  # the other heads' regressions, for the cross-head rows (one grid point)
FINE_COLUMN = "overall_sentiment_5"
FINE_LEVELS = ("very_negative", "negative", "neutral", "positive", "very_positive")
FINE_TO_TASK_A = np.eye(3)[[parse_label(HEAD, level) for level in FINE_LEVELS]]  # [5, 3]: memotion.labels' folding
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


def joined_features(*configs: TfidfConfig) -> tuple[Features, bool]:
    """The members' TF-IDF rows side by side (each L2-normalised), for one regression over all of them."""
    from scipy import sparse

    def make(fit: list[str], others: list[list[str]]) -> list:
        parts = [tfidf_features(config)[0](fit, others) for config in configs]
        return [sparse.hstack(mats).tocsr() for mats in zip(*parts)]

    return make, False


def fit_predict(train, y: np.ndarray, x_list: list, c: float, weight, nb: bool) -> list[np.ndarray]:
    """Probabilities on each of ``x_list`` from a head fitted on (train, y) as the members fit it:
    multinomial, or NB-LR (training/nb_lr.py) when ``nb``."""
    model = fit_head(nb, c, weight, 2000, train, y)
    return [model.predict_proba(x) for x in x_list]


def oof(
    make: Features,
    nb: bool,
    texts: list[str],
    y: np.ndarray,
    val_texts: list[str],
    y_val: np.ndarray,
    folds,
    collapse: np.ndarray | None = None,
) -> dict:
    """Out-of-fold probabilities with C / class weight chosen on val per fold ('chosen'), and per grid point.
    ``collapse`` [fine classes, classes]: ``y`` holds fine labels, whose probabilities are summed into
    ``y_val``'s classes (``p @ collapse``) before the choice and in the output."""
    merge = (lambda p: p) if collapse is None else (lambda p: p @ collapse)
    chosen = np.zeros((len(texts), 3))
    per_grid = {g: np.zeros((len(texts), 3)) for g in GRID}
    for fit_rows, held in folds:
        fit = [texts[i] for i in fit_rows]
        mats = make(fit, [val_texts, [texts[i] for i in held]])
        best = (-1.0, None)
        for c, w in GRID:
            val_p, held_p = map(merge, fit_predict(mats[0], y[fit_rows], mats[1:], c, w, nb))
            per_grid[(c, w)][held] = held_p
            score = macro_f1(y_val, val_p.argmax(1), 3)
            if score > best[0]:
                best = (score, held_p)
        chosen[held] = best[1]
    return {"chosen": chosen, "grid": per_grid}


def fine_labels(labels_file: Path, ids: list[str]) -> np.ndarray | None:
    """Memotion 1's five-level overall sentiment (FINE_LEVELS index) per meme id, or None where the
    labels file does not give one for every id (CM-Off-Meme)."""
    import csv

    with labels_file.open(newline="", encoding="utf-8") as handle:
        level = {row["id"]: row.get(FINE_COLUMN) or "" for row in csv.DictReader(handle)}
    values = [level.get(i, "") for i in ids]
    if not all(v in FINE_LEVELS for v in values):
        return None
    return np.array([FINE_LEVELS.index(v) for v in values])


def other_heads_oof(texts: list[str], labels: dict[str, np.ndarray], folds) -> np.ndarray:
    """Out-of-fold probabilities of the other heads (those with 2+ classes in training), each the mean of
    the word and character members' regressions at OTHER_HEADS_POINT, side by side [N, sum of classes]."""
    kept = {h: y for h, y in labels.items() if h != HEAD and len(np.unique(y)) > 1}
    out = {h: np.zeros((len(texts), int(y.max()) + 1)) for h, y in kept.items()}
    c, weight = OTHER_HEADS_POINT
    for config in (MEMBER_TFIDF, CHAR_TFIDF):
        make, _ = tfidf_features(config)
        for fit_rows, held in folds:
            fit_x, held_x = make([texts[i] for i in fit_rows], [[texts[i] for i in held]])
            for head, y in kept.items():
                out[head][held] += fit_head(False, c, weight, 2000, fit_x, y[fit_rows]).predict_proba(held_x) / 2
    return np.hstack(list(out.values()))


def nested_stacker(features: np.ndarray, y: np.ndarray, folds, balanced: bool) -> np.ndarray:
    """Labels from a multinomial LR stacker (C = 1) fitted on the other folds' rows, per held-out fold."""
    from sklearn.linear_model import LogisticRegression

    out = np.zeros(len(y), dtype=np.int64)
    for fit_rows, held in folds:
        model = LogisticRegression(C=1.0, class_weight="balanced" if balanced else None, max_iter=2000)
        out[held] = model.fit(features[fit_rows], y[fit_rows]).predict(features[held])
    return out


def nested_offsets(log_p: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
    """Labels after per-class offsets (training/calibration.fit_offsets, macro F1) fitted on the other folds."""
    from memotion.voting import decide
    from training.calibration import fit_offsets

    out = np.zeros(len(y), dtype=np.int64)
    for fit_rows, held in folds:
        out[held] = decide(log_p[held], fit_offsets(log_p[fit_rows], y[fit_rows], 3, "macro_f1"))
    return out


def combined_rows(mean3: np.ndarray, others: np.ndarray | None, y: np.ndarray, folds) -> dict:
    """Nested rows over the three members' mean: offsets, stackers over its log-probabilities, alone
    and beside the other heads' out-of-fold probabilities (cross-head information)."""
    log_p = np.log(np.clip(mean3, 1e-12, None))
    rows = {"mean3 + offsets (nested)": nested_offsets(log_p, y, folds)}
    sets = {"": log_p} if others is None else {"": log_p, " + other heads": np.hstack([log_p, others])}
    for suffix, features in sets.items():
        for balanced in (False, True):
            name = f"stacker(log mean3{suffix}{', balanced' if balanced else ''}) (nested)"
            rows[name] = nested_stacker(features, y, folds, balanced)
            if not balanced:
                rows[name.replace(") (", ") + offsets (")] = nested_offsets(
                    np.log(np.clip(stacker_proba(features, y, folds), 1e-12, None)), y, folds
                )
    return {row: scores_of_labels(y, labels) for row, labels in rows.items()}


def stacker_proba(features: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
    """Probabilities of the (unweighted) stacker fitted on the other folds, per held-out fold."""
    from sklearn.linear_model import LogisticRegression

    out = np.zeros((len(y), 3))
    for fit_rows, held in folds:
        out[held] = (
            LogisticRegression(C=1.0, max_iter=2000).fit(features[fit_rows], y[fit_rows]).predict_proba(features[held])
        )
    return out


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
    rows["word + char features, one regression"] = joined_features(MEMBER_TFIDF, CHAR_TFIDF)
    return rows


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return scores_of_labels(y, p.argmax(1))


def scores_of_labels(y: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {measure: round(value, 4) for measure, value in f1_both(y, labels, 3).items()}


THREE = ("word member", "NB-LR word 1-2", "char member")


def member_row(fitted: Callable[[], dict], out_file: Path, reuse: Path | None) -> dict:
    """A row's out-of-fold result: read from ``reuse`` (a previous run's npz of the same name) or fitted."""
    if reuse is not None and (reuse / out_file.name).exists():
        return {"chosen": np.load(reuse / out_file.name)["chosen"], "grid": {}}
    started = time.perf_counter()
    result = fitted()
    np.savez(out_file, chosen=result["chosen"], **{f"C={c} {w}": p for (c, w), p in result["grid"].items()})
    return {**result, "seconds": round(time.perf_counter() - started)}


def run(name: str, args: argparse.Namespace) -> dict:
    from sklearn.model_selection import StratifiedKFold

    data = load_data_set(RealDataConfig(data_root=str(shared_data_root())), name)
    train, val = data.records_of("train"), data.records_of("val")
    texts, val_texts = [fold_whitespace(r.text) for r in train], [fold_whitespace(r.text) for r in val]
    y, y_val = truth(train)[HEAD], truth(val)[HEAD]
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(texts, y))
    fine = fine_labels(shared_data_root() / DATA_SETS[name].labels, [r.id for r in train])
    rows = {row: (make, nb, None) for row, (make, nb) in candidates().items()}
    if fine is not None and args.fine:
        assert (FINE_TO_TASK_A[fine].argmax(1) == y).all(), "five levels fold onto the Task A labels"
        rows |= {f"{row}, 5 levels": (*rows[row][:2], fine) for row in THREE}
    probs, out = {}, {}
    for row, (make, nb, fine_y) in rows.items():
        if args.only and not any(o in row for o in args.only):
            continue
        collapse = None if fine_y is None else FINE_TO_TASK_A
        target = y if fine_y is None else fine_y
        fitted = functools.partial(oof, make, nb, texts, target, val_texts, y_val, folds, collapse)
        result = member_row(fitted, args.out / f"{name}-{row.replace(' ', '_')}.npz", args.reuse)
        probs[row] = result["chosen"]
        grid = {f"C={c} {w}": scores(y, p)["macro"] for (c, w), p in result["grid"].items()}
        out[row] = {**scores(y, result["chosen"]), "grid_macro": grid, "seconds": result.get("seconds")}
        print(f"[{name}] {row}: {out[row]}", flush=True)
    out |= mean_rows(probs, y)
    if all(row in probs for row in THREE) and args.combine:
        others = other_heads_oof(texts, truth(train), folds) if args.cross_head else None
        out |= combined_rows(sum(probs[row] for row in THREE) / 3, others, y, folds)
    for row, s in out.items():
        print(f"[{name}] {row}: {s['macro']} / {s['weighted']}", flush=True)
    return out


def mean_rows(probs: dict[str, np.ndarray], y: np.ndarray) -> dict:
    """Equal means: of the three members (and of their five-level versions), and of each row with the
    character member."""
    out = {}
    for suffix in ("", ", 5 levels"):
        if all(row + suffix in probs for row in THREE):
            out[f"mean({', '.join(THREE)}){suffix}"] = scores(y, sum(probs[row + suffix] for row in THREE) / 3)
    for row in list(probs):
        for other in ("char member", "char + vader+afinn x0.3"):
            if other in probs and not row.startswith("char") and "5 levels" not in row:
                out[f"mean({row}, {other})"] = scores(y, (probs[row] + probs[other]) / 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", default=list(DATA_SETS), choices=list(DATA_SETS))
    parser.add_argument("--only", nargs="*", help="rows whose name contains one of these")
    parser.add_argument("--fine", action="store_true", help="also the three members fitted on five sentiment levels")
    parser.add_argument("--combine", action="store_true", help="nested offsets and stackers over the three's mean")
    parser.add_argument("--cross-head", action="store_true", help="with --combine: stackers with the other heads")
    parser.add_argument("--reuse", type=Path, help="read rows' out-of-fold probabilities from this earlier --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {name: run(name, args) for name in args.datasets}
    (args.out / "task_a_oof.json").write_text(json.dumps(report, indent=2))
    for name, rows in report.items():
        print(f"\n{name}: Task A out-of-fold on the training memes\n| row | macro | weighted |\n|---|---|---|")
        for row, s in rows.items():
            print(f"| {row} | {s['macro']:.3f} | {s['weighted']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
