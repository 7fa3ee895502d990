"""Contrastive losses for image/text pre-training (pure: tensors in, scalar tensor out).

* ``clip``: the memotion3 paper's CLIP objective (eq. 1-3): projected, L2-normalised text and image
  features, pairwise cosine similarities scaled by a learnable e^k, symmetric cross-entropy.
* ``nt-xent`` and ``nt-logistic``: the normalised-temperature losses of the fusion-methods course
  report (Sec. 2, eq. 1 and the NT-Log of 2c), over the 2n views of a batch of n meme pairs, with
  a fixed temperature tau.

Every function returns a loss to MINIMISE: the report writes NT-Xent/NT-Log as objectives to
maximise ("assuming a negative loss function"), so these are their negatives.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

ContrastiveLoss = Literal["clip", "nt-xent", "nt-logistic"]
CONTRASTIVE_LOSSES: tuple[str, ...] = ("clip", "nt-xent", "nt-logistic")


def clip_logits(text_features: torch.Tensor, image_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """x = (||W_t F_t||_2 . ||W_i F_i||_2^T) * e^k, rows texts, columns images (paper eq. 2).

    ``text_features`` [n, d_e] and ``image_features`` [n, d_e] are already projected (W_t F_cls,t
    and W_i F_cls,i: open_clip's ``encode_text``/``encode_image``); ``logit_scale`` is k.
    """
    text = F.normalize(text_features, dim=-1)
    image = F.normalize(image_features, dim=-1)
    return text @ image.T * logit_scale.exp()


def clip_loss_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """l = 0.5 CE_axis0(softmax_axis0(x), y) + 0.5 CE_axis1(softmax_axis1(x), y), y = [1..n] (eq. 3)."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    image_to_text = F.cross_entropy(logits.T, labels)  # softmax over axis 0: each image's texts
    text_to_image = F.cross_entropy(logits, labels)  # softmax over axis 1: each text's images
    return 0.5 * image_to_text + 0.5 * text_to_image


def clip_contrastive_loss(
    text_features: torch.Tensor, image_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """The paper's CLIP pre-training loss (eq. 2 then eq. 3)."""
    return clip_loss_from_logits(clip_logits(text_features, image_features, logit_scale))


def nt_xent_from_similarities(positive: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """-NT-Xent = -(sim(u,v+)/tau - log sum_{v in {v+, v-}} exp(sim(u,v)/tau)) (report eq. 1), mean over anchors.

    ``positive`` [A]: sim(u, v+) per anchor u; ``negatives`` [A, M]: sim(u, v-) for its M negatives.
    """
    logits = torch.cat([positive[:, None], negatives], dim=1) / temperature
    return -(logits[:, 0] - torch.logsumexp(logits, dim=1)).mean()


def nt_logistic_from_similarities(positive: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """-NT-Log = -(log sigma(sim(u,v+)/tau) + log sigma(-sim(u,v-)/tau)) (report Sec. 2c), mean over anchors.

    With several negatives their terms are averaged, so one positive and the negatives weigh the
    same (with one negative this is exactly the report's NT-Log).
    """
    positive_term = F.logsigmoid(positive / temperature)
    negative_term = F.logsigmoid(-negatives / temperature).mean(dim=1)
    return -(positive_term + negative_term).mean()


def paired_view_similarities(
    text_features: torch.Tensor, image_features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities of the 2n views z = [texts; images] (SimCLR's batch construction).

    Anchor a's positive is its pair (text k <-> image k); its 2n - 2 negatives are every other
    view, both modalities. Returns (positive [2n], negatives [2n, 2n - 2]).
    """
    n = text_features.shape[0]
    if image_features.shape[0] != n:
        raise ValueError(f"{n} texts but {image_features.shape[0]} images")
    if n < 2:
        raise ValueError("contrastive losses need at least 2 pairs per batch")
    z = F.normalize(torch.cat([text_features, image_features]), dim=-1)
    sim = z @ z.T
    anchors = torch.arange(2 * n, device=sim.device)
    partner = (anchors + n) % (2 * n)
    positive = sim[anchors, partner]
    keep = torch.ones_like(sim, dtype=torch.bool)
    keep[anchors, anchors] = False
    keep[anchors, partner] = False
    negatives = sim[keep].view(2 * n, 2 * n - 2)
    return positive, negatives


def nt_xent_loss(text_features: torch.Tensor, image_features: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent (report eq. 1, negated) over the 2n views of n meme text/image pairs."""
    return nt_xent_from_similarities(*paired_view_similarities(text_features, image_features), temperature)


def nt_logistic_loss(
    text_features: torch.Tensor, image_features: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """NT-Logistic (report Sec. 2c, negated) over the 2n views of n meme text/image pairs."""
    return nt_logistic_from_similarities(*paired_view_similarities(text_features, image_features), temperature)


def contrastive_loss(
    name: str,
    text_features: torch.Tensor,
    image_features: torch.Tensor,
    logit_scale: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """The named loss. ``clip`` uses the learnable ``logit_scale`` (k); the NT losses the fixed
    ``temperature`` (tau)."""
    if name == "clip":
        return clip_contrastive_loss(text_features, image_features, logit_scale)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if name == "nt-xent":
        return nt_xent_loss(text_features, image_features, temperature)
    if name == "nt-logistic":
        return nt_logistic_loss(text_features, image_features, temperature)
    raise ValueError(f"unknown contrastive loss {name!r}; choose from {list(CONTRASTIVE_LOSSES)}")
