"""OSCAR (Li et al. 2020) as a meme classifier: one BERT encoder over [text; object tags; regions].

Text and tags are BERT WordPiece tokens with BERT's word, position and token-type embeddings
(``[CLS] text [SEP] tags [SEP]``, types 0 and 1); each region's feature (detector feature + 6-d box
geometry) is projected to the hidden size (Linear -> LayerNorm -> dropout, as Oscar/VinVL's
image embedding) and appended to the sequence without position embeddings. The pooled [CLS]
state feeds the task heads. Tensors in, tensors out.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.heads import MultiTaskHead, TaskLogits
from training.oscar.config import OscarArchitecture


def additive_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] 1/0 -> [B, 1, 1, S]: 0 where attended, the dtype's minimum where masked (BERT's form)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class OscarClassifier(nn.Module):
    def __init__(self, bert: nn.Module, region_dim: int, head_hidden: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.bert = bert
        hidden = bert.config.hidden_size
        self.region_embedding = nn.Sequential(
            nn.Linear(region_dim, hidden),
            nn.LayerNorm(hidden, eps=bert.config.layer_norm_eps),
            nn.Dropout(bert.config.hidden_dropout_prob),
        )
        self.head = MultiTaskHead(hidden, head_hidden, dropout)

    @classmethod
    def from_architecture(
        cls,
        arch: OscarArchitecture,
        head_hidden: int,
        dropout: float,
        bert: nn.Module | None = None,
    ) -> OscarClassifier:
        """A model of ``arch``; its BERT random-initialised unless ``bert`` (pre-trained) is given."""
        from transformers import BertConfig, BertModel

        if bert is None:
            bert = BertModel(BertConfig(**arch.bert_config), add_pooling_layer=True)
        return cls(bert, arch.region_dim, head_hidden, dropout)

    def encode(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        region_features: torch.Tensor,
        region_mask: torch.Tensor,
    ) -> torch.Tensor:
        """The pooled [CLS] state [B, hidden] over text, tags and regions."""
        tokens = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        regions = self.region_embedding(region_features)
        sequence = torch.cat([tokens, regions], dim=1)
        mask = torch.cat([attention_mask, region_mask], dim=1)
        states = self.bert.encoder(sequence, attention_mask=additive_attention_mask(mask, sequence.dtype))
        return self.bert.pooler(states.last_hidden_state)

    def forward(
        self,
        oscar_input_ids: torch.Tensor,
        oscar_token_type_ids: torch.Tensor,
        oscar_attention_mask: torch.Tensor,
        region_features: torch.Tensor,
        region_mask: torch.Tensor,
    ) -> TaskLogits:
        return self.head(
            self.encode(oscar_input_ids, oscar_token_type_ids, oscar_attention_mask, region_features, region_mask)
        )
