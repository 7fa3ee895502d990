"""Prototypical modal rebalance (PMR; Fan et al. 2023, ../shared/seeds/pmr-prototypical-rebalance-paper.txt).

Modality 0 is the text, modality 1 the image. Per task, class prototypes are the class means of each
encoder's features over a ~10% training subset, kept with momentum between epochs (eq. 6, 12).
Prototype probabilities are a softmax over negative Euclidean distances (eq. 7); the imbalance
ratio rho compares the two modalities' true-class prototype probabilities over a batch (eq. 8).
The slower modality gets a prototypical cross-entropy (PCE, eq. 9) with a coefficient from rho
(eq. 10-11); for the first E_r epochs the faster modality's prototype entropy is rewarded (PER,
eq. 13) to slow it down. Only the two encoders' features are used, so any fusion works.

The official code switches the coefficients hard (weaker modality 1, other 0) and has no PER; the
paper's continuous coefficients and PER are the default here, the hard switch an option.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PMRConfig:
    """PMR's hyper-parameters. alpha, mu: the paper's ranges (1-2, 1e-2-1e-3); momentum: the paper
    gives no value; subset_fraction: 10% as in the paper; per_epochs: E_r."""

    enabled: bool = False
    alpha: float = 1.0
    mu: float = 1e-2
    momentum: float = 0.2
    subset_fraction: float = 0.1
    per_epochs: int = 2
    hard_switch: bool = False
    # Compute prototypes and log rho even when PMR is off (shows the imbalance PMR would act on).
    monitor: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.momentum < 1:
            raise ValueError("PMR momentum must lie in [0, 1)")
        if not 0 < self.subset_fraction <= 1:
            raise ValueError("PMR subset_fraction must lie in (0, 1]")
        if self.alpha < 0 or self.mu < 0 or self.per_epochs < 0:
            raise ValueError("PMR alpha, mu and per_epochs must be >= 0")


def class_prototypes(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6: c_k = mean of the features of class k. Returns (prototypes [K, D], present [K]);
    a class without examples gets a zero row and present False."""
    one_hot = F.one_hot(labels, num_classes).to(features.dtype)  # [N, K]
    counts = one_hot.sum(dim=0)
    sums = one_hot.T @ features
    return sums / counts.clamp(min=1)[:, None], counts > 0


def momentum_update(
    old: torch.Tensor | None, new: torch.Tensor, present: torch.Tensor, momentum: float
) -> torch.Tensor:
    """Eq. 12: c_old <- eps * c_old + (1 - eps) * c_new, for classes seen in this subset.

    The first time (``old`` None) the new prototypes are taken as they are; a class never seen gets
    the mean of the seen prototypes, so it is at least an uninformative, finite point.
    """
    if old is None:
        filled = new.clone()
        if present.any() and not present.all():
            filled[~present] = new[present].mean(dim=0)
        return filled
    updated = momentum * old + (1.0 - momentum) * new
    return torch.where(present[:, None], updated, old)


def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """-d(z, c_k) for every class k (Euclidean distance): the logits of eq. 7 and 9."""
    return -torch.cdist(features, prototypes)


def imbalance_ratio(text_logits: torch.Tensor, image_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 8: rho = sum_i p^0_i(y_i) / sum_i p^1_i(y_i) over the batch (p from eq. 7)."""
    p_text = torch.softmax(text_logits, dim=-1).gather(1, labels[:, None]).sum()
    p_image = torch.softmax(image_logits, dim=-1).gather(1, labels[:, None]).sum()
    return p_text / p_image.clamp(min=1e-12)


def rebalance_coefficients(rho: float, hard_switch: bool = False) -> tuple[float, float]:
    """Eq. 11: (beta, gamma), beta for the text PCE, gamma for the image PCE.

    rho < 1 (text slower): beta = clip(1/rho - 1, 0, 1), gamma = 0; rho >= 1: beta = 0,
    gamma = clip(rho - 1, 0, 1). The official code's hard switch gives the slower modality 1.
    """
    if rho < 1:
        return (1.0 if hard_switch else min(1.0, max(0.0, 1.0 / rho - 1.0))), 0.0
    if rho == 1:
        return 0.0, 0.0
    return 0.0, (1.0 if hard_switch else min(1.0, max(0.0, rho - 1.0)))


def prototype_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 9: PCE = E[-log softmax(-d(z, c))_y], batch mean."""
    return F.cross_entropy(logits, labels)


def prototype_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(pi(-d(z, c))) of eq. 13: entropy of the prototype distribution, batch mean."""
    log_p = F.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1).mean()


def pmr_loss(
    text_logits: torch.Tensor,
    image_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    gamma: float,
    alpha: float,
    mu: float,
    regularise: bool,
) -> torch.Tensor:
    """The terms PMR adds to the task loss (eq. 10 and 13):
    alpha*beta*PCE^0 + alpha*gamma*PCE^1 [- mu*gamma*H^0 - mu*beta*H^1 while ``regularise``]."""
    loss = alpha * beta * prototype_cross_entropy(text_logits, labels)
    loss = loss + alpha * gamma * prototype_cross_entropy(image_logits, labels)
    if regularise:
        loss = loss - mu * gamma * prototype_entropy(text_logits)
        loss = loss - mu * beta * prototype_entropy(image_logits)
    return loss


class Prototypes:
    """Per task and modality prototypes, updated with momentum (eq. 12)."""

    def __init__(self, num_classes: Sequence[int], momentum: float) -> None:
        self.num_classes = tuple(num_classes)
        self.momentum = momentum
        self.text: list[torch.Tensor | None] = [None] * len(self.num_classes)
        self.image: list[torch.Tensor | None] = [None] * len(self.num_classes)

    @property
    def ready(self) -> bool:
        return all(p is not None for p in self.text)

    def update(self, text_features: torch.Tensor, image_features: torch.Tensor, targets: torch.Tensor) -> None:
        """``targets``: [N, tasks] class indices of the subset the features were computed on."""
        for task, classes in enumerate(self.num_classes):
            labels = targets[:, task]
            for store, features in ((self.text, text_features), (self.image, image_features)):
                new, present = class_prototypes(features.detach(), labels, classes)
                store[task] = momentum_update(store[task], new, present, self.momentum)


@dataclass(frozen=True)
class PMRStep:
    """What PMR did on one batch: the added loss and, per task, rho, beta and gamma."""

    loss: torch.Tensor
    rho: tuple[float, ...]
    beta: tuple[float, ...]
    gamma: tuple[float, ...]


def pmr_step(
    prototypes: Prototypes,
    text_features: torch.Tensor,
    image_features: torch.Tensor,
    targets: torch.Tensor,
    config: PMRConfig,
    epoch_index: int,
) -> PMRStep:
    """PMR over every task for one batch (``epoch_index`` counts from 0; PER while < E_r).

    With ``config.enabled`` False the loss is zero and rho is only measured (monitoring).
    """
    loss = text_features.new_zeros(())
    rhos, betas, gammas = [], [], []
    for task in range(len(prototypes.num_classes)):
        labels = targets[:, task]
        text_logits = prototype_logits(text_features, prototypes.text[task])
        image_logits = prototype_logits(image_features, prototypes.image[task])
        rho = float(imbalance_ratio(text_logits.detach(), image_logits.detach(), labels))
        beta, gamma = rebalance_coefficients(rho, config.hard_switch)
        if config.enabled and (beta or gamma):
            loss = loss + pmr_loss(
                text_logits,
                image_logits,
                labels,
                beta,
                gamma,
                config.alpha,
                config.mu,
                regularise=epoch_index < config.per_epochs,
            )
        rhos.append(rho)
        betas.append(beta)
        gammas.append(gamma)
    return PMRStep(loss, tuple(rhos), tuple(betas), tuple(gammas))
