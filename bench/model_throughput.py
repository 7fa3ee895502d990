"""Model compute throughput: the paper's three CLIP models, PyTorch, per precision and batch size.

    python bench/model_throughput.py                                   # tiny config, CPU
    python bench/model_throughput.py --clip ViT-B-32 --device cuda     # real-size models on a GPU

What `bench/serving.py` cannot show on a machine without Triton's GPU container: how fast the
models themselves run on an accelerator at the real ViT-B/32 size (random-initialised: speed does
not depend on the weights). For each model, precision (fp32, bf16 autocast) and batch size: memes/s,
milliseconds per batch, achieved FLOP/s (FLOPs per meme counted on CPU x memes/s) and its fraction
of the matmul rate measured on the same device in the same run (the physical limit in practice).
Ratios: each row's memes/s over the same model's fp32 batch-1 row. Prints a table, writes JSON
(default bench/results/model_throughput.json). Needs only torch and open_clip.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.backbone import TINY_CLIP, clip_context_length, clip_image_size, create_clip, register_model_configs
from training.compute import count_flops, matmul_rate
from training.factory import MODEL_KINDS, ModelConfig, build_model, model_inputs
from training.recipe import tiny_recipe

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CAPTION_TOKENS = 20  # a typical meme caption's length in CLIP BPE tokens


def sample_inputs(batch: int, context_length: int, image_size: int, vocab: int, device: str) -> dict[str, torch.Tensor]:
    """Token ids shaped like real captions (SOT, words, EOT, zero padding) and random pixels."""
    ids = torch.zeros(batch, context_length, dtype=torch.int64)
    length = min(CAPTION_TOKENS, context_length - 2)
    ids[:, 0] = vocab - 2  # start of text
    ids[:, 1 : 1 + length] = torch.randint(1, vocab - 2, (batch, length))
    ids[:, 1 + length] = vocab - 1  # end of text (the largest id, what CLIP pools on)
    pixels = torch.randn(batch, 3, image_size, image_size)
    return {"input_ids": ids.to(device), "pixel_values": pixels.to(device)}


def time_forward(
    model: torch.nn.Module, args: list[torch.Tensor], dtype: torch.dtype, device: str, seconds: float
) -> tuple[float, int]:
    """Seconds per call (mean over as many calls as fit in ``seconds`` after warm-up), and calls."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    with torch.inference_mode(), autocast:
        for _ in range(3):
            model(*args)
        sync()
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or calls < 3:
            model(*args)
            calls += 1
            if device.startswith("cuda") and calls % 10 == 0:
                sync()
        sync()
    return (time.perf_counter() - started) / calls, calls


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=TINY_CLIP, help="open_clip model config (default: the tiny test config)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--kinds", default=",".join(MODEL_KINDS))
    parser.add_argument("--batches", default="1,8,32,128")
    parser.add_argument(
        "--dtypes", default=None, help="default fp32,bf16 on CUDA, fp32 on CPU (oneDNN has no bf16 LSTM here)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per row")
    parser.add_argument("--matmul-size", type=int, default=None, help="default 8192 on CUDA, 1024 on CPU")
    parser.add_argument("--out", type=Path, default=Path("bench/results/model_throughput.json"))
    return parser.parse_args()


@dataclass(frozen=True)
class Setup:
    """What every row of one run shares: the input shapes, precisions, batch sizes and matmul rates."""

    context_length: int
    image_size: int
    vocab: int
    dtypes: list[str]
    batches: list[int]
    rates: dict[str, float]
    matmul_size: int


def prepare(args: argparse.Namespace) -> Setup:
    register_model_configs()
    torch.backends.cuda.matmul.allow_tf32 = False
    probe = create_clip(args.clip, None)
    dtypes = (args.dtypes or ("fp32,bf16" if args.device.startswith("cuda") else "fp32")).split(",")
    size = args.matmul_size or (8192 if args.device.startswith("cuda") else 1024)
    return Setup(
        context_length=clip_context_length(probe),
        image_size=clip_image_size(probe),
        vocab=probe.vocab_size,
        dtypes=dtypes,
        batches=[int(b) for b in args.batches.split(",")],
        rates={d: matmul_rate(args.device, size, dtype=DTYPES[d]) for d in dtypes},
        matmul_size=size,
    )


def measure_kind(kind: str, args: argparse.Namespace, setup: Setup) -> tuple[float, list[dict[str, Any]]]:
    """FLOPs per meme of one model kind and a row per precision and batch size."""
    config = tiny_recipe().model if args.clip == TINY_CLIP else ModelConfig()
    model = build_model(kind, args.clip, config, None).eval()
    one = sample_inputs(1, setup.context_length, setup.image_size, setup.vocab, "cpu")
    with torch.inference_mode():
        flops = count_flops(lambda: model(*(one[name] for name in model_inputs(kind))))
    model = model.to(args.device)
    rows: list[dict[str, Any]] = []
    baseline = None
    for dtype in setup.dtypes:
        for batch in setup.batches:
            inputs = sample_inputs(batch, setup.context_length, setup.image_size, setup.vocab, args.device)
            seconds, calls = time_forward(
                model, [inputs[n] for n in model_inputs(kind)], DTYPES[dtype], args.device, args.seconds
            )
            memes_per_s = batch / seconds
            baseline = baseline or memes_per_s
            achieved = memes_per_s * flops
            rows.append(
                {
                    "model": kind,
                    "dtype": dtype,
                    "batch": batch,
                    "calls": calls,
                    "ms_per_batch": seconds * 1000,
                    "memes_per_s": memes_per_s,
                    "speedup_vs_fp32_batch1": memes_per_s / baseline,
                    "achieved_tflops": achieved / 1e12,
                    "of_matmul_rate": achieved / setup.rates[dtype],
                }
            )
            print(f"{kind:<11} {dtype:<5} batch {batch:>4}: {memes_per_s:10.1f} memes/s", flush=True)
    return flops, rows


def print_table(args: argparse.Namespace, setup: Setup, device_name: str, flops: dict[str, float], rows: list) -> None:
    print(f"\n{args.clip} on {args.device} ({device_name}), torch {torch.__version__}")
    print(
        "matmul rate "
        + ", ".join(f"{d} {r / 1e12:.2f} TFLOP/s" for d, r in setup.rates.items())
        + f" ({setup.matmul_size}^3)"
    )
    print("FLOPs per meme " + ", ".join(f"{k} {f / 1e9:.2f} G" for k, f in flops.items()))
    print("\n| model | dtype | batch | ms/batch | memes/s | x fp32 b1 | TFLOP/s | of matmul rate |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['ms_per_batch']:.2f} | {r['memes_per_s']:.1f} "
            f"| {r['speedup_vs_fp32_batch1']:.1f} | {r['achieved_tflops']:.2f} | {100 * r['of_matmul_rate']:.1f}% |"
        )


def main() -> None:
    args = parse_args()
    setup = prepare(args)
    rows: list[dict[str, Any]] = []
    flops: dict[str, float] = {}
    for kind in [k for k in args.kinds.split(",") if k]:
        flops[kind], kind_rows = measure_kind(kind, args, setup)
        rows += kind_rows
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor()
    print_table(args, setup, device_name, flops, rows)
    report = {
        "clip": args.clip,
        "device": args.device,
        "device_name": device_name,
        "torch": torch.__version__,
        "matmul": {"size": setup.matmul_size, "flops_per_s": setup.rates},
        "flops_per_meme": flops,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
