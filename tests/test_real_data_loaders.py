"""Loaders that take real meme sets as they are (issue 15): odd image files, duplicates, empty and
long captions, CM-Off-Meme's binary columns; every meme that cannot be used is counted by reason.
Also the split, re-sampling, scoring and baseline helpers of the real-data experiment, and (skipped
with a message when absent) a load of the real sets from the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from memotion.data_format import load_split_checked
from memotion.manifest import Preprocessing
from memotion.preprocess import image_to_array
from training.baselines import majority_probabilities, tfidf_lr_probabilities
from training.data.cm_off_meme import load_cm_off_meme, parse_binary
from training.data.splits import duplicate_groups, stratified_cap, stratified_split
from training.metrics import macro_f1
from training.real_scores import score_predictions
from training.sampling import balanced_indices

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEMOTION_SHARED_DATA", REPO.parent / "shared" / "data"))
HEADER = "id,image_path,text,sentiment,humour,sarcasm,offensive,motivational"
LABELS = "positive,funny,general,not_offensive,motivational"


def _save(path: Path, mode: str, fmt: str, colour: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (24, 16)
    if mode == "P":
        image = Image.new("P", size, colour)
        image.putpalette([colour, 0, 255 - colour] * 256)
        image.info["transparency"] = 0
    elif mode == "CMYK":
        image = Image.new("CMYK", size, (colour, 40, 80, 0))
    else:
        image = Image.new(mode, size, (colour, 30, 60, 128)[: len(mode)] if len(mode) > 1 else colour)
    image.save(path, format=fmt)
    return path


def _odd_set(root: Path) -> Path:
    """A Memotion-format CSV exercising every odd case once."""
    images = root / "images"
    _save(images / "png_as_jpg.jpg", "RGB", "PNG", 10)
    _save(images / "palette.png", "P", "PNG", 20)
    _save(images / "alpha.png", "RGBA", "PNG", 30)
    _save(images / "cmyk.jpg", "CMYK", "JPEG", 40)
    _save(images / "grey.webp", "RGB", "WEBP", 50)
    _save(images / "dup.jpg", "RGB", "JPEG", 60)
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not an image")
    (images / "empty.jpg").write_bytes(b"")
    long_caption = "word " * 200
    rows = [
        f"a,images/png_as_jpg.jpg,hello there,{LABELS}",
        f"b,images/palette.png,,{LABELS}",  # empty caption: kept
        f'c,images/alpha.png,"{long_caption}",{LABELS}',  # long caption: kept
        f'd,images/cmyk.jpg,"line one\nline two",{LABELS}',  # a caption with a line break
        f"e,images/grey.webp,grey,{LABELS}",
        f"f,images/dup.jpg,same meme,{LABELS}",
        f"g,images/dup.jpg,same meme,{LABELS.replace('positive', 'negative')}",  # duplicate meme
        f"a,images/dup.jpg,repeated id,{LABELS}",  # duplicate id
        f"h,images/broken.jpg,broken,{LABELS}",
        f"i,images/empty.jpg,empty file,{LABELS}",
        f"j,images/missing.jpg,missing,{LABELS}",
        "k,images/dup.jpg,no sentiment,,funny,general,not_offensive,motivational",
        f"l,images/dup.jpg,bad humour,{LABELS.replace('funny', 'hysterical')}",
    ]
    path = root / "labels.csv"
    path.write_text("\n".join((HEADER, *rows)) + "\n", encoding="utf-8")
    return path


def test_lenient_load_keeps_odd_images_and_counts_every_skipped_meme(tmp_path: Path) -> None:
    records, report = load_split_checked(_odd_set(tmp_path))
    assert [r.id for r in records] == ["a", "b", "c", "d", "e", "f"]
    assert report.rows == 13 and report.loaded == 6 and report.skipped_count == 7
    skipped = {reason: len(rows) for reason, rows in report.skipped.items()}
    assert skipped["duplicate id"] == 1
    assert skipped["duplicate meme (same image and caption as an earlier row)"] == 1
    assert skipped["no image file"] == 1
    assert skipped["empty image file"] == 1
    assert sum(n for reason, n in skipped.items() if reason.startswith("image cannot be decoded")) == 1
    assert skipped["missing sentiment label"] == 1 and skipped["unknown humour label"] == 1
    assert report.notes["PNG bytes behind a .jpg extension"] == 1
    assert set(report.notes) >= {
        "image mode P (converted to RGB)",
        "image mode RGBA (converted to RGB)",
        "image mode CMYK (converted to RGB)",
        "empty caption (kept: image-only evidence)",
        "caption over 300 characters (kept; the tokenizer truncates)",
    }
    assert records[3].text == "line one line two"
    spec = Preprocessing(image_size=16)
    for record in records:  # every kept image becomes a normalised RGB array
        with Image.open(record.image_path) as image:
            assert image_to_array(image, spec).shape == (3, 16, 16)
    assert "skipped 1: duplicate id [row 8 (a)]" in "\n".join(report.lines())
    assert report.to_json()["skipped"]["no image file"]["rows"] == ["row 11 (j)"]


def _cm_set(root: Path) -> Path:
    for i in range(5):
        _save(root / "images" / f"m{i}.jpg", "RGB", "JPEG", 40 * i)
    header = f"{HEADER},sarcasm_raw,offensive_level1,offensive_level2"
    rows = [
        "m0,images/m0.jpg,Kya baat hai yaar,positive,,,,,sarcasm,off,implicit",
        "m1,images/m1.jpg,plain english,negative,,,,,non-sarcastic,non-off,non-off",
        "m2,images/m2.jpg,no sarcasm label,neutral,,,,,,off,explicit",
        "m3,images/m3.jpg,odd offence label,neutral,,,,,sarcasm,maybe,non-off",
        "m4,images/m4.jpg,very negative,very_negative,,,,,sarcasm,off,explicit",
    ]
    path = root / "labels.csv"
    path.write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    return path


def test_cm_off_meme_binary_labels_are_kept_binary_and_unusable_rows_counted(tmp_path: Path) -> None:
    records, report = load_cm_off_meme(_cm_set(tmp_path))
    assert [r.id for r in records] == ["m0", "m1", "m4"]
    assert records[0].binary == {"sarcastic": 1, "offensive": 1} and records[0].offensive_level2 == "implicit"
    assert records[1].binary == {"sarcastic": 0, "offensive": 0} and records[1].sentiment == 0
    assert records[2].sentiment == 0  # very_negative folds into negative
    assert {k: len(v) for k, v in report.skipped.items()} == {
        "missing sarcastic label": 1,
        "unknown offensive label": 1,
    }
    training = records[0].as_training_record()
    assert (training.sarcasm, training.offensive, training.humour, training.motivational) == (1, 1, 0, 0)
    with pytest.raises(ValueError, match="unknown binary label"):
        parse_binary("sarcastic", "very")


def test_cm_off_meme_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("id,image_path,text,sentiment\nx,images/x.jpg,hi,neutral\n")
    with pytest.raises(ValueError, match="sarcastic"):
        load_cm_off_meme(path)


def test_split_is_stratified_disjoint_seeded_and_keeps_duplicates_together(tmp_path: Path) -> None:
    labels = np.array([0] * 20 + [1] * 40 + [2] * 140)
    groups = np.arange(200)
    groups[[5, 50, 150]] = 5  # one group across three labels: its first member's label decides
    split = stratified_split(labels, groups, seed=3)
    rows = np.concatenate(list(split.values()))
    assert sorted(rows.tolist()) == list(range(200))
    assert len({name for name, idx in split.items() if np.isin([5, 50, 150], idx).any()}) == 1
    for label, count in ((0, 20), (2, 140)):
        assert abs((labels[split["train"]] == label).sum() - 0.7 * count) <= 2
    again = stratified_split(labels, groups, seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    capped = stratified_cap(split["train"], labels, 70, seed=0)
    assert len(capped) == pytest.approx(70, abs=2) and set(capped) <= set(split["train"])
    assert (labels[capped] == 0).sum() == pytest.approx(7, abs=1)


def test_duplicate_groups_join_same_image_or_same_long_caption(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.jpg", "RGB", "JPEG", 1)
    b = _save(tmp_path / "b.jpg", "RGB", "JPEG", 2)
    c = tmp_path / "c.jpg"
    c.write_bytes(a.read_bytes())
    texts = ["one caption that is long enough", "ONE caption  that is long enough", "x", "x"]
    groups = duplicate_groups(texts, [a, b, c, b])
    assert groups[0] == groups[1] == groups[2] == groups[3]  # caption joins 0-1, image 0-2 and 1-3
    assert len(set(duplicate_groups(["ab", "ab"], [a, b]).tolist())) == 2  # short captions do not join


def test_balanced_indices_over_sample_the_rare_classes() -> None:
    labels = np.array([0] * 10 + [1] * 90)
    assert sorted(balanced_indices(labels, power=0.0).tolist()) == list(range(100))
    uniform = balanced_indices(labels, power=1.0, seed=1)
    assert np.bincount(labels[uniform]).tolist() == [90, 90] and set(uniform.tolist()) == set(range(100))
    assert np.bincount(labels[balanced_indices(labels, 0.5)]).tolist() == [30, 90]


def test_macro_f1_matches_sklearn_and_scores_have_every_task() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 4, 300), rng.integers(0, 3, 300)
    assert macro_f1(true, pred, 4) == pytest.approx(f1_score(true, pred, average="macro"))
    heads = {"sentiment": 3, "humour": 4, "sarcasm": 4, "offensive": 4, "motivational": 2}
    y = {h: rng.integers(0, n, 50) for h, n in heads.items()}
    perfect = score_predictions("memotion", y, y)
    assert perfect["macro"]["task_a"] == perfect["weighted"]["task_c"] == perfect["macro"]["task_b"] == 1.0
    binary = score_predictions("binary", y, {**y, "sarcasm": np.zeros(50, int)})
    assert set(binary["macro"]) == {"task_a", "sarcastic", "offensive"} and binary["macro"]["sarcastic"] < 1.0


def test_baselines_majority_and_tfidf_learn_an_obvious_word() -> None:
    rng = np.random.default_rng(0)
    words = np.array(["happy day", "sad news", "plain text"])

    def split(n: int) -> tuple[list[str], dict[str, np.ndarray]]:
        y = rng.integers(0, 3, n)
        return [f"{words[label]} filler {i}" for i, label in enumerate(y)], {"sentiment": y}

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = split(120), split(40), split(40)
    out, chosen = tfidf_lr_probabilities(
        {"train": train_x, "val": val_x, "test": test_x}, {"train": train_y, "val": val_y, "test": test_y}
    )
    assert out["test"]["sentiment"].shape == (40, 3)
    assert macro_f1(test_y["sentiment"], out["test"]["sentiment"].argmax(1), 3) == 1.0
    assert chosen["sentiment"]["val_macro_f1"] == 1.0
    majority = majority_probabilities({"sentiment": np.array([2, 2, 1])}, 4)["sentiment"]
    assert majority.argmax(1).tolist() == [2, 2, 2, 2]


@pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real meme data not found at {SHARED_DATA} (MEMOTION_SHARED_DATA)"
)
def test_the_real_sets_load_as_they_are() -> None:
    memotion, memotion_report = load_split_checked(SHARED_DATA / "memotion1-train-128px" / "labels.csv")
    assert memotion_report.rows == 6992 and len(memotion) == memotion_report.loaded
    assert len(memotion) + memotion_report.skipped_count == 6992 and len(memotion) > 6900
    cm, cm_report = load_cm_off_meme(SHARED_DATA / "cm-off-meme-sample" / "labels.csv")
    assert cm_report.rows == 1046 and len(cm) + cm_report.skipped_count == 1046 and len(cm) > 1000
    assert {r.binary["sarcastic"] for r in cm} == {0, 1} and {r.sentiment for r in cm} == {0, 1, 2}
    assert any("PNG bytes" in note for note in cm_report.notes)
