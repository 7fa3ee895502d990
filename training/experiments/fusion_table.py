"""The fusion zoo on one synthetic data set: every fusion head, the GMU baseline and PM+MO (and,
optionally, PM+MO's ablation rows), several seeds, one table (course report Table 1; PM+MO paper
Tables 1-2).

What is compared is the fusion head: per seed one tiny random-initialised CLIP (``memotion-tiny``)
encodes every meme once, and every head trains on those same frozen features (the PM+MO paper's
set-up: fixed VGG16 / word2vec features), so the heads see identical inputs and a CPU trains the
zoo in minutes. Heads train for ``epochs`` epochs; the epoch with the best validation score (mean of
Task A and Task C weighted F1, as the training loop picks) is evaluated on a held-out test split.
Reported per head, mean and standard deviation over the seeds: test loss (cross-entropy summed over
the five heads), Task A accuracy and weighted F1, Task C and Task B (from Task C) weighted F1, the
direct Task B head's micro/macro/weighted/samples F1, and training seconds per epoch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch

from memotion.data_format import load_split
from memotion.labels import ALL_TASKS, TASK_A, TASK_B_OUTPUT
from memotion.progress import progress_bar
from training.backbone import TINY_CLIP, clip_context_length, create_clip
from training.data.synthetic import SyntheticConfig, make_synthetic_dataset
from training.dataset import MemeTensors, build_tensors
from training.factory import ModelConfig
from training.fusion.kinds import FUSION_KINDS, build_head
from training.fusion.models import Encoded, encode, output_probabilities
from training.fusion.train_pmmo import PMMO_VARIANTS, PmmoConfig, PmmoStep
from training.loop import EpochResult, StepStats, run_loop, total_steps
from training.losses import multitask_loss
from training.metrics import memotion_scores, selection_score, task_b_direct_scores
from training.models.encoders import ClipImageEncoder, ClipTextEncoder
from training.recipe import preprocessing_for

LABELS = {
    "fusion_concat": "Concatenation",
    "fusion_sum": "Addition",
    "fusion_product": "Multiplication",
    "fusion_max": "Maximum",
    "fusion_attention": "Attention",
    "fusion_gated": "Gated",
    "fusion_bilinear": "Bilinear",
    "fusion_factorised_bilinear": "Factorised bilinear",
    "gmu": "GMU baseline",
    "pmmo": "PM+MO (λKL + L2)",
    "pmmo:elbo_v1": "PM+MO (ELBOv1)",
    "pmmo:elbo_v1_l2": "PM+MO (ELBOv1 + L2)",
    "pmmo:elbo_v2": "PM+MO (ELBOv2)",
    "pmmo:elbo_v2_l2": "PM+MO (ELBOv2 + L2)",
    "pmmo:lambda_kl": "PM+MO (λKL)",
    "pmmo:lambda_kl_l1": "PM+MO (λKL + L1)",
    "pmmo:lambda_kl_l2": "PM+MO (λKL + L2)",
}
METRICS = (
    "test_loss",
    "accuracy_task_a",
    "f1_task_a",
    "f1_task_c",
    "f1_task_b",
    "f1_task_b_direct",
    "task_b_direct_micro",
    "task_b_direct_macro",
    "task_b_direct_weighted",
    "task_b_direct_samples",
    "seconds_per_epoch",
)


@dataclass(frozen=True)
class FusionExperimentConfig:
    """``kinds``: fusion kinds, and ``pmmo:<variant>`` rows for PM+MO variants (PMMO_VARIANTS)."""

    kinds: tuple[str, ...] = FUSION_KINDS
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 600
    n_val: int = 150
    n_test: int = 300
    data_seed: int = 0
    image_size: int = 128  # rendered memes (the tiny CLIP sees 64x64 after preprocessing)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    focal_gamma: float = 2.0
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(
            head_hidden=64, fusion_dim=64, attention_heads=4, dropout=0.1, task_b_direct=True
        )
    )
    pmmo: PmmoConfig = field(default_factory=PmmoConfig)
    clip: str = TINY_CLIP

    def __post_init__(self) -> None:
        for kind in self.kinds:
            base, _, variant = kind.partition(":")
            if base not in FUSION_KINDS or (variant and (base != "pmmo" or variant not in PMMO_VARIANTS)):
                raise ValueError(
                    f"unknown fusion experiment row {kind!r}; use {FUSION_KINDS} or pmmo:<{'|'.join(PMMO_VARIANTS)}>"
                )
        if not self.seeds or min(self.n_train, self.n_val, self.n_test, self.epochs) < 1:
            raise ValueError("need at least one seed, epoch and meme per split")


@dataclass
class Split:
    encoded: Encoded
    targets: torch.Tensor  # [N, tasks]

    def __len__(self) -> int:
        return len(self.targets)


def synthetic_splits(
    work_dir: Path,
    config: FusionExperimentConfig,
    progress: bool = True,
) -> dict[str, list]:
    """Train / val / test records of one synthetic data set (made once, reused when it exists)."""
    data_dir = work_dir / "data"
    synthetic = SyntheticConfig(
        n_train=config.n_train, n_val=config.n_val + config.n_test, seed=config.data_seed, image_size=config.image_size
    )
    stamp = data_dir / "synthetic_config.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != json.loads(json.dumps(asdict(synthetic))):
        make_synthetic_dataset(data_dir, synthetic, progress=progress)
    held_out = load_split(data_dir / "val.csv")
    return {
        "train": load_split(data_dir / "train.csv"),
        "val": held_out[: config.n_val],
        "test": held_out[config.n_val :],
    }


@torch.no_grad()
def frozen_features(
    tensors: dict[str, MemeTensors],
    clip: torch.nn.Module,
    batch_size: int = 128,
) -> dict[str, Split]:
    """Every split through the (frozen) CLIP text and image encoders, once."""
    text, image = ClipTextEncoder(clip).eval(), ClipImageEncoder(clip).eval()
    splits = {}
    for name, data in tensors.items():
        parts = [
            encode(text, image, data.input_ids[i : i + batch_size], data.pixel_values[i : i + batch_size])
            for i in range(0, len(data), batch_size)
        ]
        splits[name] = Split(Encoded(*(torch.cat(t) for t in zip(*parts))), data.targets)
    return splits


@torch.no_grad()
def head_probabilities(head: torch.nn.Module, split: Split, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per task softmax probabilities (and TASK_B_OUTPUT sigmoid ones), as predict_probabilities."""
    head.eval()
    chunks: list[list[torch.Tensor]] = []
    for start in range(0, len(split), batch_size):
        chunks.append(output_probabilities(head(split.encoded.subset(slice(start, start + batch_size)))))
    names = [t.name for t in ALL_TASKS] + [TASK_B_OUTPUT]
    return {names[i]: torch.cat(parts).numpy() for i, parts in enumerate(zip(*chunks))}


def test_metrics(probabilities: dict[str, np.ndarray], targets: torch.Tensor) -> dict[str, float]:
    """The table's quality columns from test probabilities."""
    y_true = {t.name: targets[:, i].numpy() for i, t in enumerate(ALL_TASKS)}
    y_pred = {t.name: probabilities[t.name].argmax(axis=-1) for t in ALL_TASKS}
    # Test loss: cross-entropy of the five heads, summed (the course report's categorical CE).
    loss = sum(
        -np.log(np.clip(probabilities[t.name][np.arange(len(targets)), y_true[t.name]], 1e-12, None)).mean()
        for t in ALL_TASKS
    )
    scores = memotion_scores(y_true, y_pred)
    direct = task_b_direct_scores(y_true, probabilities)
    return {
        "test_loss": float(loss),
        "accuracy_task_a": float((y_pred[TASK_A.name] == y_true[TASK_A.name]).mean()),
        "f1_task_a": scores["task_a"],
        "f1_task_c": scores["task_c"],
        "f1_task_b": scores["task_b"],
        **({"f1_task_b_direct": direct["task_b_direct"]} if direct else {}),
        **{k: v for k, v in direct.items() if k != "task_b_direct"},
    }


StepFn = Callable[[Encoded, torch.Tensor], object]


def adamw_step(head: torch.nn.Module, config: FusionExperimentConfig) -> StepFn:
    """The shared training loop's update, on features: AdamW, CE + focal (+ Task B BCE)."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def step(encoded: Encoded, targets: torch.Tensor) -> None:
        head.train()
        loss = multitask_loss(head(encoded), targets.unbind(dim=1), config.focal_gamma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


class HeadTraining:
    """The training loop's strategy for a head on precomputed features: ``step`` per batch, the
    validation selection score after every epoch, the seconds spent training."""

    desc, postfix = "head", ()

    def __init__(
        self, head: torch.nn.Module, step: StepFn, splits: dict[str, Split], batch_size: int, seed: int
    ) -> None:
        self.head, self.step, self.batch_size = head, step, batch_size
        self.train, self.val = splits["train"], splits["val"]
        self.y_val = {t.name: self.val.targets[:, i].numpy() for i, t in enumerate(ALL_TASKS)}
        self.generator = torch.Generator().manual_seed(seed)
        self.seconds = 0.0
        self.started = 0.0

    def begin_epoch(self, epoch: int) -> Iterator[torch.Tensor]:
        order = torch.randperm(len(self.train), generator=self.generator)
        self.started = time.perf_counter()
        return (order[start : start + self.batch_size] for start in range(0, len(self.train), self.batch_size))

    def train_step(self, rows: torch.Tensor, epoch: int, step: int) -> StepStats:
        self.step(self.train.encoded.subset(rows), self.train.targets[rows])
        return {}

    def validate(self, epoch: int, step: int, stats: list[StepStats]) -> EpochResult:
        self.seconds += time.perf_counter() - self.started
        probabilities = head_probabilities(self.head, self.val)
        labels = {t.name: probabilities[t.name].argmax(axis=-1) for t in ALL_TASKS}
        score = selection_score(memotion_scores(self.y_val, labels))
        return EpochResult({"epoch": epoch, "val_selection_score": score}, score, {})

    def end_epoch(self, epoch: int, result: EpochResult) -> None:
        pass


def head_step(
    kind: str, variant: str, head: torch.nn.Module, train_size: int, config: FusionExperimentConfig
) -> StepFn:
    """PM+MO's SVI step (``variant``: a Table 2 row) or AdamW's."""
    if kind != "pmmo":
        return adamw_step(head, config)
    return PmmoStep(
        head,
        PMMO_VARIANTS[variant] if variant else config.pmmo,
        train_size,
        config.epochs * -(-train_size // config.batch_size),
        weight_decay=config.weight_decay,
        focal_gamma=config.focal_gamma,
    )


def run_head(
    row: str,
    splits: dict[str, Split],
    seed: int,
    config: FusionExperimentConfig,
) -> dict[str, float]:
    """Train one head on one seed's features; the test metrics of its best validation epoch."""
    kind, _, variant = row.partition(":")
    torch.manual_seed(seed)
    text_width = splits["train"].encoded.text_feature.shape[1]
    image_width = splits["train"].encoded.image_feature.shape[1]
    head = build_head(kind, text_width, image_width, config.model)
    step = head_step(kind, variant, head, len(splits["train"]), config)
    strategy = HeadTraining(head, step, splits, config.batch_size, seed)
    steps = total_steps(-(-len(splits["train"]) // config.batch_size), config.epochs, None)
    loop = run_loop(head, strategy, config.epochs, steps, progress=False)
    return {
        **test_metrics(head_probabilities(head, splits["test"]), splits["test"].targets),
        "seconds_per_epoch": strategy.seconds / config.epochs,
        "best_epoch": loop.best_epoch,
        "val_selection_score": loop.best.key,
    }


def run_experiment(
    work_dir: Path,
    config: FusionExperimentConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Train every row on every seed; the per-run and aggregated results (JSON-ready)."""
    records = synthetic_splits(work_dir, config, progress)
    log(f"data: {', '.join(f'{len(r)} {n}' for n, r in records.items())} synthetic memes in {work_dir / 'data'}")
    runs: list[dict] = []
    bar = progress_bar(total=len(config.seeds) * len(config.kinds), desc="fusion zoo", unit="run", disable=not progress)
    for seed in config.seeds:
        torch.manual_seed(seed)
        clip = create_clip(config.clip)
        tokenize = open_clip.get_tokenizer(config.clip, context_length=clip_context_length(clip))
        tensors = {name: build_tensors(r, tokenize, preprocessing_for(clip)) for name, r in records.items()}
        splits = frozen_features(tensors, clip)
        for row in config.kinds:
            result = run_head(row, splits, seed, config)
            runs.append({"row": row, "seed": seed, **result})
            log(
                f"seed {seed} {LABELS.get(row, row)}: test loss {result['test_loss']:.3f}, "
                f"Task A acc {result['accuracy_task_a']:.3f}, weighted F1 A {result['f1_task_a']:.3f} "
                f"C {result['f1_task_c']:.3f}, {result['seconds_per_epoch']:.2f} s/epoch"
            )
            bar.update(1)
    bar.close()
    return {"config": asdict(config), "runs": runs, "summary": summarise(runs, config.kinds)}


def summarise(runs: Sequence[dict], rows: Sequence[str]) -> list[dict]:
    """Mean and standard deviation over seeds of every metric, per row (in ``rows`` order)."""
    table = []
    for row in rows:
        mine = [r for r in runs if r["row"] == row]
        entry: dict = {"row": row, "label": LABELS.get(row, row), "seeds": len(mine)}
        for metric in METRICS:
            values = [r[metric] for r in mine if metric in r]
            if values:
                entry[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        table.append(entry)
    return table


def markdown_table(summary: Sequence[dict]) -> str:
    """Course-report Table 1 / PM+MO Tables 1-2 style: one row per head, mean ± std over seeds;
    the best mean per column in bold (lowest for loss and time)."""
    columns = [
        ("test_loss", "Test loss", min),
        ("accuracy_task_a", "Task A acc.", max),
        ("f1_task_a", "Task A w-F1", max),
        ("f1_task_c", "Task C w-F1", max),
        ("f1_task_b", "Task B w-F1 (from C)", max),
        ("f1_task_b_direct", "Task B w-F1 (direct)", max),
        ("task_b_direct_micro", "B direct micro", max),
        ("task_b_direct_macro", "B direct macro", max),
        ("task_b_direct_weighted", "B direct weighted", max),
        ("task_b_direct_samples", "B direct samples", max),
        ("seconds_per_epoch", "s / epoch", min),
    ]
    columns = [c for c in columns if any(c[0] in e for e in summary)]
    best = {key: pick(e[key]["mean"] for e in summary if key in e) for key, _, pick in columns}
    lines = ["| Fusion | " + " | ".join(title for _, title, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for entry in summary:
        cells = []
        for key, _, _ in columns:
            if key not in entry:
                cells.append("–")
                continue
            digits = 2 if key == "seconds_per_epoch" else 3
            text = f"{entry[key]['mean']:.{digits}f} ± {entry[key]['std']:.{digits}f}"
            cells.append(f"**{text}**" if entry[key]["mean"] == best[key] else text)
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_summary(summary: Sequence[dict], path: Path, title: str) -> Path:
    """Bars: Task A and Task C weighted F1 per head, with the seeds' standard deviation."""
    from training.plots import plt, save_figure

    labels = [e["label"] for e in summary]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(labels)), 4.5))
    for offset, key, name in ((-0.2, "f1_task_a", "Task A"), (0.2, "f1_task_c", "Task C")):
        ax.bar(
            x + offset,
            [e[key]["mean"] for e in summary],
            0.4,
            yerr=[e[key]["std"] for e in summary],
            capsize=3,
            label=f"{name} weighted F1",
        )
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test weighted F1 (mean ± std over seeds)")
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)
