"""Decided review items -> a Memotion-format data set folder (``train.csv``, ``val.csv``,
``image/<split>/review-<id>.<ext>``) that `memotion train --data` reads as it is.

Labels are the moderators' corrected labels (Task A and every Task C head; Task B follows from
Task C). The image is the kept full image, else the thumbnail. A meme decided twice (same bytes and
text) is written once, with its latest decision. ``base``: an existing Memotion folder whose splits
are written first (its images are referenced, not copied), so the reviews add to a training set.
Every split is read back with ``load_split_checked``: nothing may be lost on the way.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session

from memotion.data_format import MemeRecord, clean_caption, load_split, load_split_checked, write_split
from memotion.labels import ALL_TASKS, parse_label
from service.moderation.review_store import decided_items
from service.store.schema import ReviewItem

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


class ExportError(RuntimeError):
    pass


@dataclass
class ExportSummary:
    out: Path
    splits: dict[str, int] = field(default_factory=dict)  # memes per split (base + reviews)
    reviews: dict[str, int] = field(default_factory=dict)  # reviewed memes per split
    skipped: dict[str, list[int]] = field(default_factory=dict)  # reason -> review ids

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "splits": self.splits, "reviews": self.reviews, "skipped": self.skipped}

    def line(self) -> str:
        skipped = sum(len(ids) for ids in self.skipped.values())
        return (
            f"exported {sum(self.reviews.values())} reviewed memes to {self.out} "
            f"(train {self.splits.get('train', 0)}, val {self.splits.get('val', 0)} memes in all); "
            f"{skipped} decided items not exportable" + (f": {self.skipped}" if skipped else "")
        )


def _labels(row: ReviewItem) -> dict[str, int]:
    corrected = row.corrected_labels or {}
    return {spec.name: parse_label(spec.name, corrected[spec.name]) for spec in ALL_TASKS}


def in_validation(item_id: int, val_share: float) -> bool:
    """A fixed split by the item's id: the same item lands in the same split on every export."""
    return int(hashlib.sha256(f"review-{item_id}".encode()).hexdigest(), 16) % 10_000 < val_share * 10_000


def _exportable(rows: list[ReviewItem], summary: ExportSummary) -> list[tuple[ReviewItem, dict[str, int], bytes]]:
    latest: dict[tuple[str, str], tuple[ReviewItem, dict[str, int], bytes]] = {}
    for row in rows:  # oldest first: a later decision of the same meme replaces the earlier one
        data = row.image or row.thumbnail
        if data is None:
            summary.skipped.setdefault("no image (text only, or deleted by retention)", []).append(row.id)
            continue
        try:
            labels = _labels(row)
        except (KeyError, ValueError):
            summary.skipped.setdefault("no full set of corrected labels", []).append(row.id)
            continue
        key = (row.image_sha256 or hashlib.sha256(data).hexdigest(), clean_caption(row.text).lower())
        latest[key] = (row, labels, data)
    return list(latest.values())


def _write_image(out: Path, split: str, item_id: int, data: bytes) -> Path:
    with Image.open(io.BytesIO(data)) as image:
        extension = EXTENSIONS.get(image.format or "", ".jpg")
    path = out / "image" / split / f"review-{item_id}{extension}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def export_reviews(session: Session, out: Path, *, val_share: float = 0.2, base: Path | None = None) -> ExportSummary:
    out = Path(out)
    summary = ExportSummary(out)
    records: dict[str, list[MemeRecord]] = {"train": [], "val": []}
    if base is not None:
        for split in records:
            records[split].extend(load_split(Path(base) / f"{split}.csv"))
    for row, labels, data in _exportable(decided_items(session), summary):
        split = "val" if in_validation(row.id, val_share) else "train"
        path = _write_image(out, split, row.id, data)
        records[split].append(MemeRecord(f"review-{row.id}", path, row.text, **labels))
        summary.reviews[split] = summary.reviews.get(split, 0) + 1
    for split, rows in records.items():
        if not rows:
            raise ExportError(f"no memes for the {split} split: decide more memes, lower --val-share, or give --base")
        write_split(out / f"{split}.csv", rows)
        loaded, report = load_split_checked(out / f"{split}.csv")
        if report.skipped:
            raise ExportError(f"{out / split}.csv would lose memes on loading: {report.skipped}")
        summary.splits[split] = len(loaded)
    (out / "reviews-export.json").write_text(json.dumps(summary.as_dict(), indent=2))
    return summary
