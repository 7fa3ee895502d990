"""What each stage costs per meme: decode, OCR, tokenize, preprocess, inference per model, vote,
and the HTTP round trip through a real gateway process; plus batched inference.

    python bench/stage_costs.py --repository model_repository --data demo-run/data --memes 20

Prints a table and writes JSON (default bench/results/stage_costs.json). Ratios are against
baselines measured in the same run: HTTP vs in-process, batch-32 inference vs batch-1.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import httpx
from PIL import Image

from memotion.data_format import load_split
from memotion.preprocess import images_to_batch
from service.api.classification import classify_upload
from service.core.settings import GatewaySettings
from service.inference.classifier import MemeClassifier
from service.launchers.gateway_process import GatewayProcess


def summarise(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean_ms": statistics.fmean(ordered),
        "p50_ms": ordered[len(ordered) // 2],
        "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "n": len(ordered),
    }


def in_process_stages(
    classifier: MemeClassifier, payloads: list[bytes], texts: list[str | None], settings: GatewaySettings
) -> dict[str, dict[str, float]]:
    per_stage: dict[str, list[float]] = {}
    for data, text in zip(payloads, texts):
        _, timings = classify_upload(
            classifier, data, text, max_pixels=settings.max_image_pixels, max_text_chars=settings.max_text_chars
        )
        for stage, ms in timings.items():
            per_stage.setdefault(stage, []).append(ms)
    return {stage: summarise(values) for stage, values in per_stage.items()}


def batched_inference(
    classifier: MemeClassifier, images: list[Image.Image], texts: list[str], batch: int, repeats: int = 5
) -> dict[str, float]:
    """Per-meme inference milliseconds for each member at a given batch size."""
    tensors = {
        "input_ids": classifier.tokenizer((texts * batch)[:batch]),
        "pixel_values": images_to_batch((images * batch)[:batch], classifier.manifest.preprocessing),
    }
    result = {}
    for member in classifier.members:
        classifier.backend.infer(member, tensors)  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            classifier.backend.infer(member, tensors)
        result[member.name] = (time.perf_counter() - started) * 1000.0 / (repeats * batch)
    return result


def http_round_trips(repository: Path, payloads: list[bytes], texts: list[str | None]) -> dict[str, float]:
    samples = []
    with GatewayProcess(repository) as base_url, httpx.Client(base_url=base_url, timeout=120) as client:
        for data, text in zip(payloads, texts):
            started = time.perf_counter()
            response = client.post(
                "/v1/classify", files={"image": ("meme.jpg", data, "image/jpeg")}, data={"text": text} if text else None
            )
            response.raise_for_status()
            samples.append((time.perf_counter() - started) * 1000.0)
    return summarise(samples)


def _parse_args() -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--data", type=Path, default=Path("demo-run/data"), help="folder with val.csv")
    parser.add_argument("--memes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/stage_costs.json"))
    return parser.parse_args()


def _print_results(results: dict, memes: int) -> None:
    """Print the per-stage table, the HTTP ratio and the batch-1 vs batch-32 inference costs."""
    print(f"\nper-meme stage costs over {memes} memes (in-process, ms)")
    print(f"{'stage':<26}{'with OCR':>12}{'text given':>12}")
    for stage in results["with_ocr"]:
        text_given = results["with_text"].get(stage, {}).get("mean_ms")
        print(
            f"{stage:<26}{results['with_ocr'][stage]['mean_ms']:>12.1f}"
            f"{(f'{text_given:.1f}' if text_given is not None else '-'):>12}"
        )
    http = results["http_with_text"]["mean_ms"]
    local = results["with_text"]["total"]["mean_ms"]
    print(f"{'HTTP round trip (text)':<26}{'':>12}{http:>12.1f}   x{http / local:.2f} of in-process")
    print("\ninference per meme (ms), batch 1 vs batch 32")
    for member, ms in results["inference_ms_per_meme"]["batch_1"].items():
        b32 = results["inference_ms_per_meme"]["batch_32"][member]
        print(f"  {member:<14}{ms:>8.2f}{b32:>8.2f}   batch-32 speed-up x{ms / b32:.1f}")


def main() -> None:
    """Measure every stage in process, batched inference and the HTTP round trip; print and write them."""
    args = _parse_args()
    records = load_split(args.data / "val.csv")[: args.memes]
    payloads = [r.image_path.read_bytes() for r in records]
    captions = [r.text for r in records]
    settings = GatewaySettings(model_repository=args.repository)
    classifier = MemeClassifier.from_settings(settings)
    in_process_stages(classifier, payloads[:2], captions[:2], settings)  # warm-up

    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "memes": len(records),
        "with_ocr": in_process_stages(classifier, payloads, [None] * len(payloads), settings),
        "with_text": in_process_stages(classifier, payloads, captions, settings),
    }
    images = [Image.open(r.image_path).convert("RGB") for r in records]
    results["inference_ms_per_meme"] = {
        f"batch_{b}": batched_inference(classifier, images, captions, b) for b in (1, 32)
    }
    results["http_with_text"] = http_round_trips(args.repository, payloads, captions)
    _print_results(results, len(records))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
