"""The manifest's ``evaluation`` entries (memotion.manifest.EvaluationEntry) from a run's results.

A ``memotion train`` run's ``summary.json`` gives each model's and the ensemble's validation weighted
F1; an ``evaluation.json`` beside it (a list of entries, e.g. written from the real-data experiment
by ``entries_from_report``) adds held-out test numbers. ``memotion export`` puts both in the
manifest and the gateway shows them at ``GET /v1/model-card``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

EVALUATION_FILE = "evaluation.json"
SUMMARY_KEYS = ("task_a", "task_b", "task_c")


def entries_from_summary(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Validation weighted F1 (Task A, B, C) of every model and of the ensemble of a training run."""
    data = summary.get("data", {})
    dataset = str(data.get("dir", "unknown"))
    rows = {name: entry.get("validation", {}) for name, entry in summary.get("models", {}).items()}
    if "ensemble" in summary:
        rows["ensemble"] = summary["ensemble"].get("validation", {})
    out = []
    for name, scores in rows.items():
        picked = {key: round(float(scores[key]), 4) for key in SUMMARY_KEYS if key in scores}
        if picked:
            out.append(
                {
                    "dataset": dataset,
                    "split": "validation",
                    "model": name,
                    "scores": {"weighted_f1": picked},
                    "memes": data.get("val"),
                    "note": "the split epochs and ensemble voters were chosen on (optimistic)",
                }
            )
    return out


def entries_from_report(report: dict[str, Any], rows: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Test macro and weighted F1 (mean over seeds) per data set for ``rows`` (default: all) of a
    real-data experiment report (training/experiments/real_data.py)."""
    seeds = len(report["config"]["seeds"])
    recipe = report["config"]["recipe"]
    note = f"CLIP {recipe['clip']}, pretrained {recipe['pretrained'] or 'none (random initialisation)'}"
    out = []
    for dataset, entry in report["datasets"].items():
        for row, cells in entry["test"].items():
            if rows is not None and row not in set(rows):
                continue
            out.append(
                {
                    "dataset": dataset,
                    "split": "test",
                    "model": row,
                    "scores": {
                        f"{measure}_f1": {key: round(stats["mean"], 4) for key, stats in by_task.items()}
                        for measure, by_task in cells.items()
                    },
                    "seeds": seeds,
                    "memes": entry["data"]["split"]["test"],
                    "note": note,
                }
            )
    return out


def write_run_evaluation(run_dir: Path, entries: list[dict[str, Any]]) -> Path:
    path = Path(run_dir) / EVALUATION_FILE
    path.write_text(json.dumps(entries, indent=2))
    return path


def run_evaluation(run_dir: Path) -> list[dict[str, Any]]:
    """Every evaluation entry of a run: from ``summary.json`` and from ``evaluation.json``."""
    run_dir = Path(run_dir)
    entries: list[dict[str, Any]] = []
    summary = run_dir / "summary.json"
    if summary.is_file():
        entries += entries_from_summary(json.loads(summary.read_text()))
    extra = run_dir / EVALUATION_FILE
    if extra.is_file():
        loaded = json.loads(extra.read_text())
        if not isinstance(loaded, list):
            raise ValueError(f"{extra}: expected a list of evaluation entries")
        entries += loaded
    return entries
