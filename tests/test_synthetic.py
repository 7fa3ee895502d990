"""The synthetic meme generator: determinism, label ranges and that labels need both modalities."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from memotion.data_format import load_split
from memotion.labels import ALL_TASKS, TASK_A, TASK_B_NAMES
from training.data.synthetic import SyntheticConfig, make_synthetic_dataset, render_meme


def _latents(root: Path) -> dict[str, list[dict]]:
    by_split: dict[str, list[dict]] = defaultdict(list)
    for line in (root / "latents.jsonl").read_text().splitlines():
        meme = json.loads(line)
        by_split[meme["split"]].append(meme)
    return by_split


def _lookup_accuracy(train: list[dict], test: list[dict], task: str, keys: dict[str, tuple]) -> float:
    """Held-out accuracy of the best lookup table from the chosen latents to ``task``'s label.

    ``keys`` maps a latent group ("text", "image") to the names used from it."""

    def key(meme: dict) -> tuple:
        return tuple(meme[group][name] for group, names in keys.items() for name in names)

    counts: dict[tuple, Counter] = defaultdict(Counter)
    for meme in train:
        counts[key(meme)][meme["labels"][task]] += 1
    fallback = Counter(m["labels"][task] for m in train).most_common(1)[0][0]
    table = {k: c.most_common(1)[0][0] for k, c in counts.items()}
    return float(np.mean([table.get(key(m), fallback) == m["labels"][task] for m in test]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, SyntheticConfig(n_train=300, n_val=150, seed=1))
    return root


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    config = SyntheticConfig(n_train=10, n_val=5, seed=3)
    first, second = (make_synthetic_dataset(tmp_path / name, config) for name in ("a", "b"))
    for split in ("train", "val"):
        assert first[split].read_bytes() == second[split].read_bytes()
    samples = (
        "latents.jsonl",
        "image/train/syn_train_000001.jpg",
        "image/train/syn_train_000010.jpg",
        "image/val/syn_val_000005.jpg",
    )
    for name in samples:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = make_synthetic_dataset(tmp_path / "c", SyntheticConfig(n_train=10, n_val=5, seed=4))
    assert other["train"].read_bytes() != first["train"].read_bytes()


def test_files_ids_and_label_ranges(dataset: Path) -> None:
    train, val = load_split(dataset / "train.csv"), load_split(dataset / "val.csv")
    assert [r.id for r in train[:2]] == ["syn_train_000001", "syn_train_000002"]
    assert len(train) == 300 and len(val) == 150
    with Image.open(val[0].image_path) as image:
        assert image.format == "JPEG" and image.size == (256, 256)
    latents = _latents(dataset)
    for records, memes in ((train, latents["train"]), (val, latents["val"])):
        for record, meme in zip(records, memes, strict=True):
            assert record.labels() == meme["labels"]
            assert record.text == " ".join(meme["caption"].split()) != ""
            for spec in ALL_TASKS:
                assert 0 <= record.labels()[spec.name] < spec.num_classes


def test_class_coverage_and_task_b(dataset: Path) -> None:
    train = load_split(dataset / "train.csv")
    assert set(Counter(r.sentiment for r in train)) == set(range(TASK_A.num_classes))
    for record in train:
        intensities = record.labels()
        assert record.task_b == {b: intensities[c] > 0 for c, b in TASK_B_NAMES.items()}
    for emotion in TASK_B_NAMES.values():  # every Task B emotion both present and absent
        assert {r.task_b[emotion] for r in train} == {True, False}
    motivational = np.mean([r.motivational for r in train])
    assert 0.05 < motivational < 0.25
    hinglish = np.mean([m["hinglish"] for m in _latents(dataset)["train"]])
    assert 0.2 < hinglish < 0.4


@pytest.mark.parametrize(
    ("task", "text_keys", "image_keys"),
    [
        ("sentiment", ("polarity",), ("mood",)),
        ("sarcasm", ("polarity", "twist"), ("mood",)),
        ("offensive", ("insult",), ("angry",)),
    ],
)
def test_labels_need_both_modalities(dataset: Path, task: str, text_keys: tuple, image_keys: tuple) -> None:
    latents = _latents(dataset)
    train, val = latents["train"], latents["val"]
    text = _lookup_accuracy(train, val, task, {"text": text_keys})
    image = _lookup_accuracy(train, val, task, {"image": image_keys})
    both = _lookup_accuracy(train, val, task, {"text": text_keys, "image": image_keys})
    assert both > 0.85
    assert both - max(text, image) > 0.1, (text, image, both)


@pytest.mark.parametrize("dominant", ["text", "image"])
def test_dominant_modality_carries_the_labels(tmp_path: Path, dominant: str) -> None:
    config = SyntheticConfig(n_train=200, n_val=100, seed=5, image_size=96, dominant=dominant)
    make_synthetic_dataset(tmp_path, config)
    latents = _latents(tmp_path)
    train, val = latents["train"], latents["val"]
    other = "image" if dominant == "text" else "text"
    strong = _lookup_accuracy(train, val, "sentiment", {dominant: ("polarity", "mood")})
    weak = _lookup_accuracy(train, val, "sentiment", {other: ("mood",) if other == "image" else ("polarity",)})
    assert strong > 0.85 and weak < 0.5, (strong, weak)


def test_render_meme_mood_and_caption_are_visible() -> None:
    def render(mood: int, caption: str = "") -> np.ndarray:
        image = render_meme(caption, mood, np.random.default_rng(0), size=256)
        assert image.size == (256, 256) and image.mode == "RGB"
        return np.asarray(image.resize((64, 64)), dtype=float)

    sunny, office, storm = (render(m).mean() for m in (1, 0, -1))
    assert sunny > office > storm + 40
    plain, captioned = render(0), render(0, "TOP TEXT\nBOTTOM TEXT")
    top_band = slice(0, 10)  # the top caption sits in the first ~40 px of 256
    assert np.abs(captioned[top_band] - plain[top_band]).mean() > 10
    with_face = np.asarray(render_meme("", 0, np.random.default_rng(0), face=True), dtype=float)
    yellow = (with_face[..., 0] > 200) & (with_face[..., 1] > 170) & (with_face[..., 2] < 120)
    assert yellow.mean() > 0.02  # the funny face is a big yellow disc
