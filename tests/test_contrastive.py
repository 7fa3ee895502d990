"""Contrastive losses against hand-computed values (memotion3 paper eq. 2-3; course report eq. 1,
Sec. 2c and its Table 2)."""

from __future__ import annotations

import math

import pytest
import torch
from open_clip.loss import ClipLoss

from training.contrastive import (
    clip_contrastive_loss,
    clip_logits,
    contrastive_loss,
    nt_logistic_from_similarities,
    nt_logistic_loss,
    nt_xent_from_similarities,
    nt_xent_loss,
    paired_view_similarities,
)


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# Texts t1=(1,0), t2=(3,4) (norm 5 -> (0.6, 0.8)); images i1=(2,0) -> (1,0), i2=(0,1).
TEXTS = _t([[1.0, 0.0], [3.0, 4.0]])
IMAGES = _t([[2.0, 0.0], [0.0, 1.0]])


def test_clip_logits_are_scaled_cosine_similarities():
    # eq. 2 with k = ln 2: x = cos(t, i) * 2, rows texts, columns images
    logits = clip_logits(TEXTS, IMAGES, torch.tensor(math.log(2.0), dtype=torch.float64))
    assert torch.allclose(logits, _t([[2.0, 0.0], [1.2, 1.6]]))


def test_clip_loss_matches_hand_computed_symmetric_cross_entropy():
    # eq. 3 with k = 0, x = [[1, 0], [0.6, 0.8]]:
    # rows (texts over images):  log(1+e^-1)=0.313262, log(1+e^-0.2)=0.598139 -> mean 0.455700
    # columns (images over texts): log(1+e^-0.4)=0.513015, log(1+e^-0.8)=0.371101 -> mean 0.442058
    loss = clip_contrastive_loss(TEXTS, IMAGES, torch.tensor(0.0, dtype=torch.float64))
    assert loss.item() == pytest.approx(0.5 * 0.455700 + 0.5 * 0.442058, abs=1e-6)
    # k = ln 2 doubles every logit: 0.298736 (rows log(1+e^-2), log(1+e^-0.4); cols e^-0.8, e^-1.6)
    scaled = clip_contrastive_loss(TEXTS, IMAGES, torch.tensor(math.log(2.0), dtype=torch.float64))
    assert scaled.item() == pytest.approx(0.2987362, abs=1e-6)


def test_clip_loss_agrees_with_open_clip_reference():
    torch.manual_seed(0)
    text, image = torch.randn(6, 8), torch.randn(6, 8)
    scale = torch.tensor(math.log(1 / 0.07))
    ours = clip_contrastive_loss(text, image, scale)
    reference = ClipLoss()(
        torch.nn.functional.normalize(image, dim=-1), torch.nn.functional.normalize(text, dim=-1), scale.exp()
    )
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_clip_loss_gradient_reaches_logit_scale():
    scale = torch.tensor(0.5, requires_grad=True)
    clip_contrastive_loss(torch.randn(4, 3), torch.randn(4, 3), scale).backward()
    assert scale.grad is not None and scale.grad.item() != 0.0


# Course report Table 2: (sim(u,v+), sim(u,v-), f_Xent, f_Log) with tau = 1; f is the factor of
# v-/tau in the gradient of the objective, i.e. d objective / d sim(u,v-).
TABLE_2 = [
    (0.99, 0.5, -0.380, -0.622),
    (0.5, 0.5, -0.5, -0.622),
    (0.01, 0.5, -0.620, -0.622),
    (-0.5, 0.5, -0.731, -0.622),
    (0.99, -0.5, -0.184, -0.378),
    (0.5, -0.5, -0.269, -0.378),
    (0.01, -0.5, -0.375, -0.378),
    (-0.5, -0.5, -0.5, -0.378),
]


@pytest.mark.parametrize("s_pos,s_neg,f_xent,f_log", TABLE_2)
def test_gradient_factors_match_report_table_2(s_pos, s_neg, f_xent, f_log):
    for loss_fn, factor in ((nt_xent_from_similarities, f_xent), (nt_logistic_from_similarities, f_log)):
        negative = torch.tensor([[s_neg]], dtype=torch.float64, requires_grad=True)
        loss_fn(torch.tensor([s_pos], dtype=torch.float64), negative, 1.0).backward()
        # the loss is the negated objective, so its gradient is -f
        assert negative.grad.item() == pytest.approx(-factor, abs=6e-4), loss_fn.__name__


def test_nt_losses_one_negative_closed_form():
    # eq. 1: -NT-Xent = -s+/tau + log(e^{s+/tau} + e^{s-/tau}); Sec. 2c: -NT-Log = -log s(s+/tau) - log s(-s-/tau)
    pos, neg, tau = 0.3, -0.2, 0.5
    xent = nt_xent_from_similarities(_t([pos]), _t([[neg]]), tau).item()
    logistic = nt_logistic_from_similarities(_t([pos]), _t([[neg]]), tau).item()
    assert xent == pytest.approx(-0.6 + math.log(math.exp(0.6) + math.exp(-0.4)), abs=1e-9)
    assert logistic == pytest.approx(math.log(1 + math.exp(-0.6)) + math.log(1 + math.exp(-0.4)), abs=1e-9)


def test_nt_losses_large_temperature_limits():
    # Report Sec. 2d: tau -> inf gives NT-Xent -> -log 2 and NT-Log -> 2 log 0.5 (objectives)
    pos, neg = _t([0.9, -0.3]), _t([[0.4], [0.7]])
    assert nt_xent_from_similarities(pos, neg, 1e7).item() == pytest.approx(math.log(2), abs=1e-6)
    assert nt_logistic_from_similarities(pos, neg, 1e7).item() == pytest.approx(2 * math.log(2), abs=1e-6)


def test_nt_xent_small_temperature_vanishes_when_positive_wins():
    assert nt_xent_from_similarities(_t([0.9]), _t([[0.2, 0.1]]), 1e-3).item() < 1e-12


# Two pairs whose 2n = 4 views have these cosine similarities (worked by hand):
# t1=(1,0) t2=(0,1) i1=(0.6,0.8) i2=(0.8,-0.6); t1.i1=0.6 t1.i2=0.8 t2.i1=0.8 t2.i2=-0.6, t1.t2=i1.i2=0.
PAIR_TEXTS = _t([[1.0, 0.0], [0.0, 2.0]])
PAIR_IMAGES = _t([[0.6, 0.8], [0.8, -0.6]])


def test_paired_view_similarities():
    positive, negatives = paired_view_similarities(PAIR_TEXTS, PAIR_IMAGES)
    assert torch.allclose(positive, _t([0.6, -0.6, 0.6, -0.6]))
    # anchor t1: negatives t2, i2; t2: t1, i1; i1: t1 is its positive -> t2, i2; i2: t1, i1
    assert torch.allclose(negatives, _t([[0.0, 0.8], [0.0, 0.8], [0.8, 0.0], [0.8, 0.0]]))


def test_nt_xent_loss_hand_computed():
    # tau = 0.5: anchors t1, i1: -1.2 + log(e^1.2 + e^0 + e^1.6); anchors t2, i2: 1.2 + log(e^-1.2 + 1 + e^1.6)
    loss = nt_xent_loss(PAIR_TEXTS, PAIR_IMAGES, temperature=0.5)
    assert loss.item() == pytest.approx(2.0301903, abs=1e-6)


def test_nt_logistic_loss_hand_computed():
    # tau = 0.5: t1, i1: -log s(1.2) - (log s(0) + log s(-1.6))/2; t2, i2: -log s(-1.2) - (same)/2
    loss = nt_logistic_loss(PAIR_TEXTS, PAIR_IMAGES, temperature=0.5)
    assert loss.item() == pytest.approx(2.1018064, abs=1e-6)


def test_contrastive_loss_dispatch_and_errors():
    scale = torch.tensor(0.0, dtype=torch.float64)
    assert contrastive_loss("nt-xent", PAIR_TEXTS, PAIR_IMAGES, scale, 0.5).item() == pytest.approx(2.0301903, abs=1e-6)
    assert contrastive_loss("clip", TEXTS, IMAGES, scale, 0.5).item() == pytest.approx(0.448879, abs=1e-6)
    with pytest.raises(ValueError, match="unknown contrastive loss"):
        contrastive_loss("triplet", TEXTS, IMAGES, scale, 0.5)
    with pytest.raises(ValueError, match="temperature"):
        contrastive_loss("nt-xent", TEXTS, IMAGES, scale, 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent_loss(TEXTS[:1], IMAGES[:1])
