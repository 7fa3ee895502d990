"""The staged schedule (pretrainCLIP -> pretrainuni -> Memotion) as a config, run end to end."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from memotion_cli.main import main
from training.schedule import Schedule, load_schedule, override_training, schedule_names


def test_shipped_schedules_validate():
    assert {"paper", "tiny"} <= set(schedule_names())
    paper = load_schedule("paper")
    assert (paper.clip, paper.pretrained) == ("ViT-B-32", "openai")
    assert paper.pretrain_clip.training.loss == "clip"
    # pretrainuni = Hateful Memes train + dev and MAMI train (paper Sec. 4)
    assert [(d.format, d.path) for d in paper.pretrain_uni.train] == [
        ("hateful_memes", "hateful_memes/train.jsonl"),
        ("hateful_memes", "hateful_memes/dev.jsonl"),
        ("mami", "mami/TRAINING/training.csv"),
    ]
    assert paper.pretrain_uni.models == ["clip_text", "clip_image"]
    assert paper.memotion.training.lr in (2e-5, 1e-5, 2e-6)
    tiny = load_schedule("tiny")
    assert tiny.clip == "memotion-tiny" and tiny.pretrained is None


def test_schedule_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no schedule 'nope'"):
        load_schedule("nope")
    base = {"name": "x", "memotion": {"data": "."}}
    Schedule.model_validate(base)
    with pytest.raises(ValidationError, match="epoch"):  # typo in a stage's training config
        Schedule.model_validate(
            {**base, "pretrain_uni": {"train": [{"format": "mami", "path": "m.csv"}], "training": {"epoch": 3}}}
        )
    with pytest.raises(ValidationError, match="unknown contrastive loss"):
        Schedule.model_validate(
            {**base, "pretrain_clip": {"train": [{"format": "mami", "path": "m.csv"}], "training": {"loss": "triplet"}}}
        )
    with pytest.raises(ValidationError, match="format"):
        Schedule.model_validate({**base, "pretrain_clip": {"train": [{"format": "csv", "path": "m.csv"}]}})
    with pytest.raises(ValidationError, match="at least 1"):
        Schedule.model_validate({**base, "pretrain_clip": {"train": []}})


def test_override_training_touches_every_stage():
    tiny = override_training(load_schedule("tiny"), max_steps=2, epochs=1)
    for stage in (tiny.pretrain_clip, tiny.pretrain_uni, tiny.memotion):
        assert (stage.training.max_steps, stage.training.epochs) == (2, 1)
    assert tiny.pretrain_clip.training.lr == load_schedule("tiny").pretrain_clip.training.lr


@pytest.mark.slow
def test_tiny_schedule_runs_every_stage_from_the_one_before(pretraining_data, tmp_path, capsys):
    out = tmp_path / "staged"
    assert (
        main(
            [
                "train",
                "--schedule",
                "tiny",
                "--data",
                str(pretraining_data),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--max-steps",
                "2",
            ]
        )
        == 0
    )
    clip_pre = out / "pretrain_clip" / "clip_pre.pt"
    assert clip_pre.is_file() and (out / "pretrain_clip" / "loss_curve.png").is_file()
    for kind in ("clip_text", "clip_image"):
        assert (out / "pretrain_uni" / kind / "checkpoint.pt").is_file()
    summary = json.loads((out / "memotion" / "summary.json").read_text())
    # the Memotion stage was built on CLIP_pre and initialised from the pretrainuni models
    assert summary["recipe"]["pretrained"] == str(clip_pre)
    assert summary["recipe"]["init_from"] == str(out / "pretrain_uni")
    assert set(summary["models"]) == {"clip_text", "clip_image", "clip_multi"}
    report = json.loads((out / "schedule.json").read_text())
    assert list(report["stages"]) == ["pretrain_clip", "pretrain_uni", "memotion"]
    assert report["stages"]["pretrain_clip"]["checkpoint"] == str(clip_pre)
    history = json.loads((out / "pretrain_uni" / "clip_text" / "history.json").read_text())
    assert len(history["steps"]) == 2
    assert "export with --run" in capsys.readouterr().out
