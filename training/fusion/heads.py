"""The fusion operations of the course report (Sec. 1.4): pure functions and the modules holding
their weights. Tensors in, tensors out.

The report fuses f_img and f_aud; here they are the image and the text feature (both projected to a
common width ``dim`` by the caller, see ``training.fusion.models``). Feature vectors are rows
(``[B, D]``), so "f * W" is ``f @ W``. Attention fusion also takes each modality's token sequence:
each modality's feature is the query and the other modality's tokens the keys and values, which is
the report's formula when a sequence has one token (then attention is a plain linear map).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Modality(NamedTuple):
    """One modality's fused-space representation: its feature and its token sequence."""

    feature: torch.Tensor  # [B, D]
    tokens: torch.Tensor  # [B, N, D]
    valid: torch.Tensor  # [B, N] bool: tokens that may be attended to (not padding)


# --- the formulas ------------------------------------------------------------------------------


def concat_fusion(f_img: torch.Tensor, f_txt: torch.Tensor) -> torch.Tensor:
    return torch.cat([f_img, f_txt], dim=-1)  # f = [f_img, f_aud]


def sum_fusion(f_img: torch.Tensor, f_txt: torch.Tensor) -> torch.Tensor:
    return f_img + f_txt  # f = f_img + f_aud


def product_fusion(f_img: torch.Tensor, f_txt: torch.Tensor) -> torch.Tensor:
    return f_img * f_txt  # f = f_img ⊙ f_aud


def max_fusion(f_img: torch.Tensor, f_txt: torch.Tensor) -> torch.Tensor:
    return torch.maximum(f_img, f_txt)  # f = max(f_img, f_aud)


AttendFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_attention_fusion(
    attend: AttendFn,
    norm: Callable[[torch.Tensor], torch.Tensor],
    image: Modality,
    text: Modality,
) -> torch.Tensor:
    """f = LayerNorm(MhA(f_img, f_aud, f_aud) + MhA(f_aud, f_img, f_img)), one MhA both ways.

    ``attend(query [B, D], keys_values [B, N, D], valid [B, N]) -> [B, D]``.
    """
    image_to_text = attend(image.feature, text.tokens, text.valid)
    text_to_image = attend(text.feature, image.tokens, image.valid)
    return norm(image_to_text + text_to_image)


def gated_fusion(
    f_img: torch.Tensor,
    f_txt: torch.Tensor,
    w_img: torch.Tensor,
    w_txt: torch.Tensor,
    w_0: torch.Tensor,
) -> torch.Tensor:
    """f_0 = [σ(f_img W_img) ⊙ f_img, σ(f_aud W_aud) ⊙ f_aud];  f = σ(f_0 W_0) ⊙ f_0."""
    f_0 = torch.cat([torch.sigmoid(f_img @ w_img) * f_img, torch.sigmoid(f_txt @ w_txt) * f_txt], dim=-1)
    return torch.sigmoid(f_0 @ w_0) * f_0


def bilinear_fusion(f_img: torch.Tensor, f_txt: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """f_k = f_img^T W_k f_aud for W [n_f, n_i, n_a]: every pairwise interaction."""
    return torch.einsum("bi,kij,bj->bk", f_img, w, f_txt)


def factorised_bilinear_fusion(
    f_img: torch.Tensor,
    f_txt: torch.Tensor,
    w_img: torch.Tensor,
    w_txt: torch.Tensor,
    w_f: torch.Tensor,
) -> torch.Tensor:
    """f = ((f_img W_img) ⊙ (f_aud W_aud)) W_f, W_img [n_i, h], W_aud [n_a, h], W_f [h, n_f]."""
    return ((f_img @ w_img) * (f_txt @ w_txt)) @ w_f


# --- modules -----------------------------------------------------------------------------------


class FusionOp(nn.Module):
    """A fusion operation: ``forward(image, text) -> [B, out_dim]``."""

    out_dim: int
    uses_tokens: bool = False  # whether it reads Modality.tokens (else only .feature)

    def forward(self, image: Modality, text: Modality) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class ElementwiseFusion(FusionOp):
    """Concatenation, addition, multiplication or maximum: no weights."""

    OPS = {"concat": concat_fusion, "sum": sum_fusion, "product": product_fusion, "max": max_fusion}

    def __init__(self, op: str, dim: int) -> None:
        super().__init__()
        if op not in self.OPS:
            raise ValueError(f"unknown element-wise fusion {op!r}; choose from {sorted(self.OPS)}")
        self.op = op
        self.out_dim = 2 * dim if op == "concat" else dim

    def forward(self, image: Modality, text: Modality) -> torch.Tensor:
        return self.OPS[self.op](image.feature, text.feature)


class MultiHeadCrossAttention(nn.Module):
    """Multi-head attention of one query vector over a key/value sequence (torch's
    ``nn.MultiheadAttention`` maths, written with scaled_dot_product_attention so it exports to ONNX)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, keys_values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        batch, length, dim = keys_values.shape
        head_dim = dim // self.heads
        q = self.q(query).view(batch, 1, self.heads, head_dim).transpose(1, 2)  # [B, H, 1, d]
        k, v = self.kv(keys_values).view(batch, length, 2, self.heads, head_dim).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B, H, N, d]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :])
        return self.out(attended.transpose(1, 2).reshape(batch, dim))


class AttentionFusion(FusionOp):
    uses_tokens = True

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = MultiHeadCrossAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, image: Modality, text: Modality) -> torch.Tensor:
        return cross_attention_fusion(self.attention, self.norm, image, text)


def _linear_weight(fan_in: int, *shape: int) -> nn.Parameter:
    """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for a weight of ``shape``."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class GatedFusion(FusionOp):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w_img = _linear_weight(dim, dim, dim)
        self.w_txt = _linear_weight(dim, dim, dim)
        self.w_0 = _linear_weight(2 * dim, 2 * dim, 2 * dim)
        self.out_dim = 2 * dim

    def forward(self, image: Modality, text: Modality) -> torch.Tensor:
        return gated_fusion(image.feature, text.feature, self.w_img, self.w_txt, self.w_0)


class BilinearFusion(FusionOp):
    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.w = _linear_weight(dim, out_dim, dim, dim)
        self.out_dim = out_dim

    def forward(self, image: Modality, text: Modality) -> torch.Tensor:
        return bilinear_fusion(image.feature, text.feature, self.w)


class FactorisedBilinearFusion(FusionOp):
    def __init__(self, dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.w_img = _linear_weight(dim, dim, hidden)
        self.w_txt = _linear_weight(dim, dim, hidden)
        self.w_f = _linear_weight(hidden, hidden, out_dim)
        self.out_dim = out_dim

    def forward(self, image: Modality, text: Modality) -> torch.Tensor:
        return factorised_bilinear_fusion(image.feature, text.feature, self.w_img, self.w_txt, self.w_f)


FUSION_OPS = ("concat", "sum", "product", "max", "attention", "gated", "bilinear", "factorised_bilinear")


def build_fusion(name: str, dim: int, heads: int = 4) -> FusionOp:
    """The fusion op ``name`` over ``dim``-wide features; bilinear ones output ``dim`` too."""
    if name in ElementwiseFusion.OPS:
        return ElementwiseFusion(name, dim)
    if name == "attention":
        return AttentionFusion(dim, heads)
    if name == "gated":
        return GatedFusion(dim)
    if name == "bilinear":
        return BilinearFusion(dim, dim)
    if name == "factorised_bilinear":
        return FactorisedBilinearFusion(dim, dim, dim)
    raise ValueError(f"unknown fusion {name!r}; choose from {FUSION_OPS}")
