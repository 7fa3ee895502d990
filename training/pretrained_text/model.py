"""The paper's text model (Fig. 1a: CLS classifier + 2-layer BiLSTM over the token states, logits
summed) on a pretrained BERT encoder instead of CLIP's text tower. Tensors in, tensors out.

Input: WordPiece ids [B, L] (``[CLS] text [SEP]`` padded with id ``pad_id``); the attention mask
and the lengths the BiLSTM is packed by are the non-padding positions. Outside ONNX export the
batch is first cut to its longest text: padding changes nothing (it is masked and the BiLSTM is
packed) but costs time on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.clip_text import ClipTextClassifier, exporting
from training.oscar.model import additive_attention_mask


class BertTokenEncoder(nn.Module):
    """BERT: (ids [B, L], mask [B, L]) -> (token states [B, L, d], [CLS] state [B, d])."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.width = int(bert.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        states = self.bert.encoder(tokens, attention_mask=additive_attention_mask(mask, tokens.dtype))
        hidden = states.last_hidden_state
        return hidden, hidden[:, 0]

    def freeze_below(self, trainable_layers: int | None) -> None:
        """Train only the top ``trainable_layers`` transformer layers (None: all, embeddings too)."""
        if trainable_layers is None:
            return
        layers = list(self.bert.encoder.layer)
        frozen = [self.bert.embeddings, *layers[: max(0, len(layers) - trainable_layers)]]
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad_(False)


class BertTextClassifier(ClipTextClassifier):
    """CLIP-text's heads (``ClipTextClassifier``) over a ``BertTokenEncoder``."""

    encoder: BertTokenEncoder

    def __init__(
        self,
        bert: nn.Module,
        lstm_hidden: int = 512,
        head_hidden: int = 512,
        dropout: float = 0.1,
        pad_id: int = 0,
    ) -> None:
        super().__init__(BertTokenEncoder(bert), lstm_hidden, head_hidden, dropout)  # type: ignore[arg-type]
        self.pad_id = pad_id
        self.encoder_lr: float | None = None  # set by the recipe; None: the heads' lr

    def forward(self, bert_input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        mask = (bert_input_ids != self.pad_id).to(torch.int64)
        if not exporting():  # drop all-padding columns (same logits, less work)
            keep = int(mask.sum(dim=1).max().clamp(min=1))
            bert_input_ids, mask = bert_input_ids[:, :keep], mask[:, :keep]
        states, cls = self.encoder(bert_input_ids, mask)
        return self.logits_from_features(states, cls, mask.sum(dim=1).clamp(min=1))

    def optimizer_groups(self, lr: float) -> list[dict]:
        """AdamW parameter groups: the (trainable) encoder at ``self.encoder_lr``, the heads at ``lr``."""
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in self.encoder.parameters()}
        heads = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": encoder, "lr": self.encoder_lr or lr}, {"params": heads, "lr": lr}]
