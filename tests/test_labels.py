import pytest

from memotion.labels import ALL_TASKS, TASK_A, TASK_C, parse_label, task_b_from_task_c


def test_task_shapes_match_the_paper():
    assert TASK_A.num_classes == 3
    assert [t.num_classes for t in TASK_C] == [4, 4, 4, 2]
    assert [t.codes for t in TASK_C] == [
        ("NF", "F", "VF", "H"),
        ("NS", "LS", "VS", "ES"),
        ("NO", "S", "VO", "HO"),
        ("NM", "M"),
    ]
    assert len(ALL_TASKS) == 5


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("very_negative", 0),
        ("negative", 0),
        ("neutral", 1),
        ("very_positive", 2),
        ("positive", 2),
        ("Very Positive", 2),
        ("-", 0),
        (2, 2),
        ("1", 1),
    ],
)
def test_sentiment_strings_fold_to_three_classes(raw, expected):
    assert parse_label("sentiment", raw) == expected


def test_intensity_strings_and_codes():
    assert parse_label("humour", "hilarious") == 3
    assert parse_label("humour", "VF") == 2
    assert parse_label("sarcasm", "twisted_meaning") == 2
    assert parse_label("offensive", "hateful_offensive") == 3
    assert parse_label("motivational", "motivational") == 1


@pytest.mark.parametrize("task,raw", [("humour", "very_hilarious"), ("sentiment", 3), ("motivational", "")])
def test_unknown_labels_are_rejected(task, raw):
    with pytest.raises(ValueError, match=task):
        parse_label(task, raw)


def test_task_b_derived_from_task_c():
    # Paper Sec. 4: humorous iff F, VF or H; likewise for the other emotions.
    derived = task_b_from_task_c({"humour": 1, "sarcasm": 0, "offensive": 3, "motivational": 0})
    assert derived == {"humorous": True, "sarcastic": False, "offensive": True, "motivational": False}
    assert task_b_from_task_c({"humour": 0, "sarcasm": 0, "offensive": 0, "motivational": 1})["motivational"]
