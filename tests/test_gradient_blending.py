"""Gradient blending: the OGR weight estimator (Wang et al. 2020) and the trainer's use of it (eq. 7)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from training.gradient_blending import (
    BlendWeightEstimator,
    BranchLosses,
    GradientBlendConfig,
    normalise_weights,
    ogr_weights,
    split_holdout,
)


def _losses(train: dict[str, float], heldout: dict[str, float]) -> BranchLosses:
    return BranchLosses(train=train, heldout=heldout)


def test_ogr_weights_by_hand():
    # w_k = dG / dO^2 with dG = LV1 - LV2 and O = LV - LT, then normalised.
    before = _losses({"text": 1.0, "multi": 1.0}, {"text": 1.2, "multi": 1.1})
    after = _losses({"text": 0.5, "multi": 0.8}, {"text": 1.0, "multi": 0.9})
    text = 0.2 / (0.5 - 0.2) ** 2  # dG 0.2, O1 0.2, O2 0.5
    multi = 0.2 / 1e-8  # dG 0.2, O1 = O2 = 0.1: dO^2 = 0 is floored at 1e-8
    weights = ogr_weights(before, after)
    assert weights["text"] == pytest.approx(text / (text + multi))
    assert weights["multi"] == pytest.approx(multi / (text + multi))


def test_branch_that_overfits_more_gets_less_weight():
    before = _losses({"a": 2.0, "b": 2.0}, {"a": 2.0, "b": 2.0})
    # Same held-out gain (0.5); a's train loss fell much further (overfitting grew by 1.0, b's by 0.2).
    after = _losses({"a": 0.5, "b": 1.3}, {"a": 1.5, "b": 1.5})
    weights = ogr_weights(before, after)
    assert weights["b"] > weights["a"]
    assert weights["b"] / weights["a"] == pytest.approx((1.0 / 0.2) ** 2)
    assert sum(weights.values()) == pytest.approx(1.0)


def test_branch_without_generalisation_gain_gets_the_floor():
    before = _losses({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0})
    after = _losses({"a": 0.5, "b": 0.9}, {"a": 1.2, "b": 0.95})  # a's held-out loss went up
    weights = ogr_weights(before, after)
    assert weights["a"] < 1e-6 and weights["b"] == pytest.approx(1.0, abs=1e-6)


def test_no_branch_gains_gives_uniform_weights():
    before = _losses({"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 1.0, "b": 1.0, "c": 1.0})
    after = _losses({"a": 0.5, "b": 0.4, "c": 0.3}, {"a": 1.1, "b": 1.3, "c": 1.0})
    assert ogr_weights(before, after) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_normalise_and_config_validation():
    assert normalise_weights({"text": 1, "image": 3}) == {"text": 0.25, "image": 0.75}
    with pytest.raises(ValueError):
        normalise_weights({"text": 0.0})
    with pytest.raises(ValueError):
        GradientBlendConfig(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        GradientBlendConfig(holdout_fraction=1.0)


def test_split_holdout_is_disjoint_seeded_and_sized():
    train, held = split_holdout(200, 0.1, torch.Generator().manual_seed(0))
    assert len(held) == 20 and len(train) == 180
    assert set(train.tolist()).isdisjoint(held.tolist())
    assert set(train.tolist()) | set(held.tolist()) == set(range(200))
    again, _ = split_holdout(200, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(train, again)


def test_estimator_reestimates_every_super_epoch_from_the_previous_measurement():
    measurements = iter(
        [
            _losses({"a": 2.0, "b": 2.0}, {"a": 2.0, "b": 2.0}),  # start
            _losses({"a": 0.5, "b": 1.3}, {"a": 1.5, "b": 1.5}),  # after epoch 2
            _losses({"a": 0.4, "b": 1.2}, {"a": 1.5, "b": 1.4}),  # after epoch 4
        ]
    )
    estimator = BlendWeightEstimator(lambda: next(measurements), ("a", "b"), super_epoch=2)
    assert estimator.weights == {"a": 0.5, "b": 0.5}  # uniform until the first estimate
    estimator.start()
    assert not estimator.end_epoch(1)
    assert estimator.end_epoch(2)
    assert estimator.weights["b"] > estimator.weights["a"]
    assert estimator.end_epoch(4)
    # a gained nothing between epochs 2 and 4: the floor.
    assert estimator.weights["a"] < 1e-6
    assert [entry["epoch"] for entry in estimator.log] == [2, 4]


# --- the trainer ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tensors(synthetic_data):
    from training.recipe import prepare_data, tiny_recipe

    data = prepare_data(synthetic_data, tiny_recipe(), progress=False, log=lambda _: None)
    return data.train, data.val


def _multi(seed: int = 0):
    from training.backbone import TINY_CLIP
    from training.factory import build_model
    from training.recipe import tiny_recipe

    torch.manual_seed(seed)
    return build_model("clip_multi", TINY_CLIP, tiny_recipe().model)


def _train(model, tensors, tmp_path, **overrides):
    from training.backbone import TINY_CLIP
    from training.recipe import tiny_recipe
    from training.trainer import train_model

    recipe = tiny_recipe()
    config = replace(recipe.train, epochs=2, **overrides)
    return train_model(
        model, "clip_multi", *tensors, config, tmp_path, TINY_CLIP, recipe.model, progress=False, log=lambda _: None
    )


@pytest.mark.slow
def test_estimated_weights_are_logged_and_used(tensors, tmp_path):
    result = _train(_multi(), tensors, tmp_path, gb_mode="estimated")
    log = json.loads((tmp_path / "gradient_blending.json").read_text())
    assert log["mode"] == "estimated" and [e["epoch"] for e in log["estimates"]] == [1, 2]
    first, second = (h for h in result.history)
    assert first["gb_weight_text"] == pytest.approx(1 / 3)  # uniform before the first estimate
    # The second epoch trained with the weights estimated after the first.
    assert {k.removeprefix("gb_weight_"): v for k, v in second.items() if k.startswith("gb_weight_")} == pytest.approx(
        log["estimates"][0]["weights"]
    )
    assert sum(log["estimates"][0]["weights"].values()) == pytest.approx(1.0)
    for estimate in log["estimates"]:
        assert set(estimate["heldout_loss"]) == {"text", "image", "multi"}
    assert (tmp_path / "gradient_blending.png").read_bytes()[:4] == b"\x89PNG"
    # 10% of the training memes are held out: the steps per epoch shrink accordingly.
    train = tensors[0]
    assert result.history[0]["step"] == -(-(len(train) - round(0.1 * len(train))) // 32)


@pytest.mark.slow
def test_without_gb_only_the_multi_branch_learns(tensors, tmp_path):
    def text_head_moved(mode: str) -> bool:
        model = _multi()
        before = [p.detach().clone() for p in model.text.cls_head.parameters()]
        _train(model, tensors, tmp_path / mode, gb_mode=mode, max_steps=1)
        return any(not torch.equal(a, b) for a, b in zip(before, model.text.cls_head.parameters()))

    assert not text_head_moved("off")  # the text branch's own head gets no loss without GB
    assert text_head_moved("fixed")
