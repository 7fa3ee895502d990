"""OpenVINO against ONNX Runtime on the paper-size members (issue 21), engines side by side in one run.

    python bench/openvino_members.py --workdir /tmp/memotion-production-size

``--workdir``: what ``bench/production_size.py`` leaves (run/, data/, fp32/, int8/). Per member at
batch 8 (the first 8 validation memes, ``input_ids`` cut to their longest text as the gateway
feeds them), engines side by side: ``ort-fp32`` and ``ort-int8-dynamic`` (ONNX Runtime on the FP32
and the ``--quantize int8`` graphs); ``ov-fp32`` and ``ov-bf16`` (OpenVINO on the FP32 graph, its
precision hint f32 or bf16); ``ov-int8-static`` and ``ov-int8-static-bf16`` (OpenVINO on the static
INT8 QDQ graph of ``--quantize int8-static``, training/quantize_static.py, calibrated on the run's
training memes: the matmuls by a weight, activations symmetric); ``ov-int8-static-served``: what
the gateway serves from that repository (that graph with the bf16 hint; a member with a recurrence,
clip_text, stays FP32 there and runs in BF16); the
``-all`` pair (attention's activation matmuls quantised too), ``ov-int8-static-u8-bf16``
(activations uint8 with a zero point, the earlier method) and ``ov-int8-dynamic`` (OpenVINO on
the dynamic INT8 graph). For each: ms per meme (the best of ``--rounds`` interleaved turns, so a
burst of load elsewhere hits every engine), GFLOP/s (PyTorch's count at that token length), the
fraction of the matmul roofline in its precision (bench/roofline.py's engines plus OpenVINO's own
matmul, same run; ``roof`` from the best turn's mean, ``roof 1`` from the fastest single call, the
roofline's own statistic, which load elsewhere on a shared machine skews least) and label
agreement with ONNX Runtime FP32 per head (argmax) on the validation memes, 8 a call, trimmed.
Prints a table, writes JSON (default bench/results/openvino_members.json).
The machine is shared: compare engines within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.member_speed import gflop_per_meme  # noqa: E402
from bench.production_size import log, memes_and_feeds, session, table  # noqa: E402
from bench.roofline import cpu_flags, measure_roofline, rate  # noqa: E402
from memotion.data_format import load_split  # noqa: E402
from memotion.manifest import ModelEntry, load_manifest  # noqa: E402
from training.quantize_static import batches, quantize_int8_static, recurrence  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "openvino_members.json"
BATCH = 8
Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
COLUMNS = (  # header, width, row key, format
    ("member", 12, "member", ""),
    ("engine", 23, "engine", ""),
    ("prec", 6, "precision", ""),
    ("ms/meme", 8, "ms_per_meme", ".1f"),
    ("GFLOP/s", 8, "achieved_gflops", ".0f"),
    ("roof", 7, "roofline_fraction", ".1%"),
    ("roof 1", 7, "roofline_fraction_fastest_call", ".1%"),
    ("vs ORT32", 9, "speedup_vs_ort_fp32", ".2f"),
    ("agree", 7, "min_agreement", ".1%"),
)


def ov_config(hint: str, threads: int) -> dict[str, object]:
    return {
        "INFERENCE_PRECISION_HINT": hint,
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
    }


def ov_runner(path: Path, outputs: list[str], hint: str, threads: int = 2) -> Runner:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", ov_config(hint, threads))
    request = compiled.create_infer_request()

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = request.infer(feed)
        return [np.array(result[name]) for name in outputs]

    return run


def ort_runner(path: Path, outputs: list[str]) -> Runner:
    runner = session(path)
    return lambda feed: runner.run(outputs, feed)


def ov_matmul(size: int, hint: str, integer: bool, threads: int) -> Callable[[], object]:
    """OpenVINO's matmul of an activation by a constant weight (INT8: both through FakeQuantize,
    which OpenVINO's CPU plugin runs as a u8 x s8 matmul)."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([size, size], np.float32, name="a")
    weight = ops.constant(rng.standard_normal((size, size), dtype=np.float32))
    left, right = a.output(0), weight.output(0)
    if integer:
        lo, hi = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
        left = ops.fake_quantize(left, lo, hi, lo, hi, 256).output(0)
        right = ops.fake_quantize(right, lo, hi, lo, hi, 255).output(0)
    model = ov.Model([ops.matmul(left, right, False, False)], [a])
    compiled = ov.Core().compile_model(model, "CPU", ov_config(hint, threads))
    request = compiled.create_infer_request()
    x = rng.standard_normal((size, size), dtype=np.float32)
    return lambda: request.infer({"a": x})


def roofline(threads: int, seconds: float) -> dict:
    """bench/roofline.py's engines plus OpenVINO's FP32, BF16 and INT8 matmul; the best per precision."""
    size = 1024
    result = measure_roofline(size, seconds, threads)
    flops = 2.0 * size**3
    result["fp32"]["openvino"] = rate(ov_matmul(size, "f32", False, threads), flops, seconds)
    result["bf16"]["openvino"] = rate(ov_matmul(size, "bf16", False, threads), flops, seconds)
    result["int8"]["openvino"] = rate(ov_matmul(size, "f32", True, threads), flops, seconds)
    result["best"] = {p: max(engines.values()) for p, engines in result.items() if p != "best"}
    return result


def chunks(member: ModelEntry, feeds: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """``member``'s inputs BATCH memes a call, ids cut to each call's longest text (as served)."""
    return batches({n: feeds[n] for n in member.inputs}, BATCH, trim=member.token_trimming is not None)


def static_graph(
    workdir: Path, member: ModelEntry, calibration: dict, weights_only: bool, symmetric: bool = True
) -> Path:
    """The member's static INT8 QDQ graph (training/quantize_static.py), made once in ``workdir``."""
    out = workdir / f"qdq-{'s8-' if symmetric else ''}{'weights-' if weights_only else ''}{member.name}.onnx"
    if not out.is_file():
        inputs = {n: calibration[n] for n in member.inputs}
        trim = member.token_trimming is not None
        quantize_int8_static(workdir / "fp32" / member.file, out, inputs, trim, weights_only, symmetric)
    return out


def engines(workdir: Path, member: ModelEntry, calibration: dict[str, np.ndarray]) -> dict[str, tuple[str, Callable]]:
    """engine name -> (precision of its matmuls, a function building its runner)."""
    fp32, int8 = workdir / "fp32" / member.file, workdir / "int8" / member.file
    outputs = list(member.outputs)
    qdq = lambda: static_graph(workdir, member, calibration, weights_only=False)  # noqa: E731
    wqdq = lambda: static_graph(workdir, member, calibration, weights_only=True)  # noqa: E731
    u8qdq = lambda: static_graph(workdir, member, calibration, weights_only=True, symmetric=False)  # noqa: E731
    # what the --quantize int8-static repository serves: a recurrence (clip_text) FP32 in BF16
    recurrent = recurrence(fp32) is not None
    served = ("bf16" if recurrent else "int8", lambda: ov_runner(fp32 if recurrent else wqdq(), outputs, "bf16"))
    return {
        "ort-fp32": ("fp32", lambda: ort_runner(fp32, outputs)),
        "ort-int8-dynamic": ("int8", lambda: ort_runner(int8, outputs)),
        "ov-fp32": ("fp32", lambda: ov_runner(fp32, outputs, "f32")),
        "ov-bf16": ("bf16", lambda: ov_runner(fp32, outputs, "bf16")),
        "ov-int8-static-all": ("int8", lambda: ov_runner(qdq(), outputs, "f32")),
        "ov-int8-static-all-bf16": ("int8", lambda: ov_runner(qdq(), outputs, "bf16")),
        "ov-int8-static": ("int8", lambda: ov_runner(wqdq(), outputs, "f32")),
        "ov-int8-static-bf16": ("int8", lambda: ov_runner(wqdq(), outputs, "bf16")),  # --quantize int8-static
        "ov-int8-static-u8-bf16": ("int8", lambda: ov_runner(u8qdq(), outputs, "bf16")),
        "ov-int8-dynamic": ("int8", lambda: ov_runner(int8, outputs, "f32")),
        "ov-int8-static-served": served,
    }


def interleaved_ms(
    runners: dict[str, Runner], feed: dict[str, np.ndarray], seconds: float, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """ms per meme of each runner on ``feed``: ``rounds`` turns of ``seconds`` each, the runners
    taking turns (so a burst of load elsewhere on the machine hits all of them); the best turn's
    mean, and the fastest single call (the roofline's own statistic, bench/roofline.py ``rate``)."""
    best = {name: float("inf") for name in runners}
    fastest = dict(best)
    for runner in runners.values():
        runner(feed)  # warm-up: compiles the shapes
    for turn in range(rounds):
        order = list(runners) if turn % 2 == 0 else list(reversed(runners))
        for name in order:
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                tick = time.perf_counter()
                runners[name](feed)
                fastest[name] = min(fastest[name], (time.perf_counter() - tick) / BATCH * 1000)
                runs += 1
            best[name] = min(best[name], (time.perf_counter() - started) / runs / BATCH * 1000)
    return best, fastest


def labels(runner: Runner, member: ModelEntry, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Argmax per head on every meme of ``feeds``, 8 a call, trimmed (as the gateway runs it)."""
    parts = [runner(chunk) for chunk in chunks(member, feeds)]
    return [np.concatenate([p[k] for p in parts]).argmax(-1) for k in range(len(member.outputs))]


def member_rows(args: argparse.Namespace, feeds: dict, calibration: dict, roof: dict) -> list[dict]:
    rows = []
    for member in load_manifest(args.workdir / "fp32").members():
        batch = chunks(member, feeds)[0]
        gflop = gflop_per_meme(args.workdir / "run", member, batch)
        runners, precisions = build_runners(args, member, calibration, rows)
        timings, fastest = interleaved_ms(runners, batch, args.seconds, args.rounds)
        reference: list[np.ndarray] = []
        for name, runner in runners.items():
            got = labels(runner, member, feeds)
            reference = reference or got
            agreement = {h: float(np.mean(a == b)) for h, a, b in zip(member.outputs, reference, got)}
            ms = timings[name]
            rows.append(
                {
                    "member": member.name, "engine": name, "precision": precisions[name], "tokens": batch.get(
                        "input_ids", np.zeros((0, 0))).shape[1], "gflop_per_meme": gflop, "ms_per_meme": ms,
                    "achieved_gflops": gflop / (ms / 1000), "speedup_vs_ort_fp32": timings["ort-fp32"] / ms,
                    "roofline_fraction": gflop / (ms / 1000) / roof[precisions[name]],
                    "roofline_fraction_fastest_call": gflop / (fastest[name] / 1000) / roof[precisions[name]],
                    "agreement": agreement, "min_agreement": min(agreement.values()),
                }
            )  # fmt: skip
            log(f"{member.name} {name}: {ms:.1f} ms/meme, agreement >= {rows[-1]['min_agreement']:.1%}")
        del runners
    return rows


def build_runners(
    args: argparse.Namespace, member: ModelEntry, calibration: dict, rows: list[dict]
) -> tuple[dict[str, Runner], dict[str, str]]:
    """The member's runner per engine (ONNX Runtime FP32 first: the reference); an engine that
    cannot load its graph is a row with its error."""
    runners, precisions = {}, {}
    for name, (precision, build) in engines(args.workdir, member, calibration).items():
        if args.engines and name not in args.engines and name != "ort-fp32":
            continue
        try:
            runners[name], precisions[name] = build(), precision
        except Exception as err:
            log(f"{member.name} {name}: failed: {str(err)[:300]}")
            rows.append({"member": member.name, "engine": name, "error": str(err)[:2000]})
    return runners, precisions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/memotion-production-size"))
    parser.add_argument("--seconds", type=float, default=1.5, help="one turn of one engine on one member")
    parser.add_argument("--rounds", type=int, default=4, help="turns per engine (interleaved; the best counts)")
    parser.add_argument("--engines", nargs="*", default=[], help="only these engines (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    manifest = load_manifest(args.workdir / "fp32")
    feeds = memes_and_feeds(manifest, args.workdir / "fp32", load_split(args.workdir / "data" / "val.csv"))
    calibration = memes_and_feeds(manifest, args.workdir / "fp32", load_split(args.workdir / "data" / "train.csv"))
    report: dict = {"cpu_flags": cpu_flags(), "args": {k: str(v) for k, v in vars(args).items()}}
    log("matmul roofline (ONNX Runtime, PyTorch, numpy, OpenVINO)")
    report["roofline_gflops"] = roofline(2, 2.0)
    report["members"] = member_rows(args, feeds, calibration, report["roofline_gflops"]["best"])
    roof = report["roofline_gflops"]
    for precision in ("fp32", "int8", "bf16"):
        print(f"roofline {precision}: " + ", ".join(f"{k} {v:.0f}" for k, v in roof[precision].items()))
    print(table([r for r in report["members"] if "ms_per_meme" in r], COLUMNS))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
