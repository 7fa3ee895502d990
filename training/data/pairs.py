"""Image/text pairs for pre-training, from any supported data set format.

``PairRecord`` is one meme (image file, its text, and a binary label where the data set has one:
hateful for Hateful Memes, misogynous for MAMI). The CLIP contrastive stage uses image and text
only; the binary uni-modal stage needs the label. ``DataRef`` names a data set by format and path;
``load_pairs`` dispatches to the format's loader.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PairFormat = Literal["memotion", "hateful_memes", "mami"]
PAIR_FORMATS: tuple[str, ...] = ("memotion", "hateful_memes", "mami")


@dataclass(frozen=True)
class PairRecord:
    id: str
    image_path: Path
    text: str
    label: int | None  # 1 hateful / misogynous, 0 not, None unlabelled
    source: str


@dataclass(frozen=True)
class DataRef:
    """A data set file (or Memotion folder / split file) and its format."""

    format: PairFormat
    path: Path

    def resolved(self, root: Path | None) -> DataRef:
        path = self.path if self.path.is_absolute() or root is None else root / self.path
        return DataRef(self.format, path)


def detect_format(path: Path) -> PairFormat:
    """.jsonl: Hateful Memes; a folder or a file with Memotion columns: memotion; a CSV/TSV with a
    ``file_name`` column: MAMI."""
    if path.is_dir():
        return "memotion"
    if path.suffix.lower() == ".jsonl":
        return "hateful_memes"
    if path.suffix.lower() in {".csv", ".tsv", ".txt"} and path.is_file():
        with path.open(encoding="utf-8-sig") as handle:
            header = handle.readline().lower()
        return "mami" if "file_name" in header else "memotion"
    raise ValueError(f"cannot tell the format of {path}; write FORMAT:PATH with FORMAT one of {list(PAIR_FORMATS)}")


def parse_data_ref(spec: str) -> DataRef:
    """``FORMAT:PATH`` or just ``PATH`` (format detected from the file)."""
    head, sep, tail = spec.partition(":")
    if sep and head in PAIR_FORMATS:
        return DataRef(head, Path(tail))  # type: ignore[arg-type]
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"data set {path} does not exist")
    return DataRef(detect_format(path), path)


def load_pairs(ref: DataRef) -> list[PairRecord]:
    if ref.format == "hateful_memes":
        from training.data.hateful_memes import load_hateful_memes

        return load_hateful_memes(ref.path)
    if ref.format == "mami":
        from training.data.mami import load_mami

        return load_mami(ref.path)
    if ref.format == "memotion":
        return memotion_pairs(ref.path)
    raise ValueError(f"unknown data format {ref.format!r}; choose from {list(PAIR_FORMATS)}")


def load_all_pairs(refs: Iterable[DataRef]) -> list[PairRecord]:
    records: list[PairRecord] = []
    for ref in refs:
        records.extend(load_pairs(ref))
    return records


def memotion_pairs(path: Path) -> list[PairRecord]:
    """A Memotion split (or a folder: its train.csv) as pairs; label = offensive (any intensity),
    which is how the synthetic data provides binary 'hateful' labels for tests."""
    from memotion.data_format import load_split

    split = path / "train.csv" if path.is_dir() else path
    return [
        PairRecord(r.id, r.image_path, r.text, int(r.offensive > 0), f"memotion:{split.name}")
        for r in load_split(split)
    ]


def require_labels(records: list[PairRecord], what: str) -> None:
    missing = sum(r.label is None for r in records)
    if missing:
        raise ValueError(
            f"{what}: {missing} of {len(records)} memes have no binary label "
            "(the binary pre-training stage needs labelled Hateful Memes / MAMI data)"
        )
