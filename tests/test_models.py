"""The three CLIP classifiers: shapes, the paper's structure, and real checkpoint loading."""

import open_clip
import pytest
import torch

from memotion.labels import ALL_TASKS
from training.backbone import TINY_CLIP, create_clip, register_model_configs
from training.factory import ModelConfig, build_multi, build_unimodal, load_checkpoint, save_checkpoint
from training.models.encoders import token_lengths

CONFIG = ModelConfig(lstm_hidden=16, head_hidden=16, attention_heads=4)
SHAPES = [(2, t.num_classes) for t in ALL_TASKS]


@pytest.fixture(scope="module")
def batch():
    register_model_configs()
    tokenize = open_clip.get_tokenizer(TINY_CLIP, context_length=32)
    ids = tokenize(["when the code finally compiles", "bhai ekdum mast"])
    return ids, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    text = build_unimodal("clip_text", create_clip(TINY_CLIP), CONFIG).eval()
    image = build_unimodal("clip_image", create_clip(TINY_CLIP), CONFIG).eval()
    return text, image, build_multi(text, image, CONFIG).eval()


def test_every_model_returns_one_logit_tensor_per_task(models, batch):
    text, image, multi = models
    ids, pixels = batch
    for logits in (text(ids), image(pixels), multi(ids, pixels)):
        assert [tuple(x.shape) for x in logits] == SHAPES


def test_text_model_sums_cls_and_bilstm_logits(models, batch):
    # Fig. 1a: x_t = classifier(F_cls,t) + classifier(BiLSTM(E_t)).
    text, _, _ = models
    ids, _ = batch
    assert text.lstm.num_layers == 2 and text.lstm.bidirectional
    states, cls = text.encoder(ids)
    expected = text.logits_from_features(states, cls, token_lengths(ids))
    for got, want in zip(text(ids), expected):
        torch.testing.assert_close(got, want)


def test_text_model_ignores_padding(models):
    # Packed BiLSTM: a text's logits do not depend on how much padding follows it.
    text, _, _ = models
    tokenize = open_clip.get_tokenizer(TINY_CLIP, context_length=32)
    ids = tokenize(["short text"])
    states, cls = text.encoder(ids)
    garbage = states.clone()
    garbage[:, int(token_lengths(ids)[0]) :] = 100.0
    for a, b in zip(
        text.logits_from_features(states, cls, token_lengths(ids)),
        text.logits_from_features(garbage, cls, token_lengths(ids)),
    ):
        torch.testing.assert_close(a, b)


def test_multi_model_structure_follows_fig2(models, batch):
    _, _, multi = models
    assert len(multi.blocks) == 6
    assert all(block.norm is None for block in multi.blocks)  # no residual, no LayerNorm
    assert multi.head.heads[0].net[0].in_features == 2 * multi.text.encoder.width  # [E_t[0]; E_i[0]]
    ids, pixels = batch
    branches = multi.forward_branches(ids, pixels)
    assert set(branches) == {"text", "image", "multi"}
    for got, want in zip(branches["multi"], multi(ids, pixels)):
        torch.testing.assert_close(got, want)


def test_multi_model_starts_from_the_unimodal_weights(models):
    text, image, multi = models
    for name, value in text.state_dict().items():
        torch.testing.assert_close(multi.text.state_dict()[name], value)
    assert multi.text.encoder.token_embedding.weight.data_ptr() != text.encoder.token_embedding.weight.data_ptr()


def test_open_clip_loads_a_local_checkpoint(tmp_path):
    # The real loading path (`pretrained=<path>`), exercised with a checkpoint this test saves.
    source = create_clip(TINY_CLIP)
    path = tmp_path / "tiny-clip.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = create_clip(TINY_CLIP, str(path))
    for name, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    with pytest.raises(FileNotFoundError):
        create_clip(TINY_CLIP, str(tmp_path / "missing.pt"))


def test_classifier_checkpoint_round_trip(models, batch, tmp_path):
    _, _, multi = models
    path = save_checkpoint(tmp_path / "multi.pt", multi, "clip_multi", TINY_CLIP, CONFIG, {"epoch": 3})
    loaded, meta = load_checkpoint(path)
    assert meta["epoch"] == 3 and meta["kind"] == "clip_multi"
    ids, pixels = batch
    for a, b in zip(loaded(ids, pixels), multi(ids, pixels)):
        torch.testing.assert_close(a, b)


def test_text_and_multi_logits_are_the_same_on_ids_cut_to_the_longest_text(models, batch):
    # The gateway cuts input_ids to the batch's longest text (issue 21): causal text tower,
    # packed BiLSTM, key padding mask in CLIP-multi, so only padding is dropped.
    text, _, multi = models
    ids, pixels = batch
    longest = int(token_lengths(ids).max())
    assert longest + 3 < ids.shape[1]
    with torch.no_grad():
        full = (text(ids), multi(ids, pixels))
        for cut in (longest, longest + 3):
            for got, want in zip((text(ids[:, :cut]), multi(ids[:, :cut], pixels)), full):
                for a, b in zip(got, want):
                    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        shorter = text(ids[:, : longest - 1])  # the longest text's <end_of_text> cut off: not the same
    assert not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(shorter, full[0]))


def test_text_encoder_blocks_equal_open_clips_transformer(models, batch):
    # ClipTextEncoder runs open_clip's blocks with its own attention (symbolic token axis in ONNX).
    encoder = models[0].encoder
    ids, _ = batch
    x = encoder.token_embedding(ids) + encoder.positional_embedding
    with torch.no_grad():
        torch.testing.assert_close(
            encoder.encode(x, encoder.attn_mask), encoder.transformer(x, attn_mask=encoder.attn_mask)
        )
