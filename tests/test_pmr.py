"""PMR (Fan et al. 2023): prototypes (eq. 6, 12), prototype probabilities (eq. 7), rho (eq. 8),
PCE (eq. 9-11), PER (eq. 13), the two-encoder protocol and the trainer's use of them."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from training.pmr import (
    PMRConfig,
    Prototypes,
    class_prototypes,
    imbalance_ratio,
    momentum_update,
    pmr_loss,
    pmr_step,
    prototype_cross_entropy,
    prototype_entropy,
    prototype_logits,
    rebalance_coefficients,
)


def test_class_prototypes_are_class_means():
    # Eq. 6: c_k = mean of the features of class k; class 2 has no examples.
    features = torch.tensor([[0.0, 0.0], [2.0, 4.0], [1.0, 1.0], [3.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    prototypes, present = class_prototypes(features, labels, 3)
    assert prototypes[:2].tolist() == [[1.0, 2.0], [2.0, 3.0]]
    assert present.tolist() == [True, True, False]


def test_momentum_update_eq_12():
    old = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    new = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    updated = momentum_update(old, new, torch.tensor([True, False]), momentum=0.25)
    assert updated[0].tolist() == [0.75, 1.5]  # 0.25 * old + 0.75 * new
    assert updated[1].tolist() == [10.0, 10.0]  # class not in this subset keeps its prototype
    first = momentum_update(
        None, torch.tensor([[1.0, 1.0], [3.0, 5.0], [0.0, 0.0]]), torch.tensor([True, True, False]), momentum=0.9
    )
    assert first.tolist() == [[1.0, 1.0], [3.0, 5.0], [2.0, 3.0]]  # unseen: mean of the seen ones


def test_prototype_logits_are_negative_euclidean_distances():
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    c = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    expected = torch.tensor([[-5.0, -1.0], [0.0, -math.sqrt(18)]])
    assert torch.allclose(prototype_logits(z, c), expected, atol=1e-5)


def test_imbalance_ratio_eq_8():
    labels = torch.tensor([0, 1])
    text = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))  # true-class p: 0.9 + 0.8
    image = torch.log(torch.tensor([[0.5, 0.5], [0.6, 0.4]]))  # 0.5 + 0.4
    assert imbalance_ratio(text, image, labels).item() == pytest.approx(1.7 / 0.9)


@pytest.mark.parametrize(
    ("rho", "beta", "gamma"),
    [
        (0.5, 1.0, 0.0),  # text much slower: beta = clip(1/0.5 - 1) = 1
        (0.8, 0.25, 0.0),  # beta = 1/0.8 - 1
        (1.0, 0.0, 0.0),
        (1.5, 0.0, 0.5),  # image slower: gamma = rho - 1
        (3.0, 0.0, 1.0),  # clipped at 1
    ],
)
def test_rebalance_coefficients_eq_11(rho, beta, gamma):
    assert rebalance_coefficients(rho) == pytest.approx((beta, gamma))


def test_hard_switch_gives_the_slower_modality_one():
    assert rebalance_coefficients(0.95, hard_switch=True) == (1.0, 0.0)
    assert rebalance_coefficients(1.05, hard_switch=True) == (0.0, 1.0)


def test_pmr_loss_eq_10_and_13_by_hand():
    gen = torch.Generator().manual_seed(0)
    text, image = torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    alpha, mu, beta, gamma = 2.0, 0.1, 0.0, 0.4
    # Eq. 9: PCE is CE over -d; eq. 13's H is the entropy of softmax(-d).
    pce_image = F.cross_entropy(image, labels)
    p_text = torch.softmax(text, dim=-1)
    h_text = -(p_text * p_text.log()).sum(dim=-1).mean()
    assert prototype_cross_entropy(image, labels).item() == pytest.approx(pce_image.item())
    assert prototype_entropy(text).item() == pytest.approx(h_text.item())
    with_per = pmr_loss(text, image, labels, beta, gamma, alpha, mu, regularise=True)
    assert with_per.item() == pytest.approx((alpha * gamma * pce_image - mu * gamma * h_text).item())
    without = pmr_loss(text, image, labels, beta, gamma, alpha, mu, regularise=False)
    assert without.item() == pytest.approx((alpha * gamma * pce_image).item())


def test_pce_pulls_the_slow_modality_and_per_spreads_the_fast_one():
    """With rho > 1 (text faster): PCE moves image features towards their class prototype and PER
    raises the entropy of the text's prototype distribution (slows the text down)."""
    prototypes = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    labels = torch.tensor([0, 1])
    text = torch.tensor([[0.1, 0.0], [3.9, 0.0]], requires_grad=True)  # confident, near its classes
    image = torch.tensor([[2.5, 0.5], [1.5, 0.5]], requires_grad=True)  # on the wrong side
    loss = pmr_loss(
        prototype_logits(text, prototypes),
        prototype_logits(image, prototypes),
        labels,
        beta=0.0,
        gamma=1.0,
        alpha=1.0,
        mu=1.0,
        regularise=True,
    )
    loss.backward()
    with torch.no_grad():
        image_after = image - 0.1 * image.grad
        text_after = text - 0.1 * text.grad
        distance = lambda z: torch.cdist(z, prototypes)[torch.arange(2), labels].sum()  # noqa: E731
        assert distance(image_after) < distance(image)
        assert prototype_entropy(prototype_logits(text_after, prototypes)) > prototype_entropy(
            prototype_logits(text, prototypes)
        )


def test_pmr_step_measures_rho_when_off_and_adds_loss_when_on():
    gen = torch.Generator().manual_seed(1)
    targets = torch.stack([torch.randint(0, 3, (16,), generator=gen), torch.randint(0, 2, (16,), generator=gen)], dim=1)
    text = torch.randn(16, 4, generator=gen) + 3.0 * F.one_hot(targets[:, 0], 4).float()
    image = torch.randn(16, 5, generator=gen)
    prototypes = Prototypes([3, 2], momentum=0.0)
    prototypes.update(text, image, targets)
    assert prototypes.ready
    off = pmr_step(prototypes, text, image, targets, PMRConfig(enabled=False), epoch_index=0)
    assert off.loss.item() == 0.0 and len(off.rho) == 2
    assert off.rho[0] > 1.0  # text features separate task 0's classes, the image ones are noise
    on = pmr_step(prototypes, text, image, targets, PMRConfig(enabled=True), epoch_index=0)
    assert on.rho == off.rho and on.loss.item() != 0.0
    for rho, beta, gamma in zip(on.rho, on.beta, on.gamma):
        assert (beta, gamma) == pytest.approx(rebalance_coefficients(rho))


def test_config_validation():
    with pytest.raises(ValueError):
        PMRConfig(momentum=1.0)
    with pytest.raises(ValueError):
        PMRConfig(subset_fraction=0.0)


# --- the two-encoder protocol and the trainer -----------------------------------------------------


def _multi(seed: int = 0):
    from training.backbone import TINY_CLIP
    from training.factory import build_model
    from training.recipe import tiny_recipe

    torch.manual_seed(seed)
    return build_model("clip_multi", TINY_CLIP, tiny_recipe().model)


def test_clip_multi_exposes_its_encoders_features():
    from training.factory import has_encoder_features, run_branches_and_features

    model = _multi().eval()
    ids = torch.randint(1, 400, (3, 32))
    ids[:, -1] = 49407  # <end_of_text>
    pixels = torch.randn(3, 3, 64, 64)
    text, image = model.encoder_features(ids, pixels)
    assert text.shape == (3, model.text.encoder.width) and image.shape == (3, model.image.encoder.width)
    branches, (text2, image2) = run_branches_and_features(model, "clip_multi", ids, pixels)
    assert torch.allclose(text, text2) and torch.allclose(image, image2)
    assert set(branches) == {"text", "image", "multi"}
    assert has_encoder_features(model) and not has_encoder_features(model.text)


class _TwoEncoders(nn.Module):
    """A minimal model implementing only ``encoder_features`` (the protocol's required method)."""

    def __init__(self) -> None:
        super().__init__()
        self.text = nn.Linear(4, 2)
        self.image = nn.Linear(3, 2)

    def encoder_features(self, input_ids, pixel_values):
        return self.text(input_ids.float()), self.image(pixel_values)

    def forward_branches(self, input_ids, pixel_values):
        text, image = self.encoder_features(input_ids, pixel_values)
        return {"multi": (text + image,)}


def test_protocol_falls_back_to_encoder_features():
    from training.factory import run_branches_and_features

    model = _TwoEncoders()
    ids, pixels = torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3)
    branches, (text, image) = run_branches_and_features(model, "any", ids, pixels)
    assert torch.allclose(branches["multi"][0], text + image)


@pytest.fixture(scope="module")
def tensors(synthetic_data):
    from training.recipe import prepare_data, tiny_recipe

    data = prepare_data(synthetic_data, tiny_recipe(), progress=False, log=lambda _: None)
    return data.train, data.val


def _train(tensors, out, pmr: PMRConfig):
    from training.backbone import TINY_CLIP
    from training.recipe import tiny_recipe
    from training.trainer import train_model

    recipe = tiny_recipe()
    config = replace(recipe.train, epochs=2, pmr=pmr)
    model = _multi()
    result = train_model(
        model, "clip_multi", *tensors, config, out, TINY_CLIP, recipe.model, progress=False, log=lambda _: None
    )
    return model, result


@pytest.mark.slow
def test_trainer_logs_rho_per_step_and_pmr_changes_training(tensors, tmp_path):
    monitored, plain = _train(tensors, tmp_path / "monitor", PMRConfig(enabled=False, monitor=True))
    rebalanced, pmr = _train(tensors, tmp_path / "pmr", PMRConfig(enabled=True))
    steps = json.loads((tmp_path / "pmr" / "pmr_rho.json").read_text())
    assert [s["step"] for s in steps] == list(range(1, pmr.history[-1]["step"] + 1))
    for step in steps:
        assert set(step["rho"]) == {"sentiment", "humour", "sarcasm", "offensive", "motivational"}
        for task, rho in step["rho"].items():
            assert rho > 0
            assert (step["beta"][task], step["gamma"][task]) == pytest.approx(rebalance_coefficients(rho))
    assert (tmp_path / "pmr" / "pmr_rho.png").read_bytes()[:4] == b"\x89PNG"
    assert all("rho_mean" in h for h in pmr.history)
    # Same seed, same batches: the only difference is PMR's loss, so the weights must differ.
    assert any(c for step in steps for c in (*step["beta"].values(), *step["gamma"].values()))
    assert not torch.equal(
        monitored.text.encoder.token_embedding.weight, rebalanced.text.encoder.token_embedding.weight
    )
    assert (tmp_path / "monitor" / "pmr_rho.json").is_file()  # rho is logged with PMR off, too
