"""Pre-training data formats: Hateful Memes JSONL and MAMI TSV loaders, writers, format detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from training.data.hateful_memes import load_hateful_memes, write_hateful_memes
from training.data.mami import load_mami, write_mami
from training.data.pairs import (
    DataRef,
    PairRecord,
    detect_format,
    load_all_pairs,
    load_pairs,
    memotion_pairs,
    parse_data_ref,
    require_labels,
)


@pytest.fixture()
def images(tmp_path) -> list[Path]:
    paths = []
    for i in range(3):
        path = tmp_path / "img" / f"{i:05d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (32, 32), (i * 60, 0, 0)).save(path)
        paths.append(path)
    return paths


def test_hateful_memes_reads_the_official_layout(tmp_path, images):
    lines = [
        {"id": 42953, "img": "img/00000.png", "label": 0, "text": "its their character not their color"},
        {"id": 23058, "img": "img/00001.png", "label": 1, "text": "don't be afraid to love again"},
        {"id": 13894, "img": "img/00002.png", "text": "putting bows on your pet"},  # test file: no label
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    records = load_hateful_memes(path)
    assert [r.id for r in records] == ["42953", "23058", "13894"]
    assert [r.label for r in records] == [0, 1, None]
    assert records[1].image_path == images[1] and records[1].text == "don't be afraid to love again"
    assert detect_format(path) == "hateful_memes"


def test_hateful_memes_errors(tmp_path, images):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 1, "img": "img/00000.png", "label": 3, "text": "x"}) + "\n")
    with pytest.raises(ValueError, match="line 1: label must be 0 or 1"):
        load_hateful_memes(bad)
    bad.write_text(json.dumps({"id": 1, "img": "img/missing.png", "label": 1, "text": "x"}) + "\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_hateful_memes(bad)
    bad.write_text('{"id": 1, "img": "img/00000.png"}\n')
    with pytest.raises(ValueError, match="missing \\['text'\\]"):
        load_hateful_memes(bad)
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="not JSON"):
        load_hateful_memes(bad)


def test_mami_reads_the_official_layout(tmp_path, images):
    path = tmp_path / "training.csv"
    path.write_text(
        "file_name\tmisogynous\tshaming\tstereotype\tobjectification\tviolence\tText Transcription\n"
        "img/00000.png\t0\t0\t0\t0\t0\tMilk Milk.zip\n"
        'img/00001.png\t1\t0\t1\t0\t0\t"ROSES ARE RED, VIOLETS ARE BLUE"\n'
    )
    records = load_mami(path)
    assert [(r.id, r.label) for r in records] == [("00000", 0), ("00001", 1)]
    assert records[1].text == '"ROSES ARE RED, VIOLETS ARE BLUE"'  # quotes are text in MAMI
    assert detect_format(path) == "mami"
    test_file = tmp_path / "Test.csv"  # the test release has no label columns
    test_file.write_text("file_name\tText Transcription\nimg/00002.png\tsome text\n")
    assert [(r.text, r.label) for r in load_mami(test_file)] == [("some text", None)]


def test_mami_errors(tmp_path, images):
    path = tmp_path / "training.csv"
    path.write_text("file_name\tmisogynous\n img/00000.png\t0\n")
    with pytest.raises(ValueError, match="missing column 'text transcription'"):
        load_mami(path)
    path.write_text("file_name\tmisogynous\tText Transcription\nimg/00000.png\tyes\tx\n")
    with pytest.raises(ValueError, match="row 1: misogynous must be 0 or 1"):
        load_mami(path)


def test_writers_round_trip(tmp_path, images):
    records = [
        PairRecord("00000", images[0], "a cat\twith tabs", 1, "x"),
        PairRecord("00001", images[1], "a dog", 0, "x"),
        PairRecord("00002", images[2], "unlabelled", None, "x"),
    ]
    hm = load_hateful_memes(write_hateful_memes(tmp_path / "hm" / "dev.jsonl", records))
    mami = load_mami(write_mami(tmp_path / "mami" / "training.csv", records))
    for loaded in (hm, mami):
        assert [r.image_path.resolve() for r in loaded] == [p.resolve() for p in images]
        assert [r.label for r in loaded] == [1, 0, None]
    assert hm[0].text == "a cat\twith tabs"
    assert mami[0].text == "a cat with tabs"  # MAMI fields cannot hold tabs


def test_data_refs_and_memotion_pairs(pretraining_data):
    root = pretraining_data
    assert parse_data_ref(str(root)) == DataRef("memotion", root)
    assert parse_data_ref(str(root / "train.csv")).format == "memotion"
    assert parse_data_ref(str(root / "mami" / "training.csv")).format == "mami"
    assert parse_data_ref(f"hateful_memes:{root / 'hateful_memes' / 'dev.jsonl'}").format == "hateful_memes"
    with pytest.raises(FileNotFoundError):
        parse_data_ref(str(root / "nope.jsonl"))
    assert DataRef("mami", Path("mami/training.csv")).resolved(root).path == root / "mami" / "training.csv"

    memes = memotion_pairs(root / "train.csv")
    hm = load_pairs(DataRef("hateful_memes", root / "hateful_memes" / "train.jsonl"))
    mami = load_pairs(DataRef("mami", root / "mami" / "training.csv"))
    # write_pretraining_formats: first half of train -> Hateful Memes, second half -> MAMI
    assert [r.id for r in hm + mami] == [r.id for r in memes]
    assert [r.label for r in hm + mami] == [r.label for r in memes]
    assert 0 < sum(r.label for r in memes) < len(memes)  # both classes present
    both = load_all_pairs(
        [
            DataRef("hateful_memes", root / "hateful_memes" / "train.jsonl"),
            DataRef("mami", root / "mami" / "training.csv"),
        ]
    )
    assert len(both) == len(memes)
    require_labels(both, "train")
    with pytest.raises(ValueError, match="1 of 2 memes have no binary label"):
        require_labels([memes[0], PairRecord("u", memes[0].image_path, "t", None, "x")], "train")
