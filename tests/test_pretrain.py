"""The pre-training stages on the tiny CLIP: contrastive CLIP_pre -> binary uni-modal -> Memotion,
each really starting from the one before (weights compared tensor by tensor)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from memotion_cli.main import main
from training.backbone import TINY_CLIP, create_clip
from training.data.pairs import DataRef, load_all_pairs
from training.pretrain import (
    CLIP_PRE_FILE,
    BinaryConfig,
    ContrastiveConfig,
    binary_unimodal,
    pair_io,
    pair_loader,
    pretrain_clip,
    run_clip_pretraining,
    run_unimodal_pretraining,
)
from training.recipe import tiny_recipe, train_recipe
from training.warm_start import head_prefixes, load_body, warm_start

pytestmark = pytest.mark.slow
MODEL = tiny_recipe().model


def _refs(root: Path) -> tuple[list[DataRef], list[DataRef]]:
    train = [
        DataRef("hateful_memes", root / "hateful_memes" / "train.jsonl"),
        DataRef("mami", root / "mami" / "training.csv"),
    ]
    return train, [DataRef("hateful_memes", root / "hateful_memes" / "dev.jsonl")]


def _tower(state: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """The text and image tower weights of a CLIP state dict, named as in the classifiers'
    encoders (``encoder.*`` of CLIP-text, ``encoder.visual.*`` of CLIP-image)."""
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _encoder_state(model_state: dict, kind: str) -> dict[str, torch.Tensor]:
    """CLIP-text/-image encoder weights renamed to the CLIP state dict's keys."""
    if kind == "clip_image":
        return {k.removeprefix("encoder."): v for k, v in model_state.items() if k.startswith("encoder.visual.")}
    return {
        k.removeprefix("encoder."): v
        for k, v in model_state.items()
        if k.startswith("encoder.") and not k.startswith("encoder.attn_mask")
    }


@pytest.fixture(scope="module")
def stages(tmp_path_factory, pretraining_data) -> dict[str, Path]:
    """CLIP_pre (3 steps) and the binary uni-modal checkpoints on it (2 steps each)."""
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("stages")
    train, val = _refs(pretraining_data)
    clip_result = run_clip_pretraining(
        train,
        val,
        out / "pretrain_clip",
        TINY_CLIP,
        None,
        ContrastiveConfig(epochs=1, batch_size=16, lr=1e-3, max_steps=3),
        progress=False,
        log=lambda _: None,
    )
    run_unimodal_pretraining(
        train,
        val,
        out / "pretrain_uni",
        TINY_CLIP,
        str(clip_result.checkpoint),
        MODEL,
        BinaryConfig(epochs=1, batch_size=16, lr=1e-3, max_steps=2),
        progress=False,
        log=lambda _: None,
    )
    return {"clip_pre": clip_result.checkpoint, "uni": out / "pretrain_uni", "root": pretraining_data}


def test_clip_pre_checkpoint_is_an_open_clip_checkpoint(stages):
    payload = torch.load(stages["clip_pre"], weights_only=True)  # what open_clip itself does
    assert payload["stage"] == "pretrain_clip" and payload["loss"] == "clip"
    loaded = create_clip(TINY_CLIP, str(stages["clip_pre"])).state_dict()
    assert _max_diff(loaded, payload["state_dict"]) == 0.0
    fresh = create_clip(TINY_CLIP, None).state_dict()
    assert _max_diff(_tower(loaded, "visual."), _tower(fresh, "visual.")) > 0.01  # it trained
    history = json.loads((stages["clip_pre"].parent / "history.json").read_text())
    assert len(history["steps"]) == 3 and "text_to_image_top1" in history["epochs"][0]
    assert (stages["clip_pre"].parent / "loss_curve.png").stat().st_size > 5000


@pytest.mark.parametrize("kind", ["clip_text", "clip_image"])
def test_unimodal_pretraining_starts_from_clip_pre(stages, kind):
    payload = torch.load(stages["uni"] / kind / "checkpoint.pt", weights_only=False)
    assert payload["stage"] == "pretrain_uni" and payload["tasks"] == ["hateful"]
    trained = _encoder_state(payload["state_dict"], kind)
    clip_pre = {k: v for k, v in torch.load(stages["clip_pre"])["state_dict"].items() if k in trained}
    fresh = {k: v for k, v in create_clip(TINY_CLIP, None).state_dict().items() if k in trained}
    # 2 AdamW steps at lr 1e-3 move each weight by at most ~2e-3 (+ weight decay): the encoder
    # is CLIP_pre's, moved a little -- nowhere near a fresh random tower.
    assert 0 < _max_diff(trained, clip_pre) < 5e-3
    assert _max_diff(trained, fresh) > 0.05
    head = payload["state_dict"]
    out_layers = [k for k in head if k.endswith("heads.0.net.3.weight")]
    assert out_layers and all(head[k].shape[0] == 2 for k in out_layers)  # binary head
    assert not any(".heads.1." in k for k in head)  # one task only
    assert (stages["uni"] / kind / "loss_curve.png").is_file()
    summary = json.loads((stages["uni"] / "pretrain_uni.json").read_text())
    assert set(summary["models"]) == {"clip_text", "clip_image"}
    assert {"val_f1", "val_auroc", "val_accuracy"} <= set(summary["models"][kind]["validation"])


def test_memotion_stage_starts_from_the_pretrained_checkpoints(stages, tmp_path):
    # lr = 0 (AdamW's decoupled decay is lr * wd = 0 too): every body weight must come out exactly
    # as it went in, so the run's checkpoints show what the Memotion stage started from.
    base = tiny_recipe(epochs=1, max_steps=1)
    config = replace(
        base,
        models=("clip_text", "clip_image"),
        pretrained=str(stages["clip_pre"]),
        init_from=str(stages["uni"]),
        train=replace(base.train, lr=0.0),
    )
    train_recipe(stages["root"], tmp_path / "warm", config, progress=False, log=lambda _: None)
    cold = replace(config, init_from=None)
    train_recipe(stages["root"], tmp_path / "cold", cold, progress=False, log=lambda _: None)
    clip_pre = torch.load(stages["clip_pre"])["state_dict"]
    for kind in ("clip_text", "clip_image"):
        pre_uni = torch.load(stages["uni"] / kind / "checkpoint.pt", weights_only=False)["state_dict"]
        warm = torch.load(tmp_path / "warm" / kind / "checkpoint.pt", weights_only=False)["state_dict"]
        cold_state = torch.load(tmp_path / "cold" / kind / "checkpoint.pt", weights_only=False)["state_dict"]
        body = [k for k in warm if not k.startswith(("cls_head.", "seq_head.", "head."))]
        assert body and all(torch.equal(warm[k], pre_uni[k]) for k in body), kind
        # Memotion heads: Task A + 4 Task C heads (the binary stage had one)
        assert any(".heads.4." in k for k in warm)
        # without init_from the towers are CLIP_pre's (CLIP_pre,t / CLIP_pre,i) ...
        encoder = _encoder_state(cold_state, kind)
        assert _max_diff(encoder, {k: clip_pre[k] for k in encoder}) == 0.0
        # ... which the binary stage had moved away from
        assert _max_diff(_encoder_state(warm, kind), encoder) > 0


def test_load_body_refuses_a_mismatched_checkpoint(stages):
    text = binary_unimodal("clip_text", create_clip(TINY_CLIP, None), MODEL)
    with pytest.raises(ValueError, match="lacks"):
        warm_start(text, stages["uni"] / "clip_image" / "checkpoint.pt")
    bigger = binary_unimodal("clip_text", create_clip(TINY_CLIP, None), replace(MODEL, lstm_hidden=32))
    state = torch.load(stages["uni"] / "clip_text" / "checkpoint.pt", weights_only=False)["state_dict"]
    with pytest.raises(ValueError, match="shape mismatch"):
        load_body(bigger, state)
    assert head_prefixes(text) == ("cls_head.", "seq_head.")
    with pytest.raises(FileNotFoundError):
        warm_start(text, stages["uni"] / "nope.pt")


@pytest.mark.parametrize("loss", ["clip", "nt-xent", "nt-logistic"])
def test_contrastive_pretraining_fits_a_batch(pretraining_data, tmp_path, loss):
    """A few steps on one batch of 8 pairs lower each loss (the model learns to match them)."""
    torch.manual_seed(0)
    train, _ = _refs(pretraining_data)
    pairs = load_all_pairs(train)[:8]
    clip = create_clip(TINY_CLIP, None)
    config = ContrastiveConfig(epochs=6, batch_size=8, lr=2e-3, loss=loss, temperature=0.2)
    result = pretrain_clip(clip, TINY_CLIP, pairs, [], config, tmp_path, progress=False, log=lambda _: None)
    losses = [s["loss"] for s in result.history["steps"]]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses
    assert result.best_epoch == 6  # no validation data: the last epoch
    assert result.history["config"]["loss"] == loss


def test_pair_loader_batches(pretraining_data):
    clip = create_clip(TINY_CLIP, None)
    pairs = load_all_pairs(_refs(pretraining_data)[1])
    batch = next(iter(pair_loader(pairs, pair_io(clip, TINY_CLIP), 5, shuffle=False)))
    assert batch.input_ids.shape == (5, 32) and batch.input_ids.dtype == torch.int64
    assert batch.pixel_values.shape == (5, 3, 64, 64)
    assert batch.labels.tolist() == [p.label for p in pairs[:5]]


def test_cli_pretrain_stages(pretraining_data, tmp_path, capsys):
    root = pretraining_data
    hm, mami = root / "hateful_memes", root / "mami" / "training.csv"
    assert (
        main(
            [
                "train",
                "--stage",
                "pretrain",
                "--tiny",
                "--data",
                str(hm / "train.jsonl"),
                "--data",
                f"mami:{mami}",
                "--val-data",
                str(hm / "dev.jsonl"),
                "--contrastive-loss",
                "nt-logistic",
                "--temperature",
                "0.3",
                "--max-steps",
                "2",
                "--out",
                str(tmp_path / "clip"),
                "--threads",
                "2",
            ]
        )
        == 0
    )
    clip_pre = tmp_path / "clip" / CLIP_PRE_FILE
    history = json.loads((tmp_path / "clip" / "history.json").read_text())
    assert history["config"]["loss"] == "nt-logistic" and history["config"]["temperature"] == 0.3
    assert len(history["steps"]) == 2
    assert (
        main(
            [
                "train",
                "--stage",
                "pretrain-uni",
                "--tiny",
                "--pretrained",
                str(clip_pre),
                "--data",
                str(hm / "train.jsonl"),
                "--models",
                "clip_image,clip_multi",
                "--max-steps",
                "1",
                "--out",
                str(tmp_path / "uni"),
            ]
        )
        == 0
    )
    assert (tmp_path / "uni" / "clip_image" / "checkpoint.pt").is_file()
    assert not (tmp_path / "uni" / "clip_text").exists()
    assert "--init-from" in capsys.readouterr().out
    # an unlabelled data set cannot feed the binary stage: a clear error, exit code 2
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text(
        json.dumps(
            {
                "id": 1,
                "img": str((hm / "train.jsonl").parent.parent / "image" / "train" / "syn_train_000001.jpg"),
                "text": "x",
            }
        )
        + "\n"
    )
    assert (
        main(["train", "--stage", "pretrain-uni", "--tiny", "--data", str(unlabelled), "--out", str(tmp_path / "bad")])
        == 2
    )
    assert "no binary label" in capsys.readouterr().err
