"""What the hardware can do and what the models ask of it: FLOPs of a forward pass, and the
machine's measured matmul rate (the physical limit the benchmarks' achieved FLOP/s is compared with).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def _sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:  # shapes [B, H, L, E]
    b, h, length, e = query
    s, ev = key[-2], value[-1]
    return 2 * b * h * length * s * e + 2 * b * h * length * s * ev


def _lstm_layer_flops(x, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    tokens = x[0] * x[1] if len(x) == 3 else x[0]  # padded [T, B, I] or packed [sum T, I]
    return 2 * tokens * (w_ih[0] * w_ih[1] + w_hh[0] * w_hh[1])


def count_flops(forward: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of one call of ``forward`` on CPU PyTorch. Counts matmuls,
    convolutions, attention and LSTM layers (PyTorch's counter misses the last two on CPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops, aten.mkldnn_rnn_layer: _lstm_layer_flops}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused path hides attention from the counter
    try:
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            forward()
        return counter.get_total_flops()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def matmul_rate(device: str, size: int, seconds: float = 2.0, dtype: torch.dtype = torch.float32) -> float:
    """Measured matmul FLOP/s on square ``size`` matrices of ``dtype`` (TF32 off on CUDA)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
        if runs % 10 == 0:
            sync()
    sync()
    return 2 * size**3 * runs / (time.perf_counter() - started)
