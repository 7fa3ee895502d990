"""The MAMI format (SemEval-2022 Task 5): tab-separated ``file_name, misogynous, shaming,
stereotype, objectification, violence, Text Transcription``; images beside the file.

Only ``file_name`` and ``Text Transcription`` are required (the test file has no labels).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from training.data.pairs import PairRecord

MAMI_COLUMNS = ("file_name", "misogynous", "shaming", "stereotype", "objectification", "violence", "Text Transcription")


def load_mami(path: str | Path, image_root: Path | None = None) -> list[PairRecord]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        for needed in ("file_name", "text transcription"):
            if needed not in columns:
                raise ValueError(
                    f"{path}: missing column {needed!r} (MAMI files are tab-separated "
                    f"with {list(MAMI_COLUMNS)}); found {reader.fieldnames}"
                )
        label_column = columns.get("misogynous")
        records = []
        for number, row in enumerate(reader, start=1):
            name = (row[columns["file_name"]] or "").strip()
            if not name:
                continue
            raw = (row.get(label_column) or "").strip() if label_column else ""
            if raw not in ("", "0", "1"):
                raise ValueError(f"{path}: row {number}: misogynous must be 0 or 1, got {raw!r}")
            image_path = root / name
            if not image_path.is_file():
                raise FileNotFoundError(f"{path}: row {number}: image {image_path} not found")
            records.append(
                PairRecord(
                    id=Path(name).stem,
                    image_path=image_path,
                    text=(row[columns["text transcription"]] or "").strip(),
                    label=int(raw) if raw else None,
                    source=f"mami:{path.name}",
                )
            )
    return records


def write_mami(path: str | Path, records: Iterable[PairRecord]) -> Path:
    """Write ``records`` as a MAMI TSV (sub-labels 0; images referenced relative to its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(MAMI_COLUMNS)]
    for record in records:
        name = Path(os.path.relpath(record.image_path, path.parent)).as_posix()
        label = "" if record.label is None else str(record.label)
        text = " ".join(record.text.split())  # no tabs or newlines inside a field
        lines.append("\t".join([name, label, "0", "0", "0", "0", text]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
