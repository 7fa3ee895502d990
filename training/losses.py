"""Loss functions (pure: tensors in, scalar tensor out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss, FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t (Lin et al. 2017, eq. 5), batch mean.

    The memotion3 paper uses it for the Task C heads (Table 3). gamma=0, alpha=None is plain CE.
    """
    log_p = F.log_softmax(logits, dim=-1)
    log_p_t = log_p.gather(1, targets[:, None]).squeeze(1)
    loss = -((1.0 - log_p_t.exp()) ** gamma) * log_p_t
    if alpha is not None:
        loss = loss * alpha.to(loss.dtype)[targets]
    return loss.mean()


def class_balanced_alpha(counts: Sequence[int]) -> torch.Tensor:
    """Per-class alpha from class frequencies: inverse frequency, normalised to mean 1."""
    freq = torch.as_tensor(counts, dtype=torch.float32).clamp(min=1.0)
    inv = 1.0 / freq
    return inv * (len(inv) / inv.sum())


def multitask_loss(
    logits: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    focal_gamma: float,
    alphas: Sequence[torch.Tensor | None] | None = None,
    task_a_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """CE for Task A (the first head), focal loss for the Task C heads (paper Table 3); summed.
    ``task_a_weight``: per-class weights of Task A's CE (None: unweighted, the paper's).

    A model with a direct Task B head has one more output after the task heads ([B, 4] logits,
    memotion.labels.TASK_B_OUTPUT): its BCE against intensity > 0 is added.
    """
    alphas = alphas if alphas is not None else [None] * len(logits)
    weight = task_a_weight.to(logits[0].dtype) if task_a_weight is not None else None
    total = F.cross_entropy(logits[0], targets[0], weight=weight)
    for head_logits, head_targets, alpha in zip(logits[1:], targets[1:], alphas[1:]):
        total = total + focal_loss(head_logits, head_targets, focal_gamma, alpha)
    if len(logits) > len(targets):
        total = total + task_b_bce(logits[len(targets)], torch.stack(tuple(targets), dim=1))
    return total


def task_b_targets(targets: torch.Tensor) -> torch.Tensor:
    """[B, tasks] class indices (Task A, then the Task C heads) -> [B, 4] Task B presence (0/1):
    an emotion is present iff its intensity > 0 (memotion.labels.task_b_from_task_c)."""
    return (targets[:, 1:] > 0).to(torch.float32)


def task_b_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a direct Task B head, mean over memes and emotions (PM+MO Sec. 3.1)."""
    return F.binary_cross_entropy_with_logits(logits, task_b_targets(targets).to(logits.dtype))


def gradient_blend(losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Blended loss GB = sum_i w_i L_i over the text, image and multi-modal branches (eq. 7)."""
    missing = set(losses) - set(weights)
    if missing:
        raise KeyError(f"no gradient-blending weight for {sorted(missing)}")
    return sum(weights[name] * loss for name, loss in losses.items())
