"""This machine's matmul roofline: GFLOP/s of square matmuls in FP32, INT8 and BF16, in one run.

    python bench/roofline.py                       # 2 threads, 1024 x 1024, 2 s per point
    python bench/roofline.py --threads 1 --size 2048 --seconds 4

FP32: numpy (its BLAS), PyTorch and ONNX Runtime (MatMul). INT8: PyTorch ``torch._int_mm`` and
ONNX Runtime ``MatMulInteger`` (u8 x s8 -> s32, the product dynamic quantisation serves with; on a
CPU with AVX-512 VNNI / AMX it runs on the integer units). BF16: PyTorch (oneDNN, AMX when the CPU
has it). One multiply-add counts 2 operations in every precision, so INT8 "GFLOP/s" are integer ops.
The best of each precision is the roofline that bench/production_size.py compares the served
members with. Prints a table, writes JSON (default bench/results/roofline.json). The numbers move
with whatever else runs on the machine: compare precisions within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "roofline.json"


def rate(call: Callable[[], object], flops: float, seconds: float) -> float:
    """GFLOP/s of ``call`` (``flops`` per call), best of the runs in ``seconds`` after warm-up."""
    for _ in range(2):
        call()
    best, started = float("inf"), time.perf_counter()
    while time.perf_counter() - started < seconds:
        tick = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - tick)
    return flops / best / 1e9


def _ort_matmul(size: int, integer: bool, threads: int) -> Callable[[], object]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a_type, b_type, op = (TensorProto.UINT8, TensorProto.INT8, "MatMulInteger") if integer else (1, 1, "MatMul")
    out_type = TensorProto.INT32 if integer else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])],
        "matmul",
        [
            helper.make_tensor_value_info("a", a_type, [size, size]),
            helper.make_tensor_value_info("b", b_type, [size, size]),
        ],
        [helper.make_tensor_value_info("c", out_type, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    onnx.checker.check_model(model)
    rng = np.random.default_rng(0)
    if integer:
        feeds = {
            "a": rng.integers(0, 255, (size, size), dtype=np.uint8),
            "b": rng.integers(-127, 127, (size, size), dtype=np.int8),
        }
    else:
        feeds = {
            "a": rng.standard_normal((size, size), dtype=np.float32),
            "b": rng.standard_normal((size, size), dtype=np.float32),
        }
    return lambda: session.run(None, feeds)


def measure_roofline(size: int = 1024, seconds: float = 2.0, threads: int = 2) -> dict[str, dict[str, float]]:
    """precision -> engine -> GFLOP/s, and each precision's best under ``best``."""
    import torch

    torch.set_num_threads(threads)
    flops = 2.0 * size**3
    x32 = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    t32 = torch.from_numpy(x32)
    t16 = t32.to(torch.bfloat16)
    t8 = torch.randint(-127, 127, (size, size), dtype=torch.int8)
    results = {
        "fp32": {
            "numpy": rate(lambda: x32 @ x32, flops, seconds),
            "torch": rate(lambda: t32 @ t32, flops, seconds),
            "onnxruntime": rate(_ort_matmul(size, False, threads), flops, seconds),
        },
        "int8": {
            "torch": rate(lambda: torch._int_mm(t8, t8), flops, seconds),
            "onnxruntime": rate(_ort_matmul(size, True, threads), flops, seconds),
        },
        "bf16": {"torch": rate(lambda: t16 @ t16, flops, seconds)},
    }
    results["best"] = {precision: max(engines.values()) for precision, engines in results.items()}
    return results


def cpu_flags() -> list[str]:
    """The matmul-relevant flags of this CPU (lscpu's), e.g. avx512_vnni, amx_int8, amx_bf16."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags")[1].splitlines()[0].split()
    except (OSError, IndexError):
        return []
    return sorted(f for f in flags if f.startswith(("amx", "avx512_vnni", "avx512_bf16", "avx512f", "avx2")))


def print_table(report: dict) -> None:
    print(f"matmul roofline ({report['size']}^2, {report['threads']} threads; flags {' '.join(report['cpu_flags'])})")
    print(f"{'precision':<10}{'engine':<14}{'GFLOP/s':>10}")
    for precision in ("fp32", "int8", "bf16"):
        for engine, value in report["gflops"][precision].items():
            print(f"{precision:<10}{engine:<14}{value:>10.1f}")
    best = report["gflops"]["best"]
    print(f"int8 / fp32 best: {best['int8'] / best['fp32']:.2f}x, bf16 / fp32 best: {best['bf16'] / best['fp32']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine and precision")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = {
        "size": args.size,
        "threads": args.threads,
        "cpu_flags": cpu_flags(),
        "machine": platform.processor() or platform.machine(),
        "gflops": measure_roofline(args.size, args.seconds, args.threads),
    }
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
