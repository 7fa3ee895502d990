"""Fixed, seeded train / validation / test splits of a labelled meme set, stratified by one label,
with near-duplicates (same image bytes or same caption) kept inside one split. Pure numpy."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
MIN_GROUP_CAPTION_CHARS = 20  # shorter captions ("LOL") are shared by unrelated memes


def duplicate_groups(texts: Sequence[str], image_paths: Sequence[Path | str]) -> np.ndarray:
    """A group id per meme: memes sharing image bytes or a (normalised, long enough) caption are
    joined (union-find), so a split never puts a meme's near-copy on the other side."""
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for i, (text, image) in enumerate(zip(texts, image_paths)):
        caption = " ".join(text.lower().split())
        keys = [("image", hashlib.sha1(Path(image).read_bytes()).hexdigest())]
        if len(caption) >= MIN_GROUP_CAPTION_CHARS:
            keys.append(("caption", caption))
        for key in keys:
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    roots = [find(i) for i in range(len(texts))]
    _, groups = np.unique(roots, return_inverse=True)
    return groups.astype(np.int64)


def stratified_split(
    labels: Sequence[int],
    groups: Sequence[int] | None = None,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Row indices per split (sorted). Groups are assigned whole, stratified by their first member's
    label: within each label the shuffled groups fill train, then val, then test by ``fractions``."""
    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    unique, first = np.unique(groups, return_index=True)
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    for label in np.unique(labels[first]):
        members = unique[labels[first] == label]
        members = members[rng.permutation(len(members))]
        sizes = np.array([len(members) * f for f in fractions])
        bounds = np.round(np.cumsum(sizes)).astype(int)
        for name, chunk in zip(SPLITS, np.split(members, bounds[:-1])):
            out[name].extend(int(g) for g in chunk)
    return {name: np.sort(np.flatnonzero(np.isin(groups, chosen))) for name, chosen in out.items()}


def stratified_cap(indices: np.ndarray, labels: Sequence[int], limit: int | None, seed: int = 0) -> np.ndarray:
    """At most ``limit`` of ``indices``, keeping each label's share (sorted); all when no limit."""
    indices = np.asarray(indices)
    if limit is None or len(indices) <= limit:
        return np.sort(indices)
    labels = np.asarray(labels)[indices]
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for label in np.unique(labels):
        rows = indices[labels == label]
        take = max(1, round(len(rows) * limit / len(indices)))
        keep.append(rng.choice(rows, size=min(take, len(rows)), replace=False))
    return np.sort(np.concatenate(keep))
