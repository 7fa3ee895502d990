"""Why CLIP-multi collapses on real memes, and what each re-balancing part of CLIP-text does (issue 15,
part 3). On the real-data experiment's split of one set, per seed: CLIP-text and CLIP-image as in the
experiment, then CLIP-multi from them with the experiment's recipe (lr 1e-3, 1 epoch), with a 10x
lower learning rate (1 and 3 epochs) and with residual connections in its attention blocks;
CLIP-text with Task A over-sampling only and with the class-balanced focal alpha only. Prints a
table (test macro / weighted F1) and writes JSON.

    python bench/real_data_ablation.py --datasets cm-off-meme --seeds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.backbone import create_clip  # noqa: E402
from training.experiments.real_data import RealDataConfig, load_data_set, truth  # noqa: E402
from training.experiments.real_data_cli import shared_data_root  # noqa: E402
from training.experiments.real_data_models import make_tensors  # noqa: E402
from training.factory import build_multi, build_unimodal  # noqa: E402
from training.real_scores import MEASURES, TASK_KEYS, score_predictions  # noqa: E402
from training.sampling import balanced_indices  # noqa: E402
from training.trainer import predict_probabilities, train_model  # noqa: E402


def variants(base, epochs: int, model) -> dict[str, tuple[str, object, bool, object]]:
    """name -> (kind, train config, over-sample Task A, model config)."""
    low = base.lr / 10
    residual = replace(model, residual=True)
    return {
        "CLIP-text": ("clip_text", replace(base, epochs=epochs), False, model),
        "CLIP-text +over-sampling": ("clip_text", replace(base, epochs=epochs), True, model),
        "CLIP-text +focal alpha": ("clip_text", replace(base, epochs=epochs, focal_alpha=True), False, model),
        "CLIP-image": ("clip_image", replace(base, epochs=epochs), False, model),
        f"CLIP-multi lr {base.lr:g}, 1 epoch": ("clip_multi", replace(base, epochs=1), False, model),
        f"CLIP-multi lr {low:g}, 1 epoch": ("clip_multi", replace(base, epochs=1, lr=low), False, model),
        f"CLIP-multi lr {low:g}, 3 epochs": ("clip_multi", replace(base, epochs=3, lr=low), False, model),
        # Six attention blocks without residual connections average every token into one vector
        # (rank collapse); with residual + LayerNorm the fused tokens keep the meme's own features.
        f"CLIP-multi +residual lr {base.lr:g}, 1 epoch": ("clip_multi", replace(base, epochs=1), False, residual),
        f"CLIP-multi +residual lr {low:g}, 3 epochs": ("clip_multi", replace(base, epochs=3, lr=low), False, residual),
    }


def run_seed(config: RealDataConfig, name: str, seed: int, epochs: int, out: Path) -> dict:
    data = load_data_set(config, name)
    records = {s: data.records_of(s) for s in ("train", "val", "test")}
    tensors = make_tensors(records, config.recipe)
    y_test = truth(records["test"])
    recipe = config.recipe
    base = replace(recipe.train, seed=seed, gb_mode="off", pmr=replace(recipe.train.pmr, enabled=False))
    trained, rows = {}, {}
    for row, (kind, train_config, oversample, model_config) in variants(base, epochs, recipe.model).items():
        torch.manual_seed(seed)
        train = tensors["train"]
        if oversample:
            train = train.subset(torch.from_numpy(balanced_indices(train.targets[:, 0].numpy(), 0.5, seed)))
        if kind == "clip_multi":
            model = build_multi(trained["CLIP-text"].model, trained["CLIP-image"].model, model_config)
        else:
            model = build_unimodal(kind, create_clip(recipe.clip, None), recipe.model)
        folder = out / "runs" / name / f"seed{seed}" / row.replace(" ", "_").replace(",", "")
        result = train_model(
            model, kind, train, tensors["val"], train_config, folder, recipe.clip, model_config, False, lambda _: None
        )
        trained[row] = result
        probabilities = predict_probabilities(result.model, kind, tensors["test"])
        rows[row] = score_predictions(data.spec.kind, y_test, {h: p.argmax(1) for h, p in probabilities.items()})
        share = np.bincount(probabilities["sentiment"].argmax(1), minlength=3) / len(y_test["sentiment"])
        rows[row]["task_a_share"] = share.round(2).tolist()
        print(f"[{name} seed {seed}] {row}: test task A macro {rows[row]['macro']['task_a']:.3f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=shared_data_root())
    parser.add_argument("--datasets", nargs="+", default=["cm-off-meme"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "real_data")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = RealDataConfig(data_root=str(args.data_root), max_train=args.max_train or None)
    started = time.perf_counter()
    report: dict = {}
    for name in args.datasets:
        per_seed = [run_seed(config, name, seed, args.epochs, args.out) for seed in range(args.seeds)]
        keys = TASK_KEYS["binary" if name == "cm-off-meme" else "memotion"]
        table = {
            row: {
                m: {k: [float(np.mean(v := [s[row][m][k] for s in per_seed])), float(np.std(v, ddof=1))] for k in keys}
                for m in MEASURES
            }
            | {"task_a_share_seed0": per_seed[0][row]["task_a_share"]}
            for row in per_seed[0]
        }
        report[name] = table
        print(f"\n{name}: test F1, mean ± std over {args.seeds} seeds")
        print("| variant | " + " | ".join(f"{k} {m}" for m in MEASURES for k in keys) + " | Task A share (seed 0) |")
        print("|---|" + "---|" * (2 * len(keys) + 1))
        for row, cells in table.items():
            scores = " | ".join(f"{cells[m][k][0]:.3f} ± {cells[m][k][1]:.3f}" for m in MEASURES for k in keys)
            print(f"| {row} | {scores} | {'/'.join(f'{s:.2f}' for s in cells['task_a_share_seed0'])} |")
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'ablation.json'} in {report['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
