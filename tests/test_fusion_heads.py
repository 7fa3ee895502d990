"""The course report's fusion operations (Sec. 1.4): each formula against a hand computation, and
each module's output shape."""

import pytest
import torch
from torch import nn

from training.fusion.heads import (
    FUSION_OPS,
    AttentionFusion,
    BilinearFusion,
    ElementwiseFusion,
    FactorisedBilinearFusion,
    GatedFusion,
    Modality,
    MultiHeadCrossAttention,
    bilinear_fusion,
    build_fusion,
    concat_fusion,
    cross_attention_fusion,
    factorised_bilinear_fusion,
    gated_fusion,
    max_fusion,
    product_fusion,
    sum_fusion,
)

B, D = 3, 8


def _vectors(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)


def _modality(feature: torch.Tensor, length: int, seed: int) -> Modality:
    tokens = torch.randn(feature.shape[0], length, feature.shape[1], generator=torch.Generator().manual_seed(seed))
    return Modality(feature, tokens, torch.ones(feature.shape[0], length, dtype=torch.bool))


def test_elementwise_formulas() -> None:
    img = torch.tensor([[1.0, -2.0, 3.0]])
    txt = torch.tensor([[0.5, 4.0, -1.0]])
    assert concat_fusion(img, txt).tolist() == [[1.0, -2.0, 3.0, 0.5, 4.0, -1.0]]
    assert sum_fusion(img, txt).tolist() == [[1.5, 2.0, 2.0]]
    assert product_fusion(img, txt).tolist() == [[0.5, -8.0, -3.0]]
    assert max_fusion(img, txt).tolist() == [[1.0, 4.0, 3.0]]


def test_gated_formula() -> None:
    img, txt = _vectors()
    g = torch.Generator().manual_seed(1)
    w_img, w_txt, w_0 = (
        torch.randn(D, D, generator=g),
        torch.randn(D, D, generator=g),
        torch.randn(2 * D, 2 * D, generator=g),
    )
    got = gated_fusion(img, txt, w_img, w_txt, w_0)
    for b in range(B):  # one row at a time, with explicit sums
        f0 = []
        for f, w in ((img[b], w_img), (txt[b], w_txt)):
            f0 += [torch.sigmoid(sum(f[i] * w[i, j] for i in range(D))) * f[j] for j in range(D)]
        f0 = torch.stack(f0)
        want = torch.stack([torch.sigmoid(sum(f0[i] * w_0[i, j] for i in range(2 * D))) * f0[j] for j in range(2 * D)])
        torch.testing.assert_close(got[b], want)


def test_bilinear_formula() -> None:
    img, txt = _vectors()
    w = torch.randn(5, D, D, generator=torch.Generator().manual_seed(2))
    got = bilinear_fusion(img, txt, w)
    want = torch.stack([torch.stack([img[b] @ w[k] @ txt[b] for k in range(5)]) for b in range(B)])
    torch.testing.assert_close(got, want)
    assert got.shape == (B, 5)


def test_factorised_bilinear_is_a_low_rank_bilinear() -> None:
    # ((f_img W_img) ⊙ (f_aud W_aud)) W_f = bilinear fusion with W_k = Σ_h W_f[h,k] W_img[:,h] W_aud[:,h]^T
    img, txt = _vectors()
    g = torch.Generator().manual_seed(3)
    w_img, w_txt, w_f = torch.randn(D, 4, generator=g), torch.randn(D, 4, generator=g), torch.randn(4, 6, generator=g)
    low_rank = torch.einsum("hk,ih,jh->kij", w_f, w_img, w_txt)
    torch.testing.assert_close(
        factorised_bilinear_fusion(img, txt, w_img, w_txt, w_f), bilinear_fusion(img, txt, low_rank)
    )


def test_cross_attention_is_torch_multihead_attention() -> None:
    torch.manual_seed(0)
    ours = MultiHeadCrossAttention(D, heads=2)
    reference = nn.MultiheadAttention(D, 2, batch_first=True)
    with torch.no_grad():  # the same weights: in_proj = [W_q; W_k; W_v]
        reference.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.kv.weight]))
        reference.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.kv.bias]))
        reference.out_proj.weight.copy_(ours.out.weight)
        reference.out_proj.bias.copy_(ours.out.bias)
    query = torch.randn(B, D)
    keys = torch.randn(B, 5, D)
    valid = torch.tensor([[True] * 5, [True, True, False, False, False], [True, False, True, True, False]])
    want, _ = reference(query[:, None], keys, keys, key_padding_mask=~valid)
    torch.testing.assert_close(ours(query, keys, valid), want[:, 0])


def test_cross_attention_formula_and_padding() -> None:
    torch.manual_seed(0)
    fusion = AttentionFusion(D, heads=2).eval()
    img, txt = _vectors()
    image, text = _modality(img, 4, 1), _modality(txt, 6, 2)
    want = fusion.norm(
        fusion.attention(img, text.tokens, text.valid) + fusion.attention(txt, image.tokens, image.valid)
    )  # LN(MhA(i,a,a) + MhA(a,i,i))
    torch.testing.assert_close(cross_attention_fusion(fusion.attention, fusion.norm, image, text), want)
    torch.testing.assert_close(fusion(image, text), want)
    # One token each: attention is the value/output projection of the other feature (softmax of 1).
    attention = fusion.attention
    one_img, one_txt = _modality(img, 1, 3), _modality(txt, 1, 4)
    value = lambda x: attention.out(nn.functional.linear(x, attention.kv.weight[D:], attention.kv.bias[D:]))  # noqa: E731
    torch.testing.assert_close(
        fusion(one_img, one_txt), fusion.norm(value(one_txt.tokens[:, 0]) + value(one_img.tokens[:, 0]))
    )
    # Padded text tokens do not matter.
    garbage = text.tokens.clone()
    garbage[:, 3:] = 1e3
    padded = Modality(txt, garbage, torch.arange(6)[None, :].expand(B, 6) < 3)
    clean = Modality(txt, text.tokens, padded.valid)
    torch.testing.assert_close(fusion(image, padded), fusion(image, clean))


@pytest.mark.parametrize("name", FUSION_OPS)
def test_every_fusion_op_output_shape(name: str) -> None:
    fusion = build_fusion(name, D, heads=2)
    img, txt = _vectors()
    out = fusion(_modality(img, 4, 1), _modality(txt, 6, 2))
    expected = {"concat": 2 * D, "gated": 2 * D}.get(name, D)
    assert out.shape == (B, expected) == (B, fusion.out_dim)
    assert torch.isfinite(out).all()


def test_modules_apply_their_formulas() -> None:
    img, txt = _vectors()
    image, text = _modality(img, 2, 1), _modality(txt, 2, 2)
    gated = GatedFusion(D)
    torch.testing.assert_close(gated(image, text), gated_fusion(img, txt, gated.w_img, gated.w_txt, gated.w_0))
    bilinear = BilinearFusion(D, 5)
    torch.testing.assert_close(bilinear(image, text), bilinear_fusion(img, txt, bilinear.w))
    factorised = FactorisedBilinearFusion(D, 4, 5)
    assert factorised(image, text).shape == (B, 5)
    assert ElementwiseFusion("max", D)(image, text).tolist() == max_fusion(img, txt).tolist()
    with pytest.raises(ValueError, match="unknown"):
        build_fusion("outer", D)
