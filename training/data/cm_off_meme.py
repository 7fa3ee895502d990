"""CM-Off-Meme (Hindi-English code-mixed memes): Task A sentiment plus BINARY sarcasm and offence.

The set has no humour or motivation labels and no intensities: sarcasm is ``sarcasm_raw``
(sarcasm / non-sarcastic) and offence ``offensive_level1`` (off / non-off). They are kept and scored
as binary tasks (Task B style), never mapped onto the Memotion intensity scales. Memes that cannot
be used (no or undecodable image, missing or unknown label, duplicates) are counted by reason in a
:class:`memotion.data_format.LoadReport`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memotion.data_format import LONG_CAPTION_CHARS, LoadReport, MemeRecord, cell, read_rows, scan_rows
from memotion.labels import parse_label

# Binary task -> (accepted column names, positive values, negative values); values compared in lower case.
BINARY_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "sarcastic": (
        ("sarcasm_raw", "sarcasm_binary"),
        ("sarcasm", "sarcastic", "1", "yes"),
        ("non-sarcastic", "0", "no"),
    ),
    "offensive": (("offensive_level1", "offensive_binary"), ("off", "offensive", "1", "yes"), ("non-off", "0", "no")),
}
BINARY_TASKS = tuple(BINARY_COLUMNS)
SENTIMENT_COLUMNS = ("sentiment", "overall_sentiment")


@dataclass(frozen=True)
class BinaryMemeRecord:
    """A meme with Task A and binary presence labels (1 present, 0 absent) per task in BINARY_TASKS."""

    id: str
    image_path: Path
    text: str
    sentiment: int
    binary: dict[str, int]
    offensive_level2: str = ""  # explicit / implicit / non-off, kept for analysis only

    def as_training_record(self) -> MemeRecord:
        """The record for the shared training loop, whose heads are the Memotion ones.

        The binary label rides in the first two classes of the matching 4-way head (absent -> 0,
        present -> 1); prediction is read back as presence (predicted class > 0) and scored as a
        binary task, exactly as Task B is derived from Task C. Humour and motivation have no labels
        here: they are held at class 0 and never scored.
        """
        return MemeRecord(
            self.id,
            self.image_path,
            self.text,
            sentiment=self.sentiment,
            humour=0,
            sarcasm=self.binary["sarcastic"],
            offensive=self.binary["offensive"],
            motivational=0,
        )


def parse_binary(task: str, raw: str) -> int:
    """1 / 0 for a binary label cell of ``task``; ValueError for anything else."""
    _, positive, negative = BINARY_COLUMNS[task]
    value = raw.strip().lower()
    if value in positive:
        return 1
    if value in negative:
        return 0
    raise ValueError(f"{task}: unknown binary label {raw!r}; expected one of {positive + negative}")


def load_cm_off_meme(
    path: str | Path, image_root: Path | None = None, long_caption_chars: int = LONG_CAPTION_CHARS
) -> tuple[list[BinaryMemeRecord], LoadReport]:
    """Read a CM-Off-Meme labels file (CSV/TSV/JSONL); (usable memes in file order, load report)."""
    path = Path(path)
    columns, _ = read_rows(path)
    sentiment = next((c for c in SENTIMENT_COLUMNS if c in columns), None)
    binary = {task: next((c for c in names if c in columns), None) for task, (names, _, _) in BINARY_COLUMNS.items()}
    missing = ["sentiment"] * (sentiment is None) + [t for t, c in binary.items() if c is None]
    if missing:
        raise ValueError(f"{path}: missing label columns for {missing}; columns found: {columns}")
    level2 = "offensive_level2" if "offensive_level2" in columns else None
    report = LoadReport(str(path))
    records = []
    for scanned in scan_rows(path, report, image_root, long_caption_chars):
        labels: dict[str, int] = {}
        for task, column in (("sentiment", sentiment), *binary.items()):
            raw = cell(scanned.row, column)
            if not raw:
                report.skip(f"missing {task} label", scanned.number, scanned.id)
                break
            try:
                labels[task] = parse_label(task, raw) if task == "sentiment" else parse_binary(task, raw)
            except ValueError:
                report.skip(f"unknown {task} label", scanned.number, scanned.id)
                break
        else:
            sentiment_label = labels.pop("sentiment")
            extra = cell(scanned.row, level2) if level2 else ""
            records.append(
                BinaryMemeRecord(scanned.id, scanned.image_path, scanned.text, sentiment_label, labels, extra)
            )
    report.loaded = len(records)
    return records, report
