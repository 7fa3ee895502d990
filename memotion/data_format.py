"""Read and write Memotion-format splits (CSV/TSV, JSONL or JSON) as :class:`MemeRecord` lists.

Pure Python. The real Memotion 3 files are tab-delimited with columns id, image URL, the four
Task C intensities, overall sentiment and OCR text; images live at ``image/<split>/<id>.jpg``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".JPG", ".PNG", "")
# Captions longer than this are kept (the tokenizer truncates them) and counted in the load report.
LONG_CAPTION_CHARS = 300
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
            raw = row.get(found[spec.name] or "")  # every label column was found (checked above)
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
        objects = [{_normalise(k): v for k, v in item.items()} for item in items]
        columns = list(dict.fromkeys(k for row in objects for k in row))
        return columns, list(enumerate(objects, start=1))
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


# --- Lenient loading: take a data set as it is, count and report what cannot be used -------------


@dataclass
class LoadReport:
    """What a lenient load did: memes loaded, memes skipped by reason (with their row and id),
    and things that were kept but are worth knowing (counts), e.g. PNG bytes behind a .jpg name."""

    source: str
    rows: int = 0
    loaded: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, number: int, record_id: str) -> None:
        self.skipped.setdefault(reason, []).append(f"row {number} ({record_id})")

    def note(self, what: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1

    @property
    def skipped_count(self) -> int:
        return sum(len(refs) for refs in self.skipped.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "loaded": self.loaded,
            "skipped": {reason: {"count": len(refs), "rows": refs} for reason, refs in self.skipped.items()},
            "notes": dict(self.notes),
        }

    def lines(self) -> list[str]:
        """A human-readable summary (one line per reason and note)."""
        out = [f"{self.source}: {self.rows} rows, {self.loaded} memes loaded, {self.skipped_count} skipped"]
        for reason, refs in sorted(self.skipped.items()):
            shown = ", ".join(refs[:3]) + (", ..." if len(refs) > 3 else "")
            out.append(f"  skipped {len(refs)}: {reason} [{shown}]")
        out += [f"  kept, note {count}: {what}" for what, count in sorted(self.notes.items())]
        return out


@dataclass(frozen=True)
class ImageCheck:
    """A decoded image file: its real format and mode, and a hash of its bytes (duplicates)."""

    format: str
    mode: str
    digest: str


def check_image(path: Path) -> ImageCheck | str:
    """Decode ``path`` fully; an :class:`ImageCheck`, or why it cannot be used."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
    except OSError as error:
        return f"unreadable image file ({type(error).__name__})"
    if not data:
        return "empty image file"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image.convert("RGB")  # palette, alpha, CMYK, 16-bit: all must become RGB
            return ImageCheck(str(image.format or "unknown"), image.mode, hashlib.sha1(data).hexdigest())
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        return f"image cannot be decoded ({type(error).__name__})"


def clean_caption(text: str) -> str:
    """Whitespace collapsed to single spaces (line breaks in captions are layout, not content)."""
    return " ".join(text.split())


@dataclass(frozen=True)
class ScannedRow:
    """One usable row of a lenient load: its number, cells, id, checked image and caption."""

    number: int
    row: dict[str, Any]
    id: str
    image_path: Path
    text: str


def scan_rows(
    path: Path,
    report: LoadReport,
    image_root: Path | None = None,
    long_caption_chars: int = LONG_CAPTION_CHARS,
) -> Iterator[ScannedRow]:
    """Rows of ``path`` whose image decodes and that are not duplicates; every other row is counted
    in ``report`` by reason. A duplicate is a repeated id, or a meme with the same image bytes and
    the same caption as an earlier row (the first is kept)."""
    root = Path(image_root) if image_root is not None else path.parent
    columns, rows = read_rows(path)
    found = {name: find_column(name, columns) for name in COLUMN_ALIASES}
    if found["text"] is None:
        raise ValueError(f"{path}: missing caption column (accepted names: {list(COLUMN_ALIASES['text'])})")
    seen_ids: set[str] = set()
    seen_memes: dict[tuple[str, str], str] = {}
    for number, row in rows:
        report.rows += 1
        image_value = cell(row, found["image"])
        record_id = cell(row, found["id"]) or Path(image_value).stem or f"row{number}"
        if record_id in seen_ids:
            report.skip("duplicate id", number, record_id)
            continue
        seen_ids.add(record_id)
        candidates = image_candidates(image_value, record_id, root, path.stem)
        image_path = next((c for c in candidates if c.is_file()), None)
        if image_path is None:
            report.skip("no image file", number, record_id)
            continue
        checked = check_image(image_path)
        if isinstance(checked, str):
            report.skip(checked, number, record_id)
            continue
        text = clean_caption(cell(row, found["text"]))
        key = (checked.digest, text.lower())
        if key in seen_memes:
            report.skip("duplicate meme (same image and caption as an earlier row)", number, record_id)
            continue
        seen_memes[key] = record_id
        _note_row(report, image_path, checked, text, long_caption_chars)
        yield ScannedRow(number, row, record_id, image_path, text)


def _note_row(report: LoadReport, image_path: Path, checked: ImageCheck, text: str, long_chars: int) -> None:
    expected = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP"}
    if expected.get(image_path.suffix.lower()) != checked.format:
        report.note(f"{checked.format} bytes behind a {image_path.suffix or 'no'} extension")
    if checked.mode != "RGB":
        report.note(f"image mode {checked.mode} (converted to RGB)")
    if not text:
        report.note("empty caption (kept: image-only evidence)")
    elif len(text) > long_chars:
        report.note(f"caption over {long_chars} characters (kept; the tokenizer truncates)")


def load_split_checked(
    path: str | Path,
    image_root: Path | None = None,
    long_caption_chars: int = LONG_CAPTION_CHARS,
) -> tuple[list[MemeRecord], LoadReport]:
    """Like :func:`load_split`, but a meme that cannot be used (no or undecodable image, missing or
    unknown label, duplicate) is skipped and counted by reason in the returned report instead of
    stopping the load."""
    path = Path(path)
    report = LoadReport(str(path))
    columns, _ = read_rows(path)
    found = {spec.name: find_column(spec.name, columns) for spec in ALL_TASKS}
    missing = [name for name, column in found.items() if column is None]
    if missing:
        raise ValueError(f"{path}: missing label columns {missing}; columns found: {columns}")
    records = []
    for scanned in scan_rows(path, report, image_root, long_caption_chars):
        labels: dict[str, int] = {}
        for spec in ALL_TASKS:
            raw = scanned.row.get(found[spec.name] or "")  # every label column was found (checked above)
            if raw is None or str(raw).strip() == "":
                report.skip(f"missing {spec.name} label", scanned.number, scanned.id)
                break
            try:
                labels[spec.name] = parse_label(spec.name, raw if isinstance(raw, int) else str(raw))
            except ValueError:
                report.skip(f"unknown {spec.name} label", scanned.number, scanned.id)
                break
        else:
            records.append(MemeRecord(scanned.id, scanned.image_path, scanned.text, **labels))
    report.loaded = len(records)
    return records, report
