"""PM+MO training (paper Sec. 3): module A by stochastic variational inference with Pyro, module C
with AdamW, both in the same step.

One step on a batch: Pyro's ELBO runs the guide (θ ~ q) and the model (p(θ) Laplace prior, z from
θ, the likelihood of the labels through A's read-out), and its loss is backpropagated; module C's
loss (CE for Task A, focal for Task C as every kind here, BCE for a direct Task B head) on the same
z is added in the same backward pass, so both objectives reach the shared parameters (A's
variational parameters, the encoders) once per step. A's parameters step with Pyro's ClippedAdam
(Adam with gradient clipping, Sec. 3.1), C's with AdamW, the CLIP encoders with AdamW at the
recipe's learning rate.

ELBO variants (Sec. 3.2, Table 2): ELBOv1 = ``Trace_ELBO``, ELBOv2 = ``TraceGraph_ELBO``
(Rao-Blackwellised; every site here is reparameterised, so its gradient estimate equals
Trace_ELBO's), λKL = the KL term weighted by a factor rising linearly from ``kl_start`` to 1,
optional L1/L2 penalties on A's posterior means. The ELBO is per meme: the likelihood is the batch
mean and the KL is divided by the training-set size.

``train_pmmo`` runs the one training loop (training/loop.py) with :class:`PmmoTraining`, whose
step is :class:`PmmoStep`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from memotion.labels import ALL_TASKS
from training.dataset import MemeTensors, class_counts
from training.factory import ModelConfig
from training.fusion.models import Encoded, MultimodalClassifier
from training.fusion.pmmo import FusionModuleA, PmmoHead, predict_with_samples
from training.loop import EpochResult, StepStats, run_loop, total_steps
from training.losses import class_balanced_alpha, multitask_loss, task_b_targets
from training.metrics import selection_score
from training.trainer import (
    PrototypeRebalancing,
    TrainConfig,
    TrainResult,
    memotion_validation,
    save_best,
    shuffled_batches,
    write_validation_outputs,
)

ElboKind = Literal["trace", "tracegraph"]
Penalty = Literal["none", "l1", "l2"]


@dataclass(frozen=True)
class PmmoConfig:
    """PM+MO's own settings; the defaults are the paper's best system, PM+MO (λKL + L2).

    ``prior_*``: the Laplace prior of every weight and bias. ``penalty_coef``: the paper's λ = 0.1,
    applied to the mean |μ| (L1) or μ² (L2) over A's weights, so it means the same at any width.
    ``samples``: posterior draws for the validation uncertainty (0: posterior mean only).
    """

    elbo: ElboKind = "trace"
    kl_start: float | None = 0.2  # λKL: None = the KL weight is 1 from the start
    kl_anneal_fraction: float = 0.5  # of all steps, to reach weight 1
    penalty: Penalty = "l2"
    penalty_coef: float = 0.1
    prior_loc: float = 0.0
    prior_scale: float = 1.0
    lr_a: float = 5e-3  # module A (ClippedAdam); the paper's PM+MO learning rate
    lr_c: float = 5e-3  # module C (AdamW)
    clip_norm: float = 10.0
    samples: int = 0

    def __post_init__(self) -> None:
        if self.elbo not in ("trace", "tracegraph"):
            raise ValueError(f"elbo must be trace (ELBOv1) or tracegraph (ELBOv2), not {self.elbo!r}")
        if self.penalty not in ("none", "l1", "l2"):
            raise ValueError(f"penalty must be none, l1 or l2, not {self.penalty!r}")
        if self.kl_start is not None and not 0 <= self.kl_start <= 1:
            raise ValueError("kl_start must lie in [0, 1]")
        if not 0 < self.kl_anneal_fraction <= 1 or self.prior_scale <= 0 or self.samples < 0:
            raise ValueError("kl_anneal_fraction in (0, 1], prior_scale > 0 and samples >= 0 needed")


# The paper's Table 2 rows (ELBOv1 / ELBOv2 without KL annealing; λKL on Trace_ELBO).
PMMO_VARIANTS: dict[str, PmmoConfig] = {
    "elbo_v1": PmmoConfig(elbo="trace", kl_start=None, penalty="none"),
    "elbo_v1_l2": PmmoConfig(elbo="trace", kl_start=None, penalty="l2"),
    "elbo_v2": PmmoConfig(elbo="tracegraph", kl_start=None, penalty="none"),
    "elbo_v2_l2": PmmoConfig(elbo="tracegraph", kl_start=None, penalty="l2"),
    "lambda_kl": PmmoConfig(penalty="none"),
    "lambda_kl_l1": PmmoConfig(penalty="l1"),
    "lambda_kl_l2": PmmoConfig(penalty="l2"),
}


def kl_weight(step: int, total_steps: int, kl_start: float | None, anneal_fraction: float) -> float:
    """λ of the KL term at ``step`` (0-based): kl_start rising linearly to 1 over the first
    ``anneal_fraction`` of the steps, then 1 (Sønderby et al.'s warm-up, the paper's [28]); always 1
    without annealing."""
    if kl_start is None:
        return 1.0
    ramp = max(1.0, anneal_fraction * total_steps)
    return min(1.0, kl_start + (1.0 - kl_start) * step / ramp)


def weight_penalty(module_a: FusionModuleA, penalty: Penalty, coef: float) -> torch.Tensor:
    """coef * mean |μ| (L1) or mean μ² (L2) over all of A's posterior means."""
    locs = torch.cat([loc.reshape(-1) for _, loc, _ in module_a.sites()])
    if penalty == "l1":
        return coef * locs.abs().mean()
    if penalty == "l2":
        return coef * locs.pow(2).mean()
    return locs.new_zeros(())


def make_elbo(kind: ElboKind):
    from pyro.infer import Trace_ELBO, TraceGraph_ELBO

    # TraceGraph_ELBO backpropagates inside loss_and_grads; the graph is kept for module C's loss.
    return Trace_ELBO() if kind == "trace" else TraceGraph_ELBO(retain_graph=True)


def pyro_model(
    module_a: FusionModuleA,
    x_text: torch.Tensor,
    x_image: torch.Tensor,
    targets: torch.Tensor,
    kl_scale: float,
    data_scale: float,
    prior: tuple[float, float],
    captured: dict,
) -> None:
    """p(θ) p(y | x, θ): Laplace priors on A's weights, the labels' likelihood through A's read-out.
    The fused z of this run is left in ``captured["z"]`` for module C."""
    import pyro
    import pyro.distributions as dist
    from pyro import poutine

    weights = {}
    with poutine.scale(scale=kl_scale):
        for name, loc, _ in module_a.sites():
            weights[name] = pyro.sample(
                name,
                dist.Laplace(loc.new_tensor(prior[0]), loc.new_tensor(prior[1])).expand(loc.shape).to_event(loc.dim()),
            )
    z = module_a.fuse(x_text, x_image, weights)
    captured["z"] = z
    logits = module_a.readout_logits(z)
    with pyro.plate("memes", len(targets)), poutine.scale(scale=data_scale):
        for i, spec in enumerate(ALL_TASKS):
            pyro.sample(f"y.{spec.name}", dist.Categorical(logits=logits[i]), obs=targets[:, i])
        if len(logits) > len(ALL_TASKS):
            pyro.sample(
                "y.task_b",
                dist.Bernoulli(logits=logits[len(ALL_TASKS)]).to_event(1),
                obs=task_b_targets(targets).to(logits[0].dtype),
            )


def pyro_guide(
    module_a: FusionModuleA,
    x_text: torch.Tensor,
    x_image: torch.Tensor,
    targets: torch.Tensor,
    kl_scale: float,
    data_scale: float,
    prior: tuple[float, float],
    captured: dict,
) -> None:
    """q(θ) = Π Laplace(μ, b) over A's weights and biases (eq. 4-5: the family Q)."""
    import pyro
    import pyro.distributions as dist
    from pyro import poutine

    with poutine.scale(scale=kl_scale):
        for name, loc, scale in module_a.sites():
            pyro.sample(name, dist.Laplace(loc, scale).to_event(loc.dim()))


class PmmoStep:
    """One PM+MO training step on an encoded batch; owns the three optimisers."""

    def __init__(
        self,
        head: PmmoHead,
        config: PmmoConfig,
        train_size: int,
        total_steps: int,
        encoder_params: Iterable[nn.Parameter] = (),
        encoder_lr: float = 2e-5,
        weight_decay: float = 1e-2,
        focal_gamma: float = 2.0,
        alphas: list[torch.Tensor] | None = None,
    ) -> None:
        from pyro.optim.clipped_adam import ClippedAdam

        self.head, self.config = head, config
        self.train_size, self.total_steps = train_size, total_steps
        self.focal_gamma, self.alphas = focal_gamma, alphas
        self.elbo = make_elbo(config.elbo)
        self.optimizers = [
            ClippedAdam(head.module_a.parameters(), lr=config.lr_a, clip_norm=config.clip_norm),
            torch.optim.AdamW(head.module_c.parameters(), lr=config.lr_c, weight_decay=weight_decay),
        ]
        encoder_params = [p for p in encoder_params if p.requires_grad]
        if encoder_params:
            self.optimizers.append(torch.optim.AdamW(encoder_params, lr=encoder_lr, weight_decay=weight_decay))
        self.step_index = 0

    def __call__(
        self, encoded: Encoded, targets: torch.Tensor, extra_loss: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Train on one batch; returns the ELBO loss, module C's loss and the KL weight used."""
        from pyro.infer import TraceGraph_ELBO

        self.head.train()
        lam = kl_weight(self.step_index, self.total_steps, self.config.kl_start, self.config.kl_anneal_fraction)
        captured: dict = {}
        args = (
            self.head.module_a,
            encoded.text_feature,
            encoded.image_feature,
            targets,
            lam / self.train_size,
            1.0 / len(targets),
            (self.config.prior_loc, self.config.prior_scale),
            captured,
        )
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        if isinstance(self.elbo, TraceGraph_ELBO):
            elbo_value = self.elbo.loss_and_grads(pyro_model, pyro_guide, *args)  # backward done
            rest = torch.zeros(())
        else:
            rest = self.elbo.differentiable_loss(pyro_model, pyro_guide, *args)
            elbo_value = rest.item()
        c_loss = multitask_loss(self.head.module_c(captured["z"]), targets.unbind(dim=1), self.focal_gamma, self.alphas)
        rest = rest + c_loss + weight_penalty(self.head.module_a, self.config.penalty, self.config.penalty_coef)
        if extra_loss is not None:
            rest = rest + extra_loss
        rest.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        self.step_index += 1
        return {"elbo": float(elbo_value), "c_loss": c_loss.item(), "kl_weight": lam}


class PmmoTraining:
    """The loop's strategy for PM+MO: a :class:`PmmoStep` per batch on the encoded memes (with PMR's
    prototype losses joining module C's when ``config.pmr.enabled``), validation on the posterior
    mean."""

    postfix = ("elbo",)

    def __init__(
        self,
        model: MultimodalClassifier,
        kind: str,
        train: MemeTensors,
        val: MemeTensors,
        config: TrainConfig,
        pmmo: PmmoConfig,
        log: Callable[[str], None] = print,
    ) -> None:
        self.model, self.kind, self.train, self.val, self.config = model, kind, train, val, config
        self.log, self.desc = log, f"train {kind} (SVI)"
        self.generator = torch.Generator().manual_seed(config.seed)
        alphas = [class_balanced_alpha(c) for c in class_counts(train)] if config.focal_alpha else None
        self.steps = total_steps(-(-len(train) // config.batch_size), config.epochs, config.max_steps)
        encoders = list(model.text_encoder.parameters()) + list(model.image_encoder.parameters())
        self.step_fn = PmmoStep(
            model.head,
            pmmo,
            len(train),
            self.steps,
            encoders,
            config.lr,
            config.weight_decay,
            config.focal_gamma,
            alphas,
        )
        self.pmr = PrototypeRebalancing(config.pmr, config.seed) if config.pmr.enabled else None

    def begin_epoch(self, epoch: int) -> Iterator[MemeTensors]:
        if self.pmr is not None:
            self.pmr.refresh(self.model, self.train)
        return shuffled_batches(self.train, self.config.batch_size, self.generator)

    def train_step(self, batch: MemeTensors, epoch: int, step: int) -> StepStats:
        encoded = self.model.encode(batch.input_ids, batch.pixel_values)
        extra = None
        if self.pmr is not None:
            extra = self.pmr.loss(encoded.text_feature, encoded.image_feature, batch.targets, epoch, step)
        return self.step_fn(encoded, batch.targets, extra)

    def validate(self, epoch: int, step: int, stats: list[StepStats]) -> EpochResult:
        scores, probabilities = memotion_validation(self.model, self.kind, self.val)
        entry = {
            "epoch": epoch,
            "step": step,
            "train_loss": float(np.mean([s["c_loss"] for s in stats])),
            "train_elbo": float(np.mean([s["elbo"] for s in stats])),
            "kl_weight": stats[-1]["kl_weight"],
            **{f"val_{k}": v for k, v in scores.items()},
        }
        return EpochResult(entry, selection_score(scores), scores, probabilities)

    def end_epoch(self, epoch: int, result: EpochResult) -> None:
        entry, scores = result.entry, result.scores
        self.log(
            f"[{self.kind}] epoch {epoch}: ELBO loss {entry['train_elbo']:.4f}  C loss "
            f"{entry['train_loss']:.4f}  KL weight {entry['kl_weight']:.2f}  val F1 task A "
            f"{scores['task_a']:.3f}  task B {scores['task_b']:.3f}  task C {scores['task_c']:.3f}"
        )


def train_pmmo(
    model: MultimodalClassifier,
    kind: str,
    train: MemeTensors,
    val: MemeTensors,
    config: TrainConfig,
    out_dir: Path,
    clip_name: str,
    model_config: ModelConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
    pmmo: PmmoConfig = PmmoConfig(),
) -> TrainResult:
    """``train_model``'s contract for PM+MO: the same files in ``out_dir`` (checkpoint.pt with the
    posterior means, history.json, val_probabilities.npz, per_class_report.json, plots) and the same
    result; validation uses the posterior mean. With ``config.pmr.enabled`` PMR's prototype losses
    on the encoders' features join module C's loss."""
    if not isinstance(model.head, PmmoHead):
        raise TypeError(f"{kind}: train_pmmo trains PM+MO models, not {type(model.head).__name__}")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    strategy = PmmoTraining(model, kind, train, val, config, pmmo, log)
    loop = run_loop(model, strategy, config.epochs, strategy.steps, progress)
    save_best(out_dir, model, kind, clip_name, model_config, loop, config, pmmo_config=asdict(pmmo))
    probabilities = loop.best.outputs
    write_validation_outputs(out_dir, kind, loop.history, val, probabilities, loop.best_epoch, "SVI, posterior mean")
    if pmmo.samples:
        np.savez(out_dir / "val_uncertainty.npz", **posterior_spread(model, val, pmmo.samples))
    return TrainResult(model, kind, loop.best_epoch, loop.best.scores, loop.history, probabilities, loop.seconds)


def posterior_spread(
    model: MultimodalClassifier,
    data: MemeTensors,
    samples: int,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Per output, the standard deviation of the probabilities over ``samples`` posterior draws."""
    chunks: list[list[np.ndarray]] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = data.subset(slice(start, start + batch_size))
            _, spread = predict_with_samples(
                model.head, model.encode(batch.input_ids, batch.pixel_values), samples, seed=start
            )
            chunks.append([s.numpy() for s in spread])
    names = [t.name for t in ALL_TASKS] + (["task_b"] if model.task_b_direct else [])
    return {name: np.concatenate([c[i] for c in chunks]) for i, name in enumerate(names)}
