"""The models of the real-data experiment for one seed: CLIP-text, CLIP-image, CLIP-multi with GB and
PMR on and off, the attention fusion head, PM+MO, and CLIP-text re-balanced (Task A over-sampling +
class-balanced focal alpha), all through the project's own training loop on the same tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import open_clip
import torch

from memotion.data_format import MemeRecord
from training.backbone import clip_context_length, create_clip, normalise_pretrained, register_model_configs
from training.dataset import MemeTensors, build_tensors
from training.factory import build_model, build_multi, build_unimodal, model_kind
from training.recipe import RecipeConfig, preprocessing_for
from training.sampling import balanced_indices
from training.trainer import TrainConfig, TrainResult, train_model

# CLIP-multi variants: (gradient blending, PMR). GB uses the authors' fixed weights.
MULTI_VARIANTS = {
    "CLIP-multi": ("off", False),
    "CLIP-multi +GB": ("fixed", False),
    "CLIP-multi +PMR": ("off", True),
    "CLIP-multi +GB +PMR": ("fixed", True),
}
FUSION = {"Fusion attention": "fusion_attention", "PM+MO": "pmmo"}
BALANCED = "CLIP-text balanced"


@dataclass(frozen=True)
class ModelPlan:
    unimodal_epochs: int = 4
    multi_epochs: int = 3
    fusion_epochs: int = 4
    multi_variants: tuple[str, ...] = tuple(MULTI_VARIANTS)
    fusion: tuple[str, ...] = tuple(FUSION)
    balanced_text: bool = True  # the re-balanced CLIP-text row (issue 15, part 3)
    balance_power: float = 0.5  # Task A over-sampling: 0 none, 1 uniform
    out_dir: str | None = None  # where checkpoints go (None: a temporary folder)
    clip_models: bool = True  # False: none of the CLIP-based rows (only baselines and, with offline, its rows)
    offline: bool = False  # the offline recipe's rows (issue 23; training/experiments/real_data_offline.py)


@dataclass
class TrainedModel:
    result: TrainResult
    seconds: float
    test_tensors: str = "test"


def make_tensors(records: dict[str, list[MemeRecord]], recipe: RecipeConfig) -> dict[str, MemeTensors]:
    register_model_configs()
    probe = create_clip(recipe.clip, normalise_pretrained(recipe.pretrained))
    tokenize = open_clip.get_tokenizer(recipe.clip, context_length=clip_context_length(probe))
    preprocessing = preprocessing_for(probe)
    return {split: build_tensors(rows, tokenize, preprocessing) for split, rows in records.items()}


def train_models(
    records: dict[str, list[MemeRecord]],
    recipe: RecipeConfig,
    plan: ModelPlan,
    seed: int,
    log: Callable[[str], None],
) -> tuple[dict[str, TrainedModel], dict[str, MemeTensors]]:
    """Train every model of ``plan`` on records['train'], selecting epochs on records['val']."""
    import tempfile

    tensors = make_tensors(records, recipe)
    root = Path(plan.out_dir or tempfile.mkdtemp(prefix="real_data_")) / f"seed{seed}"
    fitter = _Fitter(recipe, seed, tensors["train"], tensors["val"], root, log)
    if not plan.clip_models:
        return fitter.trained, tensors
    uni = replace(fitter.base, epochs=plan.unimodal_epochs)
    text = fitter.fit("CLIP-text", fitter.fresh("clip_text"), "clip_text", uni)
    image = fitter.fit("CLIP-image", fitter.fresh("clip_image"), "clip_image", uni)
    for name in plan.multi_variants:  # from the two uni-modal models, as the paper
        gb, pmr = MULTI_VARIANTS[name]
        config = replace(fitter.base, epochs=plan.multi_epochs, gb_mode=gb, pmr=replace(fitter.base.pmr, enabled=pmr))
        fitter.fit(name, build_multi(text.model, image.model, recipe.model), "clip_multi", config)
    for name in plan.fusion:
        kind = FUSION[name]
        torch.manual_seed(seed)
        model = build_model(kind, recipe.clip, recipe.model, normalise_pretrained(recipe.pretrained))
        trainer = model_kind(kind).train or train_model
        fitter.fit(name, model, kind, replace(fitter.base, epochs=plan.fusion_epochs), trainer=trainer)
    if plan.balanced_text:  # Task A over-sampling + class-balanced focal alpha
        rows = balanced_indices(fitter.train.targets[:, 0].numpy(), plan.balance_power, seed)
        balanced = fitter.train.subset(torch.from_numpy(rows))
        fitter.fit(BALANCED, fitter.fresh("clip_text"), "clip_text", replace(uni, focal_alpha=True), data=balanced)
    return fitter.trained, tensors


@dataclass
class _Fitter:
    """Trains one seed's models through the project's loop, each in a folder of its own."""

    recipe: RecipeConfig
    seed: int
    train: MemeTensors
    val: MemeTensors
    root: Path
    log: Callable[[str], None]
    trained: dict[str, TrainedModel] = field(default_factory=dict)

    @property
    def base(self) -> TrainConfig:
        """The recipe's training settings for this seed, GB and PMR off."""
        train = self.recipe.train
        return replace(train, seed=self.seed, gb_mode="off", pmr=replace(train.pmr, enabled=False))

    def fresh(self, kind: str) -> torch.nn.Module:
        """A new uni-modal model on a new (random or pretrained) CLIP, seeded."""
        torch.manual_seed(self.seed)
        clip = create_clip(self.recipe.clip, normalise_pretrained(self.recipe.pretrained))
        return build_unimodal(kind, clip, self.recipe.model)

    def fit(self, name, model, kind: str, config, data: MemeTensors | None = None, trainer=train_model) -> TrainResult:
        torch.manual_seed(self.seed)
        folder = self.root / name.lower().replace(" ", "_").replace("+", "")
        quiet = lambda _: None  # noqa: E731 - per-epoch lines would drown the experiment's own
        data = self.train if data is None else data
        result = trainer(model, kind, data, self.val, config, folder, self.recipe.clip, self.recipe.model, False, quiet)
        self.trained[name] = TrainedModel(result, result.seconds)
        self.log(
            f"{name}: {result.seconds:.0f} s, best epoch {result.best_epoch}, val task A {result.scores['task_a']:.3f}"
        )
        return result
