"""PM+MO (Armitage et al.): module A's Laplace layers and fusion (eq. 1-2), the scaled ELBO its Pyro
programs define (eq. 5-6), λKL annealing, L1/L2, the training step, and posterior-mean and sampled
prediction."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from memotion.labels import ALL_TASKS, TASK_B_NAMES
from training.fusion.models import Encoded, output_probabilities
from training.fusion.pmmo import FusionModuleA, LaplaceLinear, PmmoHead, predict_with_samples
from training.fusion.train_pmmo import (
    PMMO_VARIANTS,
    PmmoConfig,
    PmmoStep,
    kl_weight,
    pyro_guide,
    pyro_model,
    weight_penalty,
)
from training.losses import task_b_targets

TEXT, IMAGE, DIM = 6, 10, 8
OUTPUTS = [t.num_classes for t in ALL_TASKS] + [len(TASK_B_NAMES)]


def _encoded(batch: int, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    return Encoded(
        torch.randn(batch, 4, TEXT, generator=g),
        torch.randn(batch, TEXT, generator=g),
        torch.ones(batch, 4, dtype=torch.bool),
        torch.randn(batch, 5, IMAGE, generator=g),
        torch.randn(batch, IMAGE, generator=g),
    )


def _learnable_targets(encoded: Encoded) -> torch.Tensor:
    """Labels that are a function of the features (so a model can learn them)."""
    t, i = encoded.text_feature, encoded.image_feature
    columns = [(t[:, 0] > 0).long() + (i[:, 0] > 0).long()]
    for k, spec in enumerate(ALL_TASKS[1:]):
        columns.append(((t[:, k + 1] + i[:, k + 1]) > 0).long() * (spec.num_classes - 1))
    return torch.stack(columns, dim=1)


def test_kl_weight_rises_linearly_then_stays_at_one() -> None:
    assert kl_weight(0, 100, 0.2, 0.5) == pytest.approx(0.2)
    assert kl_weight(25, 100, 0.2, 0.5) == pytest.approx(0.6)  # halfway up the 50-step ramp
    assert kl_weight(50, 100, 0.2, 0.5) == 1.0 and kl_weight(99, 100, 0.2, 0.5) == 1.0
    assert kl_weight(0, 100, None, 0.5) == 1.0  # ELBOv1/v2: no annealing


def test_weight_penalties() -> None:
    module = FusionModuleA(TEXT, IMAGE, DIM, OUTPUTS)
    locs = torch.cat([loc.reshape(-1) for _, loc, _ in module.sites()])
    assert weight_penalty(module, "l1", 0.1).item() == pytest.approx(0.1 * locs.abs().mean().item())
    assert weight_penalty(module, "l2", 0.1).item() == pytest.approx(0.1 * locs.pow(2).mean().item())
    assert weight_penalty(module, "none", 0.1).item() == 0.0


def test_laplace_layer_starts_at_the_papers_scale_and_samples_laplace() -> None:
    torch.manual_seed(0)
    layer = LaplaceLinear(3, 2)
    loc, scale = layer.posterior()["weight"]
    torch.testing.assert_close(scale, torch.full((2, 3), 0.01))
    module = FusionModuleA(TEXT, IMAGE, DIM, OUTPUTS)
    with torch.no_grad():
        module.layers["text"].weight_rho.fill_(math.log(math.expm1(0.5)))  # scale 0.5
    draws = torch.stack([module.sample_weights(torch.Generator().manual_seed(s))["text.weight"] for s in range(400)])
    loc = module.layers["text"].weight_loc
    assert (draws.mean(dim=0) - loc).abs().mean() < 0.05  # Laplace mean = loc
    assert (draws - loc).abs().mean().item() == pytest.approx(0.5, rel=0.05)  # E|x - μ| = b


def test_module_a_fuses_as_eq_1_and_2() -> None:
    torch.manual_seed(0)
    module = FusionModuleA(TEXT, IMAGE, DIM, OUTPUTS)
    x_t, x_i = torch.randn(3, TEXT), torch.randn(3, IMAGE)
    w = module.posterior_mean()
    v_t = torch.tanh(x_t @ w["text.weight"].T + w["text.bias"])
    v_i = torch.tanh(x_i @ w["image.weight"].T + w["image.bias"])
    g = torch.sigmoid(torch.cat([v_t, v_i], dim=1) @ w["gate.weight"].T + w["gate.bias"])
    torch.testing.assert_close(module.fuse(x_t, x_i), g * v_i + (1 - g) * v_t)
    assert [x.shape[1] for x in module.readout_logits(module.fuse(x_t, x_i))] == OUTPUTS


def test_pyro_programs_define_the_scaled_elbo() -> None:
    # -ELBO = data_scale * Σ -log p(y | x, θ) + kl_scale * Σ (log q(θ) - log p(θ)), θ ~ q.
    torch.manual_seed(0)
    module = FusionModuleA(TEXT, IMAGE, DIM, OUTPUTS)
    encoded = _encoded(6)
    targets = _learnable_targets(encoded)
    args = (module, encoded.text_feature, encoded.image_feature, targets, 0.3 / 100, 1 / 6, (0.0, 1.0), {})
    pyro.set_rng_seed(1)
    loss = Trace_ELBO().loss(pyro_model, pyro_guide, *args)
    pyro.set_rng_seed(1)
    guide_trace = poutine.trace(pyro_guide).get_trace(*args)
    theta = {name: site["value"] for name, site in guide_trace.nodes.items() if site["type"] == "sample"}
    assert set(theta) == {name for name, _, _ in module.sites()}
    kl = sum(
        (
            torch.distributions.Laplace(loc, scale).log_prob(theta[name])
            - torch.distributions.Laplace(0.0, 1.0).log_prob(theta[name])
        ).sum()
        for name, loc, scale in module.sites()
    )
    logits = module.readout_logits(module.fuse(encoded.text_feature, encoded.image_feature, theta))
    nll = sum(
        torch.nn.functional.cross_entropy(logits[i], targets[:, i], reduction="sum") for i in range(len(ALL_TASKS))
    )
    nll = nll + torch.nn.functional.binary_cross_entropy_with_logits(
        logits[-1], task_b_targets(targets), reduction="sum"
    )
    assert loss == pytest.approx((nll / 6 + kl * 0.3 / 100).item(), rel=1e-5)


def test_elbo_v2_gives_elbo_v1s_gradient_on_reparameterised_sites() -> None:
    grads = []
    for variant in ("elbo_v1", "elbo_v2"):
        torch.manual_seed(0)
        head = PmmoHead(TEXT, IMAGE, DIM, 12, dropout=0.0, task_b_direct=True)
        step = PmmoStep(head, PMMO_VARIANTS[variant], train_size=50, total_steps=10)
        encoded = _encoded(8)
        pyro.set_rng_seed(3)
        step(encoded, _learnable_targets(encoded))
        grads.append(head.module_a.layers["gate"].weight_loc.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_training_steps_learn() -> None:
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    head = PmmoHead(TEXT, IMAGE, DIM, 16, dropout=0.0, task_b_direct=True)
    encoded = _encoded(32)
    targets = _learnable_targets(encoded)
    # KL weight fixed at 1 (ELBOv1 + L2), so the ELBO itself must fall.
    step = PmmoStep(head, PmmoConfig(kl_start=None, lr_a=1e-2, lr_c=1e-2), train_size=32, total_steps=40)
    before = {name: p.detach().clone() for name, p in head.named_parameters()}
    stats = [step(encoded, targets) for _ in range(40)]
    assert sum(s["c_loss"] for s in stats[-5:]) < 0.7 * sum(s["c_loss"] for s in stats[:5])
    assert sum(s["elbo"] for s in stats[-5:]) < sum(s["elbo"] for s in stats[:5])
    changed = {name for name, p in head.named_parameters() if not torch.equal(p, before[name])}
    assert "module_a.layers.gate.weight_loc" in changed and "module_a.layers.text.weight_rho" in changed
    assert "module_a.readout.weight" in changed and any(n.startswith("module_c.") for n in changed)
    head.eval()
    accuracy = (head(encoded)[0].argmax(dim=1) == targets[:, 0]).float().mean()
    assert accuracy > 0.7


@pytest.mark.parametrize("variant", sorted(PMMO_VARIANTS))
def test_every_variant_trains_module_a_and_c(variant: str) -> None:
    torch.manual_seed(0)
    head = PmmoHead(TEXT, IMAGE, DIM, 12, dropout=0.1, task_b_direct=True)
    encoded = _encoded(16)
    step = PmmoStep(head, PMMO_VARIANTS[variant], train_size=16, total_steps=4)
    before = head.module_a.layers["image"].weight_loc.detach().clone()
    c_before = head.module_c.outputs[0].bias.detach().clone()
    for _ in range(2):
        stats = step(encoded, _learnable_targets(encoded))
    assert all(math.isfinite(v) for v in stats.values())
    assert not torch.equal(head.module_a.layers["image"].weight_loc, before)
    assert not torch.equal(head.module_c.outputs[0].bias, c_before)


def test_prediction_uses_the_posterior_mean_and_samples_give_a_spread() -> None:
    torch.manual_seed(0)
    head = PmmoHead(TEXT, IMAGE, DIM, 12, dropout=0.5, task_b_direct=False).eval()
    encoded = _encoded(4)
    mean_path = head.module_c(
        head.module_a.fuse(encoded.text_feature, encoded.image_feature, head.module_a.posterior_mean())
    )
    for got, want in zip(head(encoded), mean_path):
        torch.testing.assert_close(got, want)
    probabilities = output_probabilities(head(encoded))
    mean, spread = predict_with_samples(head, encoded, samples=16)
    assert len(mean) == len(ALL_TASKS) and all(s.shape == m.shape for s, m in zip(spread, mean))
    for m, p in zip(mean, probabilities):  # posterior scale 0.01 at the start: samples ≈ the mean
        torch.testing.assert_close(m, p, atol=0.02, rtol=0)
    with torch.no_grad():
        for layer in head.module_a.layers.values():
            layer.weight_rho.fill_(math.log(math.expm1(1.0)))
    _, wide = predict_with_samples(head, encoded, samples=16)
    assert min(float(w.mean()) for w in wide) > 5 * max(float(s.mean()) for s in spread)


def test_config_rejects_unknown_variants() -> None:
    with pytest.raises(ValueError, match="elbo"):
        PmmoConfig(elbo="renyi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="penalty"):
        PmmoConfig(penalty="l3")  # type: ignore[arg-type]
