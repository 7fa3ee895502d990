"""Serving throughput and latency: (a) PyTorch eager, (b) embedded ONNX Runtime, (c) Triton with
dynamic batching -- the same models, exported in this run, behind the same gateway pipeline.

    python bench/serving.py                                   # tiny random-init models, CPU
    python bench/serving.py --run runs/tiny                   # the models of a `memotion train` run
    python bench/serving.py --clip ViT-B-32 --device cuda \\
        --triton-url 127.0.0.1:8001                           # a GPU Triton (see below)

Each of 1, 8, 32 concurrent clients (threads) sends memes through ``MemeClassifier`` -- decode,
[OCR], tokenize, preprocess, one inference per ensemble member, vote -- with the backend under test;
the text is sent along (OCR excluded) or read from the image (OCR included; fewer requests, OCR is
seconds per meme on a CPU). Reports memes/s and p50/p95/p99 latency, the models' FLOPs per meme
(counted on PyTorch, batch 1) and the machine's measured fp32 matmul rate, so that achieved FLOP/s
over that rate -- the fraction of the physical limit in use -- is visible. Prints a table, writes
JSON (default bench/results/serving.json).

Without --run the models are random-initialised (``--clip``, default the tiny test config):
speed does not depend on the weights. Triton: without --triton-url a local tritonserver (python
backend, CPU; ``make .venv-triton``) serves the exported repository; on a GPU node start NVIDIA's
Triton container on ``<workdir>/model_repository`` with ``--model-config-name=gpu`` (after a first
run wrote it, or ``--prepare-only``) and pass --triton-url.
"""

from __future__ import annotations

import argparse
import json
import platform
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
from service.inference.backends.base import InferenceBackend
from service.inference.backends.ort_backend import OnnxRuntimeBackend
from service.inference.backends.triton_backend import TritonBackend
from service.inference.classifier import MemeClassifier
from service.inference.imaging import decode_image
from service.inference.ocr import NoOcr, OcrEngine
from service.launchers.triton_server import TritonServerProcess
from training.backbone import TINY_CLIP, clip_context_length, create_clip, register_model_configs
from training.compute import count_flops, matmul_rate
from training.export import export_run
from training.factory import MODEL_KINDS, ModelConfig, build_model, load_checkpoint, save_checkpoint
from training.recipe import SUMMARY_FILE, preprocessing_for, read_summary, tiny_recipe

MAX_PIXELS = 36_000_000


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
) -> list[LoadResult]:
    def classify(i: int) -> None:
        image = decode_image(payloads[i % len(payloads)], MAX_PIXELS)
        classifier.classify(image, None if with_ocr else texts[i % len(texts)])

    results = []
    for clients in progress_bar(levels, desc=label, unit="level"):
        count = max(requests, clients)
        run_load(classify, clients, min(count, clients * 2) if not with_ocr else 1)  # warm-up
        results.append(run_load(classify, clients, count))
    return results


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


def parse_levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a `memotion train` run (default: random-init models)")
    parser.add_argument(
        "--clip", default=TINY_CLIP, help=f"open_clip config for random-init models (default {TINY_CLIP})"
    )
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="PyTorch device for (a) and the matmul rate (default: cuda if available)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("bench/results/serving-work"))
    parser.add_argument("--data", type=Path, help="folder with val.csv (default: synthetic memes)")
    parser.add_argument("--memes", type=int, default=32, help="distinct memes cycled through")
    parser.add_argument("--clients", type=parse_levels, default=[1, 8, 32], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=96, help="requests per level, OCR excluded")
    parser.add_argument(
        "--ocr-clients",
        type=parse_levels,
        default=[1, 8],
        help="concurrency levels with OCR (default 1,8; OCR is seconds per meme on a CPU)",
    )
    parser.add_argument("--ocr-requests", type=int, default=8, help="requests per level with OCR")
    parser.add_argument("--backends", default="pytorch,onnxruntime,triton")
    parser.add_argument("--triton-url", help="an external Triton's gRPC host:port (default: start one here)")
    parser.add_argument("--matmul-size", type=int, default=None, help="default 1024 on CPU, 8192 on CUDA")
    parser.add_argument("--prepare-only", action="store_true", help="build and export the models, then stop")
    parser.add_argument("--out", type=Path, default=Path("bench/results/serving.json"))
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = args.run or random_run(args.clip, workdir / "run", print)
    repository = export_run(run_dir, workdir / "model_repository", log=print)
    if args.prepare_only:
        print(f"model repository ready at {repository}")
        return
    manifest: Manifest = load_manifest(repository)
    members = manifest.members()
    payloads, texts = sample_memes(args.data, workdir, args.memes)

    tokenizer = ClipTokenizer(
        repository / manifest.tokenizer.file, manifest.tokenizer.context_length, manifest.tokenizer.pad_id
    )
    samples = {
        "input_ids": tokenizer(texts[:8]),
        "pixel_values": images_to_batch([decode_image(p, MAX_PIXELS) for p in payloads[:8]], manifest.preprocessing),
    }
    flops = flops_per_meme(run_dir, members, samples)
    total_flops = sum(flops.values())
    matmul_size = args.matmul_size or (8192 if args.device.startswith("cuda") else 1024)
    rate = matmul_rate(args.device, matmul_size)
    print(
        f"FLOPs per meme: {total_flops / 1e9:.3f} GFLOP ({', '.join(f'{k} {v / 1e9:.3f}' for k, v in flops.items())}); "
        f"measured fp32 matmul on {args.device} ({matmul_size}^3): {rate / 1e9:.1f} GFLOP/s"
    )

    ocr: OcrEngine | None = None
    if args.ocr_clients and args.ocr_requests > 0:
        from service.inference.ocr import EasyOcrEngine

        ocr = EasyOcrEngine()
    triton_server: TritonServerProcess | None = None
    results: dict[str, dict[str, list[dict]]] = {}
    notes = []
    try:
        for name in backends:
            if name == "pytorch":
                backend: InferenceBackend = TorchBackend(run_dir, members, args.device)
            elif name == "onnxruntime":
                backend = OnnxRuntimeBackend(repository, members)
                notes.append(f"onnxruntime providers: {backend._providers}")
            elif name == "triton":
                url = args.triton_url
                if url is None:
                    triton_server = TritonServerProcess(repository).start()
                    url = triton_server.grpc_url
                    notes.append(
                        "triton: local tritonserver (nvidia-pytriton), python backend running "
                        "ONNX Runtime on the CPU, dynamic batching (preferred 8, 2 ms queue delay)"
                    )
                else:
                    notes.append(f"triton: external server at {url}")
                backend = TritonBackend(url, members)
            else:
                raise SystemExit(f"unknown backend {name!r}")
            results[name] = {}
            try:
                plain = MemeClassifier(manifest, repository, backend, NoOcr())
                results[name]["ocr_excluded"] = [
                    asdict(r)
                    for r in bench_backend(
                        plain, payloads, texts, args.clients, args.requests, False, f"{name}, text given"
                    )
                ]
                if ocr is not None:
                    with_ocr = MemeClassifier(manifest, repository, backend, ocr)
                    results[name]["ocr_included"] = [
                        asdict(r)
                        for r in bench_backend(
                            with_ocr, payloads, texts, args.ocr_clients, args.ocr_requests, True, f"{name}, OCR"
                        )
                    ]
            finally:
                backend.close()
                if triton_server is not None:
                    triton_server.stop()
                    triton_server = None
    finally:
        if triton_server is not None:
            triton_server.stop()

    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "device": args.device,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        },
        "models": {
            "clip": read_summary(run_dir)["clip"],
            "run": str(run_dir),
            "repository": str(repository),
            "members": [m.name for m in members],
        },
        "flops_per_meme": {"total": total_flops, **flops},
        "matmul_flops_per_s": rate,
        "matmul_size": matmul_size,
        "memes": len(payloads),
        "results": results,
        "notes": notes,
    }
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.out}")


def print_table(report: dict) -> None:
    total = report["flops_per_meme"]["total"]
    rate = report["matmul_flops_per_s"]
    print(
        f"\nserving {report['models']['clip']} ensemble ({', '.join(report['models']['members'])}), "
        f"{total / 1e9:.3f} GFLOP per meme; matmul limit {rate / 1e9:.1f} GFLOP/s on {report['machine']['device']}"
    )
    header = (
        f"{'OCR':<9}{'backend':<13}{'clients':>8}{'requests':>9}{'memes/s':>10}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'of limit':>10}"
    )
    print(header)
    print("-" * len(header))
    for mode, label in (("ocr_excluded", "excluded"), ("ocr_included", "included")):
        for backend, modes in report["results"].items():
            for row in modes.get(mode, []):
                used = row["memes_per_s"] * total / rate
                print(
                    f"{label:<9}{backend:<13}{row['clients']:>8}{row['requests']:>9}{row['memes_per_s']:>10.1f}"
                    f"{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}{row['p99_ms']:>9.1f}{used:>10.2%}"
                )
    for note in report["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
