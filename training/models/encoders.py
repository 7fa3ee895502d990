"""The CLIP text and image towers, returning token sequences as well as the classification embedding.

Paper eq. 1 and 4: E_t = [F_cls,t, e_t1..e_ts] and E_i = [F_cls,i, e_i1..e_ip]. Widths are the towers'
own (pre-projection) widths, d_t and d_i, as in the paper (512 and 768 for ViT-B/32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import ResidualAttentionBlock
from torch import nn


def self_attention(attn: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``attn(x, x, x, attn_mask=mask)`` for batch-first x [B, L, d], written with shapes the ONNX
    tracer keeps symbolic (nn.MultiheadAttention's own path bakes the traced L into a Reshape)."""
    batch, length, width = x.shape
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(batch, length, 3, attn.num_heads, -1)
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # [B, heads, L, head_dim]
    dropout = attn.dropout if attn.training else 0.0
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(x.dtype), dropout_p=dropout)
    return attn.out_proj(attended.transpose(1, 2).reshape(batch, length, width))


def residual_block(block: ResidualAttentionBlock, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """open_clip's ``ResidualAttentionBlock.forward`` (self-attention, batch first) on ``self_attention``."""
    x = x + block.ls_1(self_attention(block.attn, block.ln_1(x), mask))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def token_lengths(input_ids: torch.Tensor) -> torch.Tensor:
    """Tokens up to and including <end_of_text>, the highest id in CLIP's vocabulary."""
    return input_ids.argmax(dim=-1) + 1


class ClipTextEncoder(nn.Module):
    """CLIP text transformer: ids [B, L] -> (token states [B, L, d_t], F_cls,t [B, d_t]).

    L may be shorter than the context length: the positional embedding and the causal mask are cut
    to L, so ids trimmed to the batch's longest text (``trim_token_ids`` in memotion/tokenizer.py)
    give the same states for every real token as the padded ids (no token attends to a later one).
    """

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.width = int(clip.token_embedding.embedding_dim)
        self.context_length = int(clip.context_length)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = input_ids.shape[1]  # traced as the graph's token axis (dynamic in the export)
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        x = self.ln_final(self.encode(x, self.attn_mask[:length, :length]))
        # CLIP's pooled text feature sits at the <end_of_text> token.
        cls = x[torch.arange(x.shape[0], device=x.device), input_ids.argmax(dim=-1)]
        return x, cls

    @property
    def token_trimmable(self) -> bool:
        """open_clip's standard batch-first blocks: run by ``residual_block``, any length exports."""
        blocks = self.transformer.resblocks
        standard = all(type(b) is ResidualAttentionBlock and isinstance(b.attn, nn.MultiheadAttention) for b in blocks)
        return standard and bool(getattr(self.transformer, "batch_first", True))

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The transformer's blocks on x [B, L, d_t]; other block types run through the transformer
        itself (their export keeps a fixed token length: ``token_trimmable`` is False)."""
        if not self.token_trimmable:
            return self.transformer(x, attn_mask=mask)
        for block in self.transformer.resblocks:
            x = residual_block(block, x, mask)
        return x


class ClipImageEncoder(nn.Module):
    """CLIP vision transformer: pixels [B, 3, S, S] -> (tokens [B, 1+p, d_i], F_cls,i [B, d_i])."""

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        visual = clip.visual
        if not hasattr(visual, "_embeds") or not hasattr(visual, "class_embedding"):
            raise TypeError("only open_clip VisionTransformer image towers are supported")
        self.visual = visual
        self.width = int(visual.class_embedding.shape[-1])

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.visual.ln_post(self.visual.transformer(self.visual._embeds(pixel_values)))
        return tokens, tokens[:, 0]
