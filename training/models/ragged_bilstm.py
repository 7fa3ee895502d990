"""A bidirectional ``nn.LSTM`` over a padded batch of ragged rows, without per-row sequence lengths.

The same math as running the LSTM on ``pack_padded_sequence(x, lengths)`` (paper Fig. 1a's BiLSTM),
written with unidirectional LSTM calls on full-length rows that share the module's weights
(``weight_ih_l{k}``, ``weight_ih_l{k}_reverse``, ...): per layer, the forward direction runs over the
padded rows and its final state is read at ``length - 1``; the backward direction runs over each
row reversed within its own length (``within_length_reversal``), its final state is read at
``length - 1`` of that run, and its outputs are reversed back before they feed the next layer.
Padding after a row's length never reaches a real position: the forward direction reads it only
after the row's last token, the backward one never (it stays after the reversed row).

Exported to ONNX, every call is an LSTM node with no ``sequence_lens`` input, which OpenVINO runs
exactly (its LSTMSequence gets the shorter rows of a batch wrong when lengths vary per row). The
parameters are the ``nn.LSTM``'s own: state dicts and checkpoints do not change.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def within_length_reversal(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Index [B, T] reversing each row's first ``lengths[b]`` positions and keeping the rest:
    ``length - 1 - t`` where ``t < length``, else ``t`` (its own inverse)."""
    t = torch.arange(steps, device=lengths.device).unsqueeze(0)
    last = (lengths - 1).unsqueeze(1)
    return torch.where(t <= last, last - t, t)


def gather_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for x [B, T, F] and index [B, T']."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _direction(lstm: nn.LSTM, layer: int, suffix: str, x: torch.Tensor) -> torch.Tensor:
    """Outputs [B, T, H] of one direction of ``layer`` of ``lstm`` over x [B, T, I] (batch first), from zero state."""
    names = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
    if lstm.bias:
        names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
    weights = [getattr(lstm, name) for name in names]
    zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)
    outputs, _, _ = torch.lstm(x, (zeros, zeros), weights, lstm.bias, 1, 0.0, False, False, True)
    return outputs


def ragged_bilstm_final_states(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The top layer's final states [B, 2H] (forward, backward) of the bidirectional, batch-first
    ``lstm`` over x [B, T, I] whose row b is ``lengths[b]`` >= 1 steps long: ``cat(h_n[-2], h_n[-1])``
    of ``lstm`` on the packed rows."""
    if not (lstm.bidirectional and lstm.batch_first) or lstm.proj_size:
        raise ValueError("ragged_bilstm_final_states needs a bidirectional, batch-first nn.LSTM without projection")
    lengths = lengths.to(torch.int64)
    reverse = within_length_reversal(lengths, x.shape[1])
    last = (lengths - 1).view(-1, 1)
    for layer in range(lstm.num_layers):
        if layer > 0:
            x = F.dropout(x, lstm.dropout, lstm.training)
        forward = _direction(lstm, layer, "", x)
        backward = gather_steps(_direction(lstm, layer, "_reverse", gather_steps(x, reverse)), reverse)
        x = torch.cat([forward, backward], dim=-1)
    # forward's final state: position length - 1; backward's: its run's length - 1, i.e. position 0
    return torch.cat([gather_steps(forward, last)[:, 0], backward[:, 0]], dim=-1)
