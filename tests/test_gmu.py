"""The GMU baseline (Arevalo et al.): the gated unit's formula, maxout, max-norm, batch norm."""

import torch

from memotion.labels import ALL_TASKS, TASK_B_NAMES
from training.fusion.gmu import GatedMultimodalUnit, GMUHead, gmu
from training.fusion.layers import BatchNorm1d, MaxoutMLP, max_norm, maxout
from training.fusion.models import Encoded


def _encoded(batch: int, text_width: int = 6, image_width: int = 10) -> Encoded:
    g = torch.Generator().manual_seed(batch)
    return Encoded(
        torch.randn(batch, 4, text_width, generator=g),
        torch.randn(batch, text_width, generator=g),
        torch.ones(batch, 4, dtype=torch.bool),
        torch.randn(batch, 5, image_width, generator=g),
        torch.randn(batch, image_width, generator=g),
    )


def test_gmu_mixes_by_the_gate() -> None:
    h_text, h_image = torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([[3.0, -2.0, 5.0]])
    gate = torch.tensor([[0.0, 1.0, 0.25]])
    assert gmu(h_text, h_image, gate).tolist() == [[1.0, -2.0, 0.5]]  # z h_v + (1 - z) h_t


def test_gated_unit_formula() -> None:
    torch.manual_seed(0)
    unit = GatedMultimodalUnit(6, 10, 4, bound=None)
    x_t, x_v = torch.randn(3, 6), torch.randn(3, 10)
    h_t, h_v = torch.tanh(x_t @ unit.text.weight.T), torch.tanh(x_v @ unit.image.weight.T)
    z = torch.sigmoid(torch.cat([x_v, x_t], dim=1) @ unit.gate.weight.T)  # eq. 3: z = σ(W_z [x_v, x_t])
    torch.testing.assert_close(unit(x_t, x_v), z * h_v + (1 - z) * h_t)


def test_maxout_takes_the_max_of_each_units_pieces() -> None:
    x = torch.tensor([[1.0, 5.0, -2.0, -3.0, 0.0, 0.5]])  # 3 units x 2 pieces
    assert maxout(x, 2).tolist() == [[5.0, -2.0, 0.5]]


def test_max_norm_caps_each_units_incoming_weights() -> None:
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])  # norms 5 and 0.5
    capped = max_norm(w, 2.0)
    torch.testing.assert_close(capped.norm(dim=1), torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(capped[1], w[1])  # under the bound: unchanged
    torch.testing.assert_close(capped[0] / capped[0].norm(), w[0] / w[0].norm())  # direction kept


def test_max_norm_holds_after_training_steps() -> None:
    torch.manual_seed(0)
    mlp = MaxoutMLP(8, 16, [3, 2], dropout=0.0, bound=0.5)
    optimizer = torch.optim.SGD(mlp.parameters(), lr=5.0)
    for _ in range(5):
        loss = -sum(out.sum() for out in mlp(torch.randn(4, 8)))  # pushes weights to grow
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for layer in [mlp.hidden[0].linear, *mlp.outputs]:
        assert layer.weight.norm(dim=1).max() <= 0.5 + 1e-5


def test_batch_norm_accepts_a_training_batch_of_one() -> None:
    norm = BatchNorm1d(3).train()
    out = norm(torch.randn(1, 3))
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    assert norm(torch.randn(4, 3)).shape == (4, 3)


def test_gmu_head_outputs_every_task_and_optionally_task_b() -> None:
    torch.manual_seed(0)
    for direct in (False, True):
        head = GMUHead(6, 10, dim=8, hidden=12, dropout=0.5, task_b_direct=direct).train()
        shapes = [tuple(x.shape) for x in head(_encoded(5))]
        assert shapes == [(5, t.num_classes) for t in ALL_TASKS] + ([(5, len(TASK_B_NAMES))] if direct else [])
