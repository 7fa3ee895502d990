"""The real labelled meme sets the real-data experiment knows, by name (no torch: the CLI lists them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSetSpec:
    name: str
    labels: str  # labels file, relative to the data root
    kind: str  # "memotion" (Task A, B, C) or "binary" (Task A, sarcastic, offensive)


DATA_SETS = {
    "memotion1": DataSetSpec("memotion1", "memotion1-train-128px/labels.csv", "memotion"),
    "cm-off-meme": DataSetSpec("cm-off-meme", "cm-off-meme-sample/labels.csv", "binary"),
}
