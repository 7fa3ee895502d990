"""CLIP-text (paper Fig. 1a): CLS classifier + 2 BiLSTM layers over the token states, logits summed."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from training.models.encoders import ClipTextEncoder, token_lengths
from training.models.heads import MultiTaskHead, TaskLogits, add_logits
from training.models.ragged_bilstm import ragged_bilstm_final_states


def exporting() -> bool:
    """True while the model is traced or exported to ONNX."""
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


class ClipTextClassifier(nn.Module):
    def __init__(
        self,
        encoder: ClipTextEncoder,
        lstm_hidden: int = 512,
        head_hidden: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.cls_head = MultiTaskHead(encoder.width, head_hidden, dropout)
        self.lstm = nn.LSTM(encoder.width, lstm_hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.seq_head = MultiTaskHead(2 * lstm_hidden, head_hidden, dropout)

    @property
    def token_trimmable(self) -> bool:
        """Same logits for ids cut to the longest text (causal tower, packed BiLSTM): export gives
        input_ids a dynamic token axis (training/export.py) where the tower allows it."""
        return self.encoder.token_trimmable

    def logits_from_features(self, states: torch.Tensor, cls: torch.Tensor, lengths: torch.Tensor) -> TaskLogits:
        return add_logits(self.cls_head(cls), self.seq_head(self.bilstm_states(states, lengths)))

    def bilstm_states(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The top BiLSTM layer's final states [B, 2 x hidden], forward and backward, each text's
        backward direction starting at its last real token, not at padding: packed rows in
        PyTorch; in ONNX export the same math on full-length rows (``ragged_bilstm_final_states``:
        no per-row sequence lengths in the graph, which OpenVINO would run wrongly)."""
        if exporting():
            return ragged_bilstm_final_states(self.lstm, states, lengths)
        packed = pack_padded_sequence(states, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return torch.cat([h_n[-2], h_n[-1]], dim=-1)

    def forward(self, input_ids: torch.Tensor) -> TaskLogits:
        states, cls = self.encoder(input_ids)
        return self.logits_from_features(states, cls, token_lengths(input_ids))
