"""OCR on real and synthetic memes: today's EasyOCR path against the served PP-OCR models.

    python bench/ocr.py                                  # 60 real memes (seeded sample), 40 synthetic
    python bench/ocr.py --real-memes 20 --synthetic-memes 10 --settings easyocr,ppocr-min736

For every setting, in the same run and on the same memes: median and p90 milliseconds per meme
(one caller), memes/s with 1 and with 8 concurrent callers, and the character error rate against
the human caption (both lower-cased, NFKC, punctuation and whitespace removed; edit distance over
the caption's length; median and mean over memes), also after the gateway's text cleaning
(service/text/cleaning.py: lines joined, URLs, handles and meme-site watermarks removed) of both the
OCR text and the caption. Real memes: ``../shared/data/cm-off-meme-sample``
(Hindi-English memes with human transcriptions; read there, never copied). Synthetic memes:
rendered by ``training/data/synthetic.py``. Prints a table and writes JSON (bench/results/ocr.json).

Settings: ``easyocr`` (the gateway's OCR before: CRAFT + English recogniser on PyTorch, canvas 1280,
one image at a time); ``ppocr-<min|max><side>`` (PP-OCR detector + recogniser from the model
repository run by the gateway's ONNX Runtime backend, detection with the image's shorter (min) or
longer (max) side scaled to <side> pixels; ``ppocr-max384`` is what the gateway runs by default: the
manifest's max-960 rule with MEMOTION_OCR_DETECTOR_MAX_SIDE=384). Besides the seeded sample, the
real memes whose longest side is over 640 px (``--big-memes``), where the detector's size matters.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from training.metrics import character_error_rate

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cm-off-meme-sample"
DEFAULT_SETTINGS = "easyocr,ppocr-min736,ppocr-min480,ppocr-max960,ppocr-max384"


@dataclass
class Meme:
    id: str
    image: Image.Image
    caption: str


def real_memes(root: Path, count: int, seed: int, min_side: int = 0) -> list[Meme]:
    """``count`` captioned real memes (seeded order); with ``min_side``, only those whose longest
    side is longer (where the detector's size cap, MEMOTION_OCR_DETECTOR_MAX_SIDE, acts)."""
    with (root / "labels.csv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["text"].strip()]
    random.Random(seed).shuffle(rows)
    chosen = []
    for row in rows:
        if len(chosen) == count:
            break
        image = Image.open(root / row["image_path"])
        if max(image.size) > min_side:
            chosen.append(Meme(row["id"], image.convert("RGB"), row["text"]))
    return chosen


def synthetic_memes(count: int, seed: int, workdir: Path) -> list[Meme]:
    from memotion.data_format import load_split
    from training.data.synthetic import SyntheticConfig, make_synthetic_dataset

    make_synthetic_dataset(workdir, SyntheticConfig(n_train=0, n_val=count, seed=seed))
    return [Meme(r.id, Image.open(r.image_path).convert("RGB"), r.text) for r in load_split(workdir / "val.csv")]


def engines(names: list[str], workdir: Path) -> dict[str, Callable[[], object]]:
    """Setting name -> a factory of its OCR engine (built only when its turn comes)."""

    def easyocr() -> object:
        from service.inference.ocr import EasyOcrEngine

        return EasyOcrEngine()

    def ppocr(limit_type: str, side: int) -> object:
        from service.inference.backends.ort_backend import OnnxRuntimeBackend
        from service.inference.ocr.ppocr import PpOcrEngine
        from training.ocr_export import export_ocr

        repository = workdir / "ocr_repository"
        entry = export_ocr(repository)
        backend = OnnxRuntimeBackend(repository, entry.models())
        return PpOcrEngine(entry, repository, backend, det_limit_side_len=side, det_limit_type=limit_type)

    factories: dict[str, Callable[[], object]] = {}
    for name in names:
        match = re.fullmatch(r"ppocr-(min|max)(\d+)", name)
        if name == "easyocr":
            factories[name] = easyocr
        elif match:
            factories[name] = lambda t=match.group(1), s=int(match.group(2)): ppocr(t, s)
        else:
            raise SystemExit(f"unknown setting {name!r}: easyocr or ppocr-<min|max><side>")
    return factories


def measure(engine: object, memes: list[Meme], callers: int) -> dict[str, object]:
    """Latency and CER with one caller (each meme once); memes/s with ``callers`` callers as well."""
    from service.text.cleaning import clean_ocr_text

    read = engine.read  # type: ignore[attr-defined]
    read(memes[0].image)  # warm-up
    latencies, errors, cleaned_errors, texts = [], [], [], []
    started = time.perf_counter()
    for meme in memes:
        t0 = time.perf_counter()
        text = read(meme.image)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        errors.append(character_error_rate(text, meme.caption))
        cleaned_errors.append(character_error_rate(clean_ocr_text(text).text, clean_ocr_text(meme.caption).text))
        texts.append({"id": meme.id, "ocr": text, "caption": meme.caption, "cer": round(errors[-1], 4)})
    serial_s = time.perf_counter() - started
    started = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(lambda m: read(m.image), memes))
    parallel_s = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "memes": len(memes),
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        "memes_per_s_1": len(memes) / serial_s,
        f"memes_per_s_{callers}": len(memes) / parallel_s,
        "cer_median": statistics.median(errors),
        "cer_mean": statistics.fmean(errors),
        "cer_cleaned_median": statistics.median(cleaned_errors),
        "cer_cleaned_mean": statistics.fmean(cleaned_errors),
        "texts": texts,
    }


def print_table(results: dict[str, dict[str, dict]], callers: int) -> None:
    header = f"{'set':<10}{'setting':<16}{'median ms':>11}{'p90 ms':>9}{'memes/s@1':>11}"
    print(header + f"{f'memes/s@{callers}':>11}{'CER med':>9}{'CER mean':>10}{'clean med':>10}{'clean mean':>11}")
    for data_set, by_setting in results.items():
        for setting, r in by_setting.items():
            print(
                f"{data_set:<10}{setting:<16}{r['median_ms']:>11.0f}{r['p90_ms']:>9.0f}{r['memes_per_s_1']:>11.2f}"
                f"{r[f'memes_per_s_{callers}']:>11.2f}{r['cer_median']:>9.3f}{r['cer_mean']:>10.3f}"
                f"{r['cer_cleaned_median']:>10.3f}{r['cer_cleaned_mean']:>11.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, default=REAL_DATA, help="a Memotion-format CSV folder with captions")
    parser.add_argument("--real-memes", type=int, default=60)
    parser.add_argument("--big-memes", type=int, default=20, help="real memes whose longest side is over 640 px")
    parser.add_argument("--synthetic-memes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"comma-separated (default {DEFAULT_SETTINGS})")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ocr.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        workdir = Path(tmp)
        data: dict[str, list[Meme]] = {}
        if args.real_memes and (args.real / "labels.csv").is_file():
            data["real"] = real_memes(args.real, args.real_memes, args.seed)
            if args.big_memes:
                data["real_over_640px"] = real_memes(args.real, args.big_memes, args.seed + 1, min_side=640)
        elif args.real_memes:
            print(f"no real memes at {args.real}: measuring synthetic memes only")
        if args.synthetic_memes:
            data["synthetic"] = synthetic_memes(args.synthetic_memes, args.seed, workdir / "synthetic")
        results: dict[str, dict[str, dict]] = {name: {} for name in data}
        for setting, factory in engines(args.settings.split(","), workdir).items():
            engine = factory()
            for data_set, memes in data.items():
                results[data_set][setting] = measure(engine, memes, args.callers)
                r = results[data_set][setting]
                print(f"  {data_set} {setting}: median {r['median_ms']:.0f} ms, CER {r['cer_median']:.3f}", flush=True)
            del engine
    print_table(results, args.callers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_avg_end": os.getloadavg()}
    args.out.write_text(
        json.dumps({"meta": meta, "args": {k: str(v) for k, v in vars(args).items()}, **results}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
