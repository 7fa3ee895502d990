"""The gateway's Hindi-English text path on real CM-Off-Meme captions (issue 15, part 4).

What language identification calls the human captions (en / hi-Latn / hi / other / unknown), and
Task A (plus the binary tasks) of TF-IDF + logistic regression on the experiment's split with the
path's steps on and off: raw caption; cleaned; cleaned + the language as a token; cleaned + romanised
Hindi transliterated to Devanagari (what the path feeds its hi->en translator); all three. No
translator is available offline, so back-translation itself is not measured. Lives in bench/ because
it imports the gateway (service.text) and training together.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.text.processing import TextConfig, TextProcessor
from service.text.transliteration import romanised_to_devanagari
from training.baselines import tfidf_lr_probabilities
from training.experiments.real_data import RealDataConfig, load_data_set, truth
from training.real_scores import MEASURES, TASK_KEYS, score_predictions

VARIANTS = {
    "raw caption": (False, False, False),
    "cleaned": (True, False, False),
    "cleaned + language token": (True, True, False),
    "cleaned + transliterated hi-Latn": (True, False, True),
    "cleaned + language token + transliterated": (True, True, True),
}


def caption_variants(texts: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Every variant's captions and the language identified for each (after cleaning)."""
    processor = TextProcessor(TextConfig(clean=True, identify_language=True, transliterate=True))
    processed = processor.process_many(texts)
    cleaned = [p.text for p in processed]
    languages = [p.language or "unknown" for p in processed]
    transliterated = [
        romanised_to_devanagari(text) if language == "hi-Latn" else text for text, language in zip(cleaned, languages)
    ]
    out = {}
    for name, (clean, tag, translit) in VARIANTS.items():
        base = transliterated if translit else (cleaned if clean else list(texts))
        out[name] = [f"{text} __lang_{lang.replace('-', '_')}" if tag else text for text, lang in zip(base, languages)]
    return out, languages


def run_text_path_study(config: RealDataConfig, out: Path) -> dict:
    data = load_data_set(config, "cm-off-meme")
    records = {s: data.records_of(s) for s in ("train", "val", "test")}
    order = [(s, i) for s in records for i in range(len(records[s]))]
    variants, languages = caption_variants([records[s][i].text for s, i in order])
    labels = {s: truth(r) for s, r in records.items()}
    rows = {}
    for name, texts in variants.items():
        by_split: dict[str, list[str]] = {s: [] for s in records}
        for (split, _), text in zip(order, texts):
            by_split[split].append(text)
        probabilities, _ = tfidf_lr_probabilities(by_split, labels, config.tfidf)
        predicted = {h: p.argmax(1) for h, p in probabilities["test"].items()}
        rows[name] = score_predictions("binary", labels["test"], predicted)
    counts = Counter(languages)
    by_language = _task_a_by_language(records, order, languages)
    study = {"language_counts": dict(counts.most_common()), "task_a_by_language": by_language, "test": rows}
    (out / "text_path.json").write_text(json.dumps(study, indent=2))
    (out / "text_path.md").write_text(markdown(study))
    return study


def _task_a_by_language(records: dict, order: list, languages: list[str]) -> dict[str, dict[str, int]]:
    """Task A label counts per identified language (all splits): does language carry the label?"""
    out: dict[str, Counter] = {}
    for (split, i), language in zip(order, languages):
        out.setdefault(language, Counter())[("negative", "neutral", "positive")[records[split][i].sentiment]] += 1
    return {language: dict(counter) for language, counter in out.items()}


def markdown(study: dict) -> str:
    keys = TASK_KEYS["binary"]
    total = sum(study["language_counts"].values())
    lines = [
        "## CM-Off-Meme: the text path (TF-IDF + LR on the experiment's split, test F1)",
        "",
        "Language identification of the human captions (after cleaning): "
        + ", ".join(f"{lang} {n} ({n / total:.0%})" for lang, n in study["language_counts"].items())
        + ".",
        "",
        "| captions | " + " | ".join(f"{k} {m}" for m in MEASURES for k in keys) + " |",
        "|---|" + "---|" * (len(keys) * len(MEASURES)),
    ]
    for name, scores in study["test"].items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[m][k]:.3f}" for m in MEASURES for k in keys) + " |")
    lines += ["", "Task A labels per identified language: " + json.dumps(study["task_a_by_language"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.real_data import main

    raise SystemExit(main([*sys.argv[1:], "--text-path-only"]))
