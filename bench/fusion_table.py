"""The fusion zoo table: every fusion head, the GMU baseline and PM+MO trained on the same synthetic
memes over several seeds (training/experiments/fusion_table.py says how).

    python bench/fusion_table.py                                  # 3 seeds, every head (~5-15 min, CPU)
    python bench/fusion_table.py --seeds 0 --epochs 5             # a quick look
    python bench/fusion_table.py --pmmo-variants elbo_v1,elbo_v2,lambda_kl,lambda_kl_l1

Prints the Markdown table and writes bench/results/fusion_table.{json,md,png} (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.experiments.fusion_table import (
    FusionExperimentConfig,
    markdown_table,
    plot_summary,
    run_experiment,
)
from training.fusion.kinds import FUSION_KINDS
from training.fusion.train_pmmo import PMMO_VARIANTS


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _parse_args(argv: list[str] | None, defaults: FusionExperimentConfig) -> argparse.Namespace:
    """The command-line options, defaulting to ``defaults``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", type=_names, default=FUSION_KINDS, help="comma-separated fusion kinds")
    parser.add_argument(
        "--pmmo-variants",
        type=_names,
        default=(),
        help=f"extra PM+MO rows (Table 2 ablation): {','.join(PMMO_VARIANTS)}",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--train", type=int, default=defaults.n_train)
    parser.add_argument("--val", type=int, default=defaults.n_val)
    parser.add_argument("--test", type=int, default=defaults.n_test)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("bench/results/fusion_work"),
        help="where the synthetic data set is made (reused when it exists)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/results/fusion_table"),
        help="output path without extension (.json, .md, .png)",
    )
    return parser.parse_args(argv)


def _config(args: argparse.Namespace, defaults: FusionExperimentConfig) -> FusionExperimentConfig:
    """The experiment's configuration: ``defaults`` with the options applied."""
    return replace(
        defaults,
        kinds=args.kinds + tuple(f"pmmo:{v}" for v in args.pmmo_variants),
        seeds=tuple(args.seeds),
        n_train=args.train,
        n_val=args.val,
        n_test=args.test,
        epochs=args.epochs,
    )


def _machine(threads: int) -> dict[str, object]:
    """Python, torch, thread count and processor of this run."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "processor": platform.processor() or platform.machine(),
    }


def _caption(config: FusionExperimentConfig) -> str:
    """The paragraph above the Markdown table: what was trained and how it is scored."""
    return (
        f"Test metrics, mean ± std over seeds {list(config.seeds)}; {config.n_train} train / "
        f"{config.n_val} val / {config.n_test} test synthetic memes, frozen tiny random-init CLIP "
        f"features, {config.epochs} epochs, best validation epoch. Bold: best mean per column.\n\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the fusion experiment, then write and print its table."""
    defaults = FusionExperimentConfig()
    args = _parse_args(argv, defaults)

    torch.set_num_threads(args.threads)
    config = _config(args, defaults)
    started = time.perf_counter()
    result = run_experiment(args.work_dir, config, progress=True, log=lambda line: print(line, flush=True))
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = _machine(args.threads)
    table = markdown_table(result["summary"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    caption = _caption(config)
    args.out.with_suffix(".md").write_text(caption + table)
    plot_summary(result["summary"], args.out.with_suffix(".png"), "Fusion heads on synthetic memes")
    print()
    print(caption + table)
    print(f"wrote {args.out}.json, .md, .png in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
