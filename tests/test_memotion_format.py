"""The Memotion-format loader and writer: formats, column aliases, label folding, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memotion.data_format import MemeRecord, load_split, write_split

LABELS = ("funny", "general", "not_offensive", "motivational", "positive")
HEADER = "id\timage_url\thumour\tsarcasm\toffensive\tmotivational\toverall_sentiment\tocr_text"


def _image(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 not really a jpeg")
    return path


def _tsv(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    return path


def test_round_trip(tmp_path: Path) -> None:
    records = [
        MemeRecord("a1", _image(tmp_path, "image/train/a1.jpg"), 'HI, "YOU"\tTAB', 0, 3, 2, 1, 1),
        MemeRecord("a2", _image(tmp_path, "image/train/a2.png"), "", 2, 0, 0, 3, 0),
    ]
    path = write_split(tmp_path / "train.csv", records)
    assert path.read_text().splitlines()[0] == HEADER
    assert load_split(path) == records


def test_real_format_tab_with_url_column_falls_back_to_image_split_id(tmp_path: Path) -> None:
    image = _image(tmp_path, "image/val/17.jpg")
    url = "https://i.imgflip.com/abc.jpg"
    path = _tsv(tmp_path / "val.csv", f"17\t{url}\t{chr(9).join(LABELS)}\tBHAI KYA BAAT HAI")
    [record] = load_split(path)
    assert record == MemeRecord("17", image, "BHAI KYA BAAT HAI", 2, 1, 1, 0, 1)
    assert record.labels() == {"sentiment": 2, "humour": 1, "sarcasm": 1, "offensive": 0, "motivational": 1}
    assert record.task_b == {"humorous": True, "sarcastic": True, "offensive": False, "motivational": True}


def test_comma_csv_aliases_and_label_folding(tmp_path: Path) -> None:
    image = _image(tmp_path, "pics/x.png")
    path = tmp_path / "labels.csv"
    path.write_text(
        "Image_Name,Text_Corrected,Humor,Sarcastic,Offensive,Motivational,Overall_Sentiment\n"
        'pics/x.png,"hi, there",hilarious,very_twisted,hateful_offensive,not_motivational,'
        "very_negative\n"
        "pics/x.png,,NF,NS,NO,NM,very_positive\n",
        encoding="utf-8",
    )
    first, second = load_split(path)
    assert first == MemeRecord("x", image, "hi, there", 0, 3, 3, 3, 0)
    assert second.text == "" and second.sentiment == 2 and second.humour == 0


def test_jsonl_and_json_with_image_root(tmp_path: Path) -> None:
    root = tmp_path / "images"
    image = _image(root, "m/1.jpg")
    row = {
        "id": 1,
        "image_path": "m/1.jpg",
        "text": "yo",
        "sentiment": "neutral",
        "humour": 2,
        "sarcasm": "twisted_meaning",
        "offensive": "slight",
        "motivational": 0,
    }
    expected = [MemeRecord("1", image, "yo", 1, 2, 2, 1, 0)]
    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text("\n" + json.dumps(row) + "\n\n", encoding="utf-8")
    data = tmp_path / "test.json"
    data.write_text(json.dumps([row]), encoding="utf-8")
    assert load_split(jsonl, image_root=root) == expected
    assert load_split(data, image_root=root) == expected


def test_file_order_is_kept(tmp_path: Path) -> None:
    ids = ["9", "3", "7", "1"]
    for i in ids:
        _image(tmp_path, f"image/train/{i}.jpg")
    path = _tsv(tmp_path / "train.tsv", *(f"{i}\t\t{chr(9).join(LABELS)}\tt" for i in ids))
    assert [r.id for r in load_split(path)] == ids


def test_bad_label_names_file_row_and_value(tmp_path: Path) -> None:
    _image(tmp_path, "image/train/1.jpg")
    _image(tmp_path, "image/train/2.jpg")
    good = f"1\t\t{chr(9).join(LABELS)}\tok"
    bad = "2\t\tfunny\tgeneral\tnot_offensive\tmotivational\tecstatic\tbad"
    path = _tsv(tmp_path / "train.csv", good, bad)
    with pytest.raises(ValueError, match=r"train\.csv: row 2: bad sentiment label 'ecstatic'"):
        load_split(path)


def test_missing_column_names_column_file_and_columns_found(tmp_path: Path) -> None:
    path = _tsv(tmp_path / "train.csv", "1\tx\tfunny", header="id\timage_url\thumour")
    with pytest.raises(ValueError) as error:
        load_split(path)
    message = str(error.value)
    assert "'text'" in message and "train.csv" in message and "'image_url'" in message


def test_missing_image_names_the_file(tmp_path: Path) -> None:
    path = _tsv(tmp_path / "train.csv", f"42\thttp://x/y.jpg\t{chr(9).join(LABELS)}\tt")
    with pytest.raises(FileNotFoundError, match=r"image/train/42\.jpg"):
        load_split(path)
