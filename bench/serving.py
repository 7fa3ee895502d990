"""Serving throughput and latency, side by side: the embedded ONNX Runtime backend without
batching (as before issue 13) and with dynamic batching, and Triton with its dynamic batcher (and
PyTorch eager on request) -- the same models, exported in this run, behind the same pipeline.

    python bench/serving.py                                   # tiny random-init models, CPU
    python bench/serving.py --run runs/tiny                   # the models of a `memotion train` run
    python bench/serving.py --clip ViT-B-32 --device cuda \\
        --triton-url 127.0.0.1:8001                           # a GPU Triton (see below)

Each of 1, 8, 32, 64 concurrent clients (threads) sends memes through ``MemeClassifier`` -- decode,
[OCR], tokenize, preprocess, one inference per ensemble member, vote -- with the backend under test,
the text sent along. Then, with no text sent, 1, 8 and 32 clients have the memes read by OCR
(real memes from ../shared/data/cm-off-meme-sample when present): EasyOCR, the gateway's OCR before
issue 12 (PyTorch under a process-wide lock; on the unbatched embedded backend only, with fewer
requests: seconds per real meme), and PP-OCR from the model repository, run by each backend under
test (and batched by it). The batched backend is the gateway's own (``create_backend``:
each model's batching settings from its config.pbtxt, the ones Triton reads). A repost trace
(Zipf-distributed image ids, about a third of the requests repeats) runs with the result cache off
and on, as the gateway uses it. Reports memes/s and p50/p95/p99 latency, the models' FLOPs per meme
(counted on PyTorch, batch 1) and the machine's measured fp32 matmul rate, so that achieved FLOP/s
over that rate -- the fraction of the physical limit in use -- is visible. Prints a table, writes
JSON (default bench/results/serving.json).

Not measured here: HTTP and the gateway's admission (``MEMOTION_WORKERS`` classifications at once;
with batching, set it at least to the batch size you want, README "Scaling").

Without --run the models are random-initialised (``--clip``, default the tiny test config):
speed does not depend on the weights. Triton: without --triton-url a local tritonserver (python
backend, CPU; ``make .venv-triton``) serves the exported repository; on a GPU node start NVIDIA's
Triton container on ``<workdir>/model_repository`` with ``--model-config-name=gpu`` (after a first
run wrote it, or ``--prepare-only``) and pass --triton-url.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from memotion.manifest import Manifest, ModelEntry, load_manifest
from memotion.preprocess import images_to_batch
from memotion.progress import progress_bar
from memotion.tokenizer import ClipTokenizer
from service.core.settings import GatewaySettings
from service.inference.backends import create_backend
from service.inference.backends.base import InferenceBackend
from service.inference.backends.triton_backend import TritonBackend
from service.inference.batching import BatchingBackend
from service.inference.classifier import MemeClassifier, gateway_models, request_batcher_for
from service.inference.imaging import decode_image
from service.inference.ocr import NoOcr, OcrEngine
from service.inference.ocr.factory import create_ocr
from service.inference.result_cache import CacheUse, MemoryResultCache, cached_classification
from service.launchers.triton_server import TritonServerProcess
from training.backbone import TINY_CLIP, clip_context_length, create_clip, register_model_configs
from training.compute import count_flops, matmul_rate
from training.export import export_run
from training.factory import MODEL_KINDS, ModelConfig, build_model, load_checkpoint, save_checkpoint
from training.recipe import SUMMARY_FILE, preprocessing_for, read_summary, tiny_recipe

MAX_PIXELS = 36_000_000
REAL_MEMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cm-off-meme-sample"


# --- models ----------------------------------------------------------------------------------


def random_run(clip: str, run_dir: Path, log: Callable[[str], None]) -> Path:
    """A `memotion train`-shaped run directory with random-initialised models (no training)."""
    register_model_configs()
    config = tiny_recipe().model if clip == TINY_CLIP else ModelConfig()
    probe = create_clip(clip, None)
    models = {}
    for kind in MODEL_KINDS:
        path = save_checkpoint(
            run_dir / kind / "checkpoint.pt", build_model(kind, clip, config, None), kind, clip, config
        )
        models[kind] = {"checkpoint": str(path.relative_to(run_dir)), "validation": {}}
        log(f"built random-initialised {kind} ({clip})")
    summary = {
        "clip": clip,
        "pretrained": None,
        "context_length": clip_context_length(probe),
        "preprocessing": preprocessing_for(probe).model_dump(mode="json"),
        "data": {"dir": "none (bench/serving.py: random weights, untrained)", "train": 0, "val": 0},
        "recipe": {"bench": "random initialisation", "model": asdict(config)},
        "models": models,
        "ensemble": {"members": list(MODEL_KINDS), "validation": {}},
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return run_dir


class TorchBackend:
    """PyTorch eager: the run's checkpoints, run directly (the models the repository was exported from)."""

    name = "pytorch"

    def __init__(self, run_dir: Path, members: Sequence[ModelEntry], device: str) -> None:
        summary = read_summary(run_dir)
        self.device = torch.device(device)
        self.models = {}
        for member in members:
            model, _ = load_checkpoint(run_dir / summary["models"][member.name]["checkpoint"])
            self.models[member.name] = model.to(self.device).eval()

    def infer(self, model: ModelEntry, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device) for name in model.inputs]
        with torch.inference_mode():
            outputs = self.models[model.name](*args)
        return {name: value.float().cpu().numpy() for name, value in zip(model.outputs, outputs)}

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        self.models.clear()


# --- FLOPs and the machine's matmul rate -------------------------------------------------------


def flops_per_meme(run_dir: Path, members: Sequence[ModelEntry], samples: Mapping[str, np.ndarray]) -> dict[str, float]:
    """FLOPs of each member on one meme (``count_flops``), averaged over the sample memes."""
    backend = TorchBackend(run_dir, members, "cpu")
    count = len(next(iter(samples.values())))
    return {
        member.name: sum(
            count_flops(
                lambda i=i, member=member: backend.infer(
                    member, {name: samples[name][i : i + 1] for name in member.inputs}
                )
            )
            for i in range(count)
        )
        / count
        for member in members
    }


# --- load --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    clients: int
    requests: int
    memes_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def percentile(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def run_load(classify: Callable[[int], None], clients: int, requests: int) -> LoadResult:
    """``requests`` calls of ``classify(i)`` from ``clients`` threads; latency per call."""
    latencies: list[float] = []
    lock = threading.Lock()
    next_index = iter(range(requests))

    def client() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            started = time.perf_counter()
            classify(i)
            elapsed = (time.perf_counter() - started) * 1000.0
            with lock:
                latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - started
    return LoadResult(
        clients,
        requests,
        requests / wall,
        percentile(latencies, 50),
        percentile(latencies, 95),
        percentile(latencies, 99),
    )


def bench_backend(
    classifier: MemeClassifier,
    payloads: list[bytes],
    texts: list[str],
    levels: Sequence[int],
    requests: int,
    with_ocr: bool,
    label: str,
    at_least_clients: bool = True,
) -> list[LoadResult]:
    def classify(i: int) -> None:
        image = decode_image(payloads[i % len(payloads)], MAX_PIXELS)
        classifier.classify(image, None if with_ocr else texts[i % len(texts)])

    results = []
    for clients in progress_bar(levels, desc=label, unit="level"):
        count = max(requests, clients) if at_least_clients else requests
        run_load(classify, clients, min(count, clients * 2) if not with_ocr else 1)  # warm-up
        results.append(run_load(classify, clients, count))
    return results


# --- the repost trace and the result cache -------------------------------------------------------


def zipf_trace(requests: int, repeat_share: float, seed: int = 0) -> list[int]:
    """Image ids drawn from a Zipf law (P(rank k) ~ 1/k^s over many ids), ``s`` chosen so that
    about ``repeat_share`` of the requests repeat an id seen before."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, 20 * requests + 1)
    best: list[int] = []
    for s in np.arange(0.2, 2.5, 0.02):
        p = ranks ** (-s)
        ids = [int(i) for i in np.random.default_rng(seed).choice(ranks, size=requests, p=p / p.sum())]
        if not best or abs(repeats(ids) - repeat_share) < abs(repeats(best) - repeat_share):
            best = ids
    order = rng.permutation(sorted(set(best)))  # rank -> a random meme, not the first ones
    mapping = {rank: int(i) for i, rank in enumerate(order)}
    return [mapping[i] for i in best]


def repeats(ids: Sequence[int]) -> float:
    return 1.0 - len(set(ids)) / len(ids)


def distinct_payloads(payloads: list[bytes], count: int) -> list[bytes]:
    """``count`` different image files (one pixel changed per copy): a repost is the same bytes."""
    from PIL import Image

    out = []
    for i in range(count):
        image = Image.open(io.BytesIO(payloads[i % len(payloads)])).convert("RGB")
        image.putpixel((i // len(payloads) % image.width, 0), (i % 256, 0, 0))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def bench_cache(
    classifier: MemeClassifier, payloads: list[bytes], texts: list[str], trace: list[int], clients: int
) -> dict[str, dict]:
    """The trace with the cache off and on (a fresh in-process cache, as the gateway's default)."""
    results = {}
    for label, cache in (("off", None), ("on", MemoryResultCache(100_000, 1 << 30))):
        lookups: list[str] = []

        def classify(i: int, cache: MemoryResultCache | None = cache, lookups: list[str] = lookups) -> None:
            meme = trace[i]
            data, text = payloads[meme], texts[meme % len(texts)]
            cached_classification(
                cache,
                CacheUse(),
                classifier,
                data,
                text,
                lambda: classifier.classify(decode_image(data, MAX_PIXELS), text),
                lookups.append,
            )

        result = asdict(run_load(classify, clients, len(trace)))
        results[label] = {**result, "hits": lookups.count("hit"), "misses": lookups.count("miss")}
    return results


# --- backends ----------------------------------------------------------------------------------

BACKENDS = ("pytorch", "onnxruntime", "batched-model", "batched", "triton")


def make_backend(
    name: str, repository: Path, manifest: Manifest, run_dir: Path, args: argparse.Namespace, notes: list[str]
) -> tuple[InferenceBackend, TritonServerProcess | None]:
    """The backend under test (and the tritonserver started for it, if any)."""
    members = manifest.members()
    if name == "pytorch":
        return TorchBackend(run_dir, members, args.device), None
    ocr = "onnx" if manifest.ocr is not None else "none"
    settings = GatewaySettings(model_repository=repository, batching=name != "onnxruntime", ocr=ocr)
    if name in ("onnxruntime", "batched", "batched-model"):
        backend = create_backend(settings, manifest, repository, gateway_models(settings, manifest))
        if not isinstance(backend, BatchingBackend):
            notes.append("onnxruntime: embedded, no batching, ONNX Runtime threads spinning (the gateway before #13)")
        else:
            policy = next(iter(backend.policies.values()))
            notes.append(
                f"{name}: embedded ONNX Runtime (threads not spinning), dynamic batching from config.pbtxt "
                f"(max {policy.max_batch_size}, "
                f"preferred {list(policy.preferred_batch_sizes)}, queue delay {policy.max_queue_delay_us} us) "
                + ("per model and per request (the gateway's default)" if name == "batched" else "per model only")
            )
        return backend, None
    if name != "triton":
        raise SystemExit(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    server = None
    url = args.triton_url
    if url is None:
        server = TritonServerProcess(repository).start()
        url = server.grpc_url
        notes.append(
            "triton: local tritonserver (nvidia-pytriton), python backend running ONNX Runtime on the CPU, "
            "dynamic batching from the same config.pbtxt"
        )
    else:
        notes.append(f"triton: external server at {url}")
    return TritonBackend(url, gateway_models(settings, manifest)), server


def ocr_engines(
    name: str, backend: InferenceBackend, manifest: Manifest, repository: Path, args: argparse.Namespace
) -> dict[str, OcrEngine]:
    """The OCR engines measured on this backend: EasyOCR (the gateway before #12, PyTorch in the
    gateway whatever the backend) once, on the unbatched embedded backend; PP-OCR from the model
    repository (run by the backend under test) on every backend."""
    engines: dict[str, OcrEngine] = {}
    if not args.ocr_clients or args.ocr_requests <= 0 or name == "pytorch":
        return engines
    if "easyocr" in args.ocr_engines and name == "onnxruntime":
        from service.inference.ocr.easyocr_engine import EasyOcrEngine

        engines["easyocr"] = EasyOcrEngine()
    if "ppocr" in args.ocr_engines and manifest.ocr is not None:
        settings = GatewaySettings(model_repository=repository, ocr="onnx")
        engines["ppocr"] = create_ocr(settings, manifest, backend, repository)
    return engines


def classifier_for(
    name: str, manifest: Manifest, repository: Path, backend: InferenceBackend, ocr: OcrEngine
) -> MemeClassifier:
    """The pipeline as the gateway builds it; "batched" adds request-level batching, as by default."""
    classifier = MemeClassifier(manifest, repository, backend, ocr)
    if name == "batched":
        classifier.request_batcher = request_batcher_for(classifier, backend)
    return classifier


def bench_one(
    name: str,
    backend: InferenceBackend,
    manifest: Manifest,
    repository: Path,
    memes: tuple[list[bytes], list[str]],
    ocr_memes: list[bytes],
    args: argparse.Namespace,
) -> dict[str, list[dict]]:
    """Text given at every client level; then each OCR engine reading the memes (no text sent)."""
    payloads, texts = memes
    plain = classifier_for(name, manifest, repository, backend, NoOcr())
    out = {
        "ocr_excluded": [
            asdict(r)
            for r in bench_backend(plain, payloads, texts, args.clients, args.requests, False, f"{name}, text given")
        ]
    }
    for engine, ocr in ocr_engines(name, backend, manifest, repository, args).items():
        with_ocr = classifier_for(name, manifest, repository, backend, ocr)
        slow = engine == "easyocr"  # seconds per real meme: fewer requests (its lock serialises them anyway)
        requests = args.easyocr_requests if slow else args.ocr_requests
        levels = bench_backend(
            with_ocr, ocr_memes, texts, args.ocr_clients, requests, True, f"{name}, {engine}", not slow
        )
        out[f"ocr_{engine}"] = [asdict(r) for r in levels]
    return out


# --- main --------------------------------------------------------------------------------------


def sample_memes(data: Path | None, workdir: Path, count: int) -> tuple[list[bytes], list[str]]:
    from memotion.data_format import load_split
    from training.data.synthetic import SyntheticConfig, make_synthetic_dataset

    if data is None:
        data = workdir / "data"
        if not (data / "val.csv").is_file():
            make_synthetic_dataset(data, SyntheticConfig(n_train=0, n_val=count, seed=11))
    records = load_split(data / "val.csv")[:count]
    return [r.image_path.read_bytes() for r in records], [r.text for r in records]


def real_memes(root: Path | None, count: int) -> list[bytes]:
    """Up to ``count`` real meme files (a seeded sample of a labels.csv folder), or none."""
    if root is None or not (root / "labels.csv").is_file():
        return []
    with (root / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(0).shuffle(rows)
    return [(root / r["image_path"]).read_bytes() for r in rows[:count]]


def parse_levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a `memotion train` run (default: random-init models)")
    parser.add_argument("--clip", default=TINY_CLIP, help=f"open_clip config for random-init models ({TINY_CLIP})")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="PyTorch device for the pytorch backend and the matmul rate (default: cuda if available)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("bench/results/serving-work"))
    parser.add_argument("--data", type=Path, help="folder with val.csv (default: synthetic memes)")
    parser.add_argument("--memes", type=int, default=32, help="distinct memes cycled through")
    parser.add_argument("--clients", type=parse_levels, default=[1, 8, 32, 64], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=128, help="requests per level, OCR excluded")
    parser.add_argument("--ocr-clients", type=parse_levels, default=[1, 8, 32], help="concurrency levels with OCR")
    parser.add_argument("--ocr-requests", type=int, default=32, help="requests per level with OCR")
    parser.add_argument(
        "--ocr-engines",
        default="easyocr,ppocr",
        help="easyocr (before #12; on the onnxruntime backend only) and/or ppocr (the repository's OCR models)",
    )
    parser.add_argument(
        "--ocr-data",
        type=Path,
        default=REAL_MEMES if REAL_MEMES.is_dir() else None,
        help=f"real memes read by OCR (a folder with labels.csv; default {REAL_MEMES} when present)",
    )
    parser.add_argument(
        "--easyocr-requests", type=int, default=8, help="requests per level with EasyOCR (at most that many in flight)"
    )
    parser.add_argument("--ocr-memes", type=int, default=32, help="distinct memes read by OCR")
    parser.add_argument(
        "--backends", default="onnxruntime,batched-model,batched,triton", help=f"of {', '.join(BACKENDS)}"
    )
    parser.add_argument("--trace-requests", type=int, default=192, help="repost trace length (0: none)")
    parser.add_argument("--trace-clients", type=int, default=32, help="clients replaying the repost trace")
    parser.add_argument("--triton-url", help="an external Triton's gRPC host:port (default: start one here)")
    parser.add_argument("--matmul-size", type=int, default=None, help="default 1024 on CPU, 8192 on CUDA")
    parser.add_argument("--prepare-only", action="store_true", help="build and export the models, then stop")
    parser.add_argument("--out", type=Path, default=Path("bench/results/serving.json"))
    return parser.parse_args()


def measure_flops(
    run_dir: Path, repository: Path, manifest: Manifest, memes: tuple[list[bytes], list[str]], args: argparse.Namespace
) -> tuple[dict[str, float], float, int]:
    payloads, texts = memes
    tokenizer = ClipTokenizer(
        repository / manifest.tokenizer.file, manifest.tokenizer.context_length, manifest.tokenizer.pad_id
    )
    samples = {
        "input_ids": tokenizer(texts[:8]),
        "pixel_values": images_to_batch([decode_image(p, MAX_PIXELS) for p in payloads[:8]], manifest.preprocessing),
    }
    flops = flops_per_meme(run_dir, manifest.members(), samples)
    matmul_size = args.matmul_size or (8192 if args.device.startswith("cuda") else 1024)
    rate = matmul_rate(args.device, matmul_size)
    print(
        f"FLOPs per meme: {sum(flops.values()) / 1e9:.3f} GFLOP "
        f"({', '.join(f'{k} {v / 1e9:.3f}' for k, v in flops.items())}); "
        f"measured fp32 matmul on {args.device} ({matmul_size}^3): {rate / 1e9:.1f} GFLOP/s"
    )
    return flops, rate, matmul_size


def run_backends(
    backends: list[str],
    repository: Path,
    manifest: Manifest,
    run_dir: Path,
    memes: tuple[list[bytes], list[str]],
    args: argparse.Namespace,
    notes: list[str],
) -> tuple[dict[str, dict[str, list[dict]]], dict[str, dict]]:
    """Every backend's load levels, and the repost trace (cache off/on) on the batched one."""
    ocr_memes = real_memes(args.ocr_data, args.ocr_memes) or memes[0]
    notes.append(
        f"OCR rows read {len(ocr_memes)} "
        + ("real memes from " + str(args.ocr_data) if ocr_memes is not memes[0] else "synthetic memes")
        + " (no text sent)"
    )
    results: dict[str, dict[str, list[dict]]] = {}
    cache: dict[str, dict] = {}
    for name in backends:
        backend, server = make_backend(name, repository, manifest, run_dir, args, notes)
        try:
            results[name] = bench_one(name, backend, manifest, repository, memes, ocr_memes, args)
            if args.trace_requests > 0 and name == ("batched" if "batched" in backends else backends[-1]):
                trace = zipf_trace(args.trace_requests, 1 / 3)
                payloads = distinct_payloads(memes[0], max(trace) + 1)
                classifier = classifier_for(name, manifest, repository, backend, NoOcr())
                cache = {"backend": name, "clients": args.trace_clients, "requests": len(trace)}
                cache["repeats"] = repeats(trace)
                cache.update(bench_cache(classifier, payloads, memes[1], trace, args.trace_clients))
        finally:
            backend.close()
            if server is not None:
                server.stop()
    return results, cache


def main() -> None:
    args = parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = args.run or random_run(args.clip, workdir / "run", print)
    repository = export_run(run_dir, workdir / "model_repository", log=print)
    if args.prepare_only:
        print(f"model repository ready at {repository}")
        return
    manifest: Manifest = load_manifest(repository)
    memes = sample_memes(args.data, workdir, args.memes)
    flops, rate, matmul_size = measure_flops(run_dir, repository, manifest, memes, args)
    notes: list[str] = []
    results, cache = run_backends(backends, repository, manifest, run_dir, memes, args, notes)
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cores": len(os.sched_getaffinity(0)),
            "device": args.device,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        },
        "models": {
            "clip": read_summary(run_dir)["clip"],
            "run": str(run_dir),
            "repository": str(repository),
            "members": [m.name for m in manifest.members()],
        },
        "flops_per_meme": {"total": sum(flops.values()), **flops},
        "matmul_flops_per_s": rate,
        "matmul_size": matmul_size,
        "memes": len(memes[0]),
        "results": results,
        "repost_trace": cache,
        "notes": notes,
    }
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.out}")


def mode_order(mode: str) -> tuple[int, str]:
    return (0 if mode == "ocr_excluded" else 1 if mode == "ocr_easyocr" else 2, mode)


def print_table(report: dict) -> None:
    total = report["flops_per_meme"]["total"]
    rate = report["matmul_flops_per_s"]
    print(
        f"\nserving {report['models']['clip']} ensemble ({', '.join(report['models']['members'])}), "
        f"{total / 1e9:.3f} GFLOP per meme; matmul limit {rate / 1e9:.1f} GFLOP/s on {report['machine']['device']}"
    )
    header = (
        f"{'text by':<9}{'backend':<13}{'clients':>8}{'requests':>9}{'memes/s':>10}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'of limit':>10}"
    )
    print(header)
    print("-" * len(header))
    results = report["results"]
    for mode in sorted({m for per_backend in results.values() for m in per_backend}, key=mode_order):
        label = "text" if mode == "ocr_excluded" else mode.removeprefix("ocr_")
        rows = [(backend, r) for backend, per_backend in results.items() for r in per_backend.get(mode, [])]
        for backend, row in sorted(rows, key=lambda item: item[1]["clients"]):
            used = row["memes_per_s"] * total / rate
            print(
                f"{label:<9}{backend:<13}{row['clients']:>8}{row['requests']:>9}{row['memes_per_s']:>10.1f}"
                f"{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}{row['p99_ms']:>9.1f}{used:>10.2%}"
            )
    trace = report.get("repost_trace") or {}
    if trace:
        print(
            f"\nrepost trace: {trace['requests']} requests, {trace['repeats']:.0%} repeats (Zipf), "
            f"{trace['clients']} clients, backend {trace['backend']}, text given"
        )
        for label in ("off", "on"):
            row = trace[label]
            print(
                f"  cache {label:<4}{row['memes_per_s']:>9.1f} memes/s  p50 {row['p50_ms']:>7.1f} ms  "
                f"p99 {row['p99_ms']:>7.1f} ms  hits {row['hits']:>4}  misses {row['misses']:>4}"
            )
        print(f"  speed-up with the cache: {trace['on']['memes_per_s'] / trace['off']['memes_per_s']:.2f}x")
    for note in report["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
