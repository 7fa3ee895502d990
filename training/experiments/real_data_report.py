"""The real-data experiment's table (markdown, also printed) and figure (macro F1 per task and row)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.real_scores import MEASURES, TASK_KEYS

TASK_TITLES = {
    "task_a": "Task A",
    "task_b": "Task B",
    "task_c": "Task C",
    "sarcastic": "Sarcastic (bin.)",
    "offensive": "Offensive (bin.)",
}
SEMEVAL_BEST_MACRO = {"task_a": 0.35, "task_b": 0.51, "task_c": 0.32}


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _setup(report: dict, config) -> str:
    plan, recipe = config.plan, config.recipe
    pretrained = recipe.pretrained or "none: random initialisation"
    return (
        f"CLIP `{recipe.clip}` (pretrained: {pretrained}); lr {recipe.train.lr}, batch {recipe.train.batch_size}, "
        f"focal gamma {recipe.train.focal_gamma}; uni-modal and CLIP-text balanced {plan.unimodal_epochs} epochs, "
        f"CLIP-multi {plan.multi_epochs} epochs from them "
        f"({'residual + LayerNorm' if recipe.model.residual else 'no residual, as the paper'} attention blocks), "
        f"fusion heads {plan.fusion_epochs} epochs; "
        f"training memes capped at {config.max_train or 'no cap'}; seeds {list(config.seeds)} on one split "
        f"(split seed {config.split_seed}, fractions {list(config.fractions)}); baselines are deterministic "
        f"(spread 0). Epochs and ensemble voters chosen on validation (weighted F1), scores on test. "
        f"Wall time {report['seconds'] / 60:.1f} min."
    )


def markdown(report: dict, config) -> str:
    seeds = len(config.seeds)
    lines = [
        f"# Real memes: test F1, mean ± std over {seeds} seed{'s' if seeds > 1 else ''}",
        "",
        _setup(report, config),
    ]
    for name, entry in report["datasets"].items():
        keys = TASK_KEYS[entry["kind"]]
        data = entry["data"]
        lines += [
            "",
            f"## {name}: {data['split']['train']} train / {data['split']['val']} val / {data['split']['test']} test "
            f"memes ({data['loaded']} of {data['rows']} rows usable)",
            "",
            "| model | "
            + " | ".join(f"{TASK_TITLES[k]} {m}" for m in MEASURES for k in keys)
            + " | s/seed | Task A predicted share (neg/neu/pos) |",
            "|---|" + "---|" * (len(keys) * len(MEASURES) + 2),
        ]
        for row, cells in entry["test"].items():
            seconds = entry["seconds"].get(row)
            share = entry["task_a_share"].get(row)
            seconds_text = "" if seconds is None else f"{seconds:.0f}"
            share_text = "" if share is None else "/".join(f"{s:.2f}" for s in share)
            scores = " | ".join(_cell(cells[m][k]) for m in MEASURES for k in keys)
            lines.append(f"| {row} | {scores} | {seconds_text} | {share_text} |")
        if entry["kind"] == "memotion":
            lines.append(
                "| *SemEval-2020 best (official test set)* | "
                + " | ".join(f"*{SEMEVAL_BEST_MACRO[k]:.2f}*" for k in keys)
                + " | " * (len(keys) + 1)
                + " |"
            )
        lines += ["", "Load report:", "", *(f"    {line}" for line in data["report_lines"])]
    lines.append("")
    return "\n".join(lines)


def plot_scores(report: dict, path: Path) -> Path:
    """Macro F1 (mean ± std over seeds) per task, one panel per data set, one bar per row."""
    from training.plots import plt, save_figure

    datasets = report["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(9 * len(datasets), 5), squeeze=False)
    for ax, (name, entry) in zip(axes[0], datasets.items()):
        keys = TASK_KEYS[entry["kind"]]
        rows = list(entry["test"])
        width = 0.8 / len(rows)
        for i, row in enumerate(rows):
            means = [entry["test"][row]["macro"][k]["mean"] for k in keys]
            stds = [entry["test"][row]["macro"][k]["std"] for k in keys]
            ax.bar(np.arange(len(keys)) + i * width, means, width, yerr=stds, label=row, capsize=2)
        if entry["kind"] == "memotion":
            for j, key in enumerate(keys):
                ax.hlines(SEMEVAL_BEST_MACRO[key], j - 0.05, j + 0.85, colors="black", linestyles="--", lw=1)
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2)
        ax.set_xticklabels([TASK_TITLES[k] for k in keys])
        ax.set_ylabel("macro F1 on test")
        ax.set_title(f"{name} (dashed: SemEval-2020 best)" if entry["kind"] == "memotion" else name)
        ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)
