"""CLIP-multi (paper Fig. 2, eq. 5-6): joined token sequences through 6 attention blocks.

Image tokens are projected d_i -> d_t and appended to the text tokens; the blocks have no residual
connection and no dropout (the paper's choice; ``residual=True`` restores them). The classifier reads
[E~_t[0]; E~_i[0]]. The text and image branches' own logits are kept for gradient blending (eq. 7);
predictions come from the multi-modal logits only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.clip_image import ClipImageClassifier
from training.models.clip_text import ClipTextClassifier
from training.models.encoders import token_lengths
from training.models.heads import MultiTaskHead, TaskLogits


class AttentionBlock(nn.Module):
    """Multi-head self-attention with a key padding mask; optional residual + LayerNorm."""

    def __init__(self, width: int, heads: int, residual: bool = False) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width) if residual else None

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, N, head_dim]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        y = self.out(attended.transpose(1, 2).reshape(batch, length, width))
        return self.norm(x + y) if self.norm is not None else y


class ClipMultiClassifier(nn.Module):
    def __init__(
        self,
        text: ClipTextClassifier,
        image: ClipImageClassifier,
        blocks: int = 6,
        heads: int = 8,
        head_hidden: int = 512,
        dropout: float = 0.1,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.text = text
        self.image = image
        width = text.encoder.width
        self.image_projection = nn.Linear(image.encoder.width, width)
        self.blocks = nn.ModuleList(AttentionBlock(width, heads, residual) for _ in range(blocks))
        self.head = MultiTaskHead(2 * width, head_hidden, dropout)

    @property
    def token_trimmable(self) -> bool:
        """Same logits for ids cut to the longest text: padding is masked out of the keys and the
        classifier reads F_cls,t and the first image token (training/export.py: dynamic token axis)."""
        return self.text.token_trimmable

    def forward_branches(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> dict[str, TaskLogits]:
        """Logits of the text, image and multi-modal branches (for gradient blending)."""
        return self.forward_branches_and_features(input_ids, pixel_values)[0]

    def encoder_features(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(F_cls,t, F_cls,i): the two encoders' classification embeddings (PMR's z^0, z^1)."""
        return self.text.encoder(input_ids)[1], self.image.encoder(pixel_values)[1]

    def forward_branches_and_features(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor
    ) -> tuple[dict[str, TaskLogits], tuple[torch.Tensor, torch.Tensor]]:
        """The branches' logits and the encoders' features from one pass (training/factory.py)."""
        states, text_cls = self.text.encoder(input_ids)
        image_tokens, image_cls = self.image.encoder(pixel_values)
        lengths = token_lengths(input_ids)
        e_t = torch.cat([text_cls[:, None], states], dim=1)  # E_t = [F_cls,t, e_t1..e_ts]
        e_i = self.image_projection(image_tokens)  # E_i, projected d_i -> d_t
        x = torch.cat([e_t, e_i], dim=1)  # eq. 5
        positions = torch.arange(e_t.shape[1], device=x.device)[None, :]
        text_valid = positions <= lengths[:, None]  # F_cls,t plus the real tokens
        image_valid = torch.ones(e_i.shape[:2], dtype=torch.bool, device=x.device)
        key_mask = torch.cat([text_valid, image_valid], dim=1)
        for block in self.blocks:
            x = block(x, key_mask)
        fused = torch.cat([x[:, 0], x[:, e_t.shape[1]]], dim=-1)  # eq. 6
        branches = {
            "text": self.text.logits_from_features(states, text_cls, lengths),
            "image": self.image.logits_from_features(image_cls),
            "multi": self.head(fused),
        }
        return branches, (text_cls, image_cls)

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> TaskLogits:
        return self.forward_branches(input_ids, pixel_values)["multi"]
