import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import class_balanced_alpha, focal_loss, gradient_blend, multitask_loss


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    # Lin et al. eq. 5 with gamma = 0 and no alpha reduces to CE.
    logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(1))
    assert focal_loss(logits, targets, gamma=0.0).item() == pytest.approx(
        F.cross_entropy(logits, targets).item(), rel=1e-6
    )


def test_focal_loss_matches_formula_by_hand():
    # FL = -alpha_t (1 - p_t)^gamma log p_t for one sample.
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    p = torch.softmax(logits, dim=-1)[0, 1].item()
    alpha = torch.tensor([1.0, 0.25, 1.0])
    expected = -0.25 * (1 - p) ** 2 * math.log(p)
    assert focal_loss(logits, torch.tensor([1]), gamma=2.0, alpha=alpha).item() == pytest.approx(expected)


def test_focal_loss_downweights_easy_examples():
    easy = torch.tensor([[6.0, 0.0]])
    hard = torch.tensor([[0.2, 0.0]])
    target = torch.tensor([0])
    ratio_focal = focal_loss(easy, target, 2.0) / focal_loss(hard, target, 2.0)
    ratio_ce = F.cross_entropy(easy, target) / F.cross_entropy(hard, target)
    assert ratio_focal < ratio_ce


def test_class_balanced_alpha_is_inverse_frequency_with_mean_one():
    alpha = class_balanced_alpha([100, 10, 0])
    assert alpha.mean().item() == pytest.approx(1.0)
    assert alpha[2] > alpha[1] > alpha[0]
    assert (alpha[1] / alpha[0]).item() == pytest.approx(10.0)


def test_multitask_loss_is_ce_for_task_a_plus_focal_for_task_c():
    gen = torch.Generator().manual_seed(3)
    logits = [torch.randn(8, n, generator=gen) for n in (3, 4, 4, 4, 2)]
    targets = [torch.randint(0, n, (8,), generator=gen) for n in (3, 4, 4, 4, 2)]
    expected = F.cross_entropy(logits[0], targets[0]) + sum(
        focal_loss(logit, t, 2.0) for logit, t in zip(logits[1:], targets[1:])
    )
    assert multitask_loss(logits, targets, 2.0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradient_blend_is_weighted_sum():
    # Eq. 7: GB = sum_i w_i L_i.
    losses = {"text": torch.tensor(1.0), "image": torch.tensor(2.0), "multi": torch.tensor(4.0)}
    weights = {"text": 0.2, "image": 0.3, "multi": 0.5}
    assert gradient_blend(losses, weights).item() == pytest.approx(0.2 + 0.6 + 2.0)
    with pytest.raises(KeyError):
        gradient_blend(losses, {"text": 1.0})
