"""The Hateful Memes format (Kiela et al. 2020): JSONL lines ``{"id", "img", "label", "text"}``.

``img`` is relative to the JSONL file's folder (``img/01235.png``); test files have no ``label``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from training.data.pairs import PairRecord


def load_hateful_memes(path: str | Path) -> list[PairRecord]:
    path = Path(path)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number}: not JSON ({error})") from None
        missing = [key for key in ("img", "text") if key not in item]
        if missing:
            raise ValueError(f"{path}: line {number}: missing {missing} (need id, img, text, label)")
        label = item.get("label")
        if label is not None and label not in (0, 1, "0", "1"):
            raise ValueError(f"{path}: line {number}: label must be 0 or 1, got {label!r}")
        image_path = path.parent / str(item["img"])
        if not image_path.is_file():
            raise FileNotFoundError(f"{path}: line {number}: image {image_path} not found")
        records.append(
            PairRecord(
                id=str(item.get("id", Path(item["img"]).stem)),
                image_path=image_path,
                text=str(item["text"]),
                label=None if label is None else int(label),
                source=f"hateful_memes:{path.name}",
            )
        )
    return records


def write_hateful_memes(path: str | Path, records: Iterable[PairRecord]) -> Path:
    """Write ``records`` as a Hateful Memes JSONL file (image paths relative to its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            item = {"id": record.id, "img": Path(os.path.relpath(record.image_path, path.parent)).as_posix()}
            if record.label is not None:
                item["label"] = record.label
            item["text"] = record.text
            handle.write(json.dumps(item) + "\n")
    return path
