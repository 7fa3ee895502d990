"""The offline recipe as a user runs it, scored through the gateway (issue 23): the real-data split's
train / val memes written as a data folder, ``memotion train --recipe offline`` and ``memotion
export`` run as commands, then the in-process gateway (ONNX Runtime) classifies the test memes with
their captions given (image none: the members read text only). Prints and writes the test macro /
weighted F1 (training/real_scores.py), the train and export seconds.

    python bench/offline_served.py --out OUT [--dataset cm-off-meme] [--text-clean]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memotion.data_format import write_split
from training.data.real_sets import DATA_SETS
from training.experiments.real_data import RealDataConfig, load_data_set, truth
from training.experiments.real_data_cli import shared_data_root
from training.real_scores import score_predictions


def run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def served_labels(repository: Path, texts: list[str], clean: bool) -> dict[str, np.ndarray]:
    """Each head's voted class index for ``texts``, from the gateway's classifier (batches of 64)."""
    from service.core.settings import GatewaySettings
    from service.inference.classifier import MemeClassifier

    settings = GatewaySettings(model_repository=repository, ocr="none", batching=False, text_clean=clean)
    classifier = MemeClassifier.from_settings(settings)
    out: dict[str, list[int]] = {}
    for start in range(0, len(texts), 64):
        chunk = texts[start : start + 64]
        for result in classifier.classify_batch([None] * len(chunk), chunk):
            for head, prediction in result.tasks.items():
                out.setdefault(head, []).append(prediction.index)
    return {head: np.array(v) for head, v in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", default="cm-off-meme", choices=list(DATA_SETS))
    parser.add_argument("--text-clean", action="store_true", help="the gateway's default text cleaning on")
    args = parser.parse_args()
    data = load_data_set(RealDataConfig(data_root=str(shared_data_root())), args.dataset)
    folder = args.out / "data"
    for split in ("train", "val"):
        write_split(folder / f"{split}.csv", data.records_of(split))
    run_dir, repository = args.out / "run", args.out / "repository"
    train_s = run(["memotion", "train", "--recipe", "offline", "--data", str(folder), "--out", str(run_dir)])
    export_s = run(["memotion", "export", "--run", str(run_dir), "--out", str(repository)])
    test = data.records_of("test")
    predicted = served_labels(repository, [r.text for r in test], args.text_clean)
    scores = score_predictions(data.spec.kind, truth(test), predicted)
    report = {"dataset": args.dataset, "text_clean": args.text_clean, "test": scores, "train_s": train_s}
    report["export_s"] = export_s
    (args.out / "offline_served.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
