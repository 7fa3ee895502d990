"""Read and write Memotion-format splits (CSV/TSV, JSONL or JSON) as :class:`MemeRecord` lists.

Pure Python. The real Memotion 3 files are tab-delimited with columns id, image URL, the four
Task C intensities, overall sentiment and OCR text; images live at ``image/<split>/<id>.jpg``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memotion.labels import ALL_TASKS, TASK_A, TASK_C, parse_label, task_b_from_task_c

# Canonical column -> accepted header names (normalised: lower case, spaces as underscores),
# in order of preference.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "image": ("image", "image_path", "image_url", "image_name"),
    "text": ("ocr", "ocr_text", "text", "text_corrected", "text_ocr"),
    "sentiment": ("overall_sentiment", "sentiment"),
    "humour": ("humour", "humor"),
    "sarcasm": ("sarcasm", "sarcastic"),
    "offensive": ("offensive",),
    "motivational": ("motivational",),
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
WRITE_COLUMNS = (
    "id",
    "image_url",
    "humour",
    "sarcasm",
    "offensive",
    "motivational",
    "overall_sentiment",
    "ocr_text",
)


@dataclass(frozen=True)
class MemeRecord:
    """One labelled meme: class indices as in ``memotion.labels``."""

    id: str
    image_path: Path
    text: str
    sentiment: int
    humour: int
    sarcasm: int
    offensive: int
    motivational: int

    def labels(self) -> dict[str, int]:
        """Class index per task name (Task A and Task C)."""
        return {spec.name: getattr(self, spec.name) for spec in ALL_TASKS}

    @property
    def task_b(self) -> dict[str, bool]:
        """Task B (emotion present) derived from the Task C intensities."""
        return task_b_from_task_c({spec.name: getattr(self, spec.name) for spec in TASK_C})


def load_split(path: str | Path, image_root: Path | None = None) -> list[MemeRecord]:
    """Load one split in file order; relative image paths are under ``image_root`` or the
    file's folder."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    columns, rows = read_rows(path)
    found = {name: find_column(name, columns) for name in COLUMN_ALIASES}
    required = ["text", *(spec.name for spec in ALL_TASKS)]
    if found["image"] is None:
        required.insert(0, "id")  # ids can only be derived from image names
    for name in required:
        if found[name] is None:
            raise ValueError(
                f"{path}: missing required column {name!r} (accepted names: "
                f"{list(COLUMN_ALIASES[name])}); columns found: {columns}"
            )
    records = []
    for number, row in rows:
        image_value = cell(row, found["image"])
        record_id = cell(row, found["id"]) or Path(image_value).stem
        labels = {}
        for spec in ALL_TASKS:
            raw = row.get(found[spec.name])
            try:
                value = raw if isinstance(raw, int) else str(raw)
                labels[spec.name] = parse_label(spec.name, value)
            except ValueError as error:
                raise ValueError(f"{path}: row {number}: bad {spec.name} label {raw!r} ({error})") from None
        candidates = image_candidates(image_value, record_id, root, path.stem)
        image_path = next((c for c in candidates if c.is_file()), None)
        if image_path is None:
            raise FileNotFoundError(
                f"{path}: row {number}: image file for id {record_id!r} not found; tried "
                + ", ".join(str(c) for c in candidates)
            )
        records.append(MemeRecord(record_id, image_path, cell(row, found["text"]), **labels))
    return records


def write_split(path: str | Path, records: Iterable[MemeRecord]) -> Path:
    """Write ``records`` as a tab-delimited Memotion-3-style file that :func:`load_split` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(WRITE_COLUMNS)
        for record in records:
            image = Path(os.path.relpath(record.image_path, path.parent)).as_posix()
            writer.writerow(
                [
                    record.id,
                    image,
                    *(spec.labels[getattr(record, spec.name)] for spec in TASK_C),
                    TASK_A.labels[record.sentiment],
                    record.text,
                ]
            )
    return path


def _normalise(header: str) -> str:
    return header.strip().lstrip("\ufeff").lower().replace(" ", "_").replace("-", "_")


def find_column(name: str, columns: list[str]) -> str | None:
    return next((alias for alias in COLUMN_ALIASES[name] if alias in columns), None)


def cell(row: dict[str, Any], column: str | None) -> str:
    value = row.get(column) if column is not None else None
    return "" if value is None else str(value).strip()


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Normalised column names and (1-based row number, row) pairs."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json"}:
        text = path.read_text(encoding="utf-8-sig")
        if suffix == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = json.loads(text)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ValueError(f"{path}: expected a list of JSON objects")
        rows = [{_normalise(k): v for k, v in item.items()} for item in items]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        return columns, list(enumerate(rows, start=1))
    if suffix not in {".csv", ".tsv", ".txt"}:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (csv, tsv, jsonl or json)")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    header = lines[0] if lines else ""
    delimiter = "\t" if suffix == ".tsv" or header.count("\t") >= max(1, header.count(",")) else ","
    reader = csv.reader(lines, delimiter=delimiter)
    columns = [_normalise(c) for c in next(reader, [])]
    rows = [
        (number, dict(zip(columns, values)))
        for number, values in enumerate(reader, start=1)
        if any(v.strip() for v in values)
    ]
    return columns, rows


def image_candidates(value: str, record_id: str, root: Path, split: str) -> list[Path]:
    """A relative path is tried under ``root``; a URL or no value means ``image/<split>/<id>.*``."""
    if value and "://" not in value:
        return [root / value, root / "image" / split / Path(value).name]
    return [root / "image" / split / f"{record_id}{ext}" for ext in IMAGE_EXTENSIONS]
