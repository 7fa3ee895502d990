"""The CLIP text and image towers, returning token sequences as well as the classification embedding.

Paper eq. 1 and 4: E_t = [F_cls,t, e_t1..e_ts] and E_i = [F_cls,i, e_i1..e_ip]. Widths are the towers'
own (pre-projection) widths, d_t and d_i, as in the paper (512 and 768 for ViT-B/32).
"""

from __future__ import annotations

import torch
from open_clip.model import CLIP
from torch import nn


def token_lengths(input_ids: torch.Tensor) -> torch.Tensor:
    """Tokens up to and including <end_of_text>, the highest id in CLIP's vocabulary."""
    return input_ids.argmax(dim=-1) + 1


class ClipTextEncoder(nn.Module):
    """CLIP text transformer: ids [B, L] -> (token states [B, L, d_t], F_cls,t [B, d_t])."""

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
        x = self.token_embedding(input_ids) + self.positional_embedding
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        # CLIP's pooled text feature sits at the <end_of_text> token.
        cls = x[torch.arange(x.shape[0], device=x.device), input_ids.argmax(dim=-1)]
        return x, cls


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
