"""Hyper-parameter search with Ray Tune + ASHA: the search space, and a real local Ray run."""

from __future__ import annotations

import json

import pytest

from memotion_cli.main import main
from training.experiments.tune import SearchSpace, TuneSettings, asha_scheduler, epoch_metrics, param_space
from training.recipe import tiny_recipe


def test_default_space_is_the_authors_grid():
    grid = SearchSpace().grid()
    assert len(grid) == 3 * 3 * 5
    assert {g["lr"] for g in grid} == {2e-5, 1e-5, 2e-6}
    assert {g["weight_decay"] for g in grid} == {0.0, 1e-3, 1e-2}
    assert {g["focal_gamma"] for g in grid} == {0.0, 0.5, 1.0, 2.0, 5.0}
    assert len({tuple(g.values()) for g in grid}) == 45
    with pytest.raises(ValueError, match="lr"):
        SearchSpace(lr=(0.0,))
    with pytest.raises(ValueError, match="no values"):
        SearchSpace(focal_gamma=())


def test_settings_and_ray_objects():
    settings = TuneSettings(
        space=SearchSpace(lr=(1e-3,), weight_decay=(0.0, 1e-2), focal_gamma=(2.0,)),
        num_samples=2,
        max_epochs=3,
        recipe=tiny_recipe(),
    )
    assert settings.trial_count() == 2 * 2 and settings.epochs == 3
    assert TuneSettings(search="random", num_samples=5).trial_count() == 5
    space = param_space(settings)
    assert space["weight_decay"] == {"grid_search": [0.0, 1e-2]}
    scheduler = asha_scheduler(settings)
    assert (scheduler._max_t, scheduler._metric, scheduler._mode) == (3, "score", "max")
    assert (scheduler._time_attr, scheduler._reduction_factor) == ("training_iteration", 2)
    with pytest.raises(ValueError, match="cpus_per_trial"):
        TuneSettings(num_cpus=1, cpus_per_trial=2)


def test_epoch_metrics_score_is_the_selection_score():
    entry = {"epoch": 2, "train_loss": 1.5, "val_task_a": 0.4, "val_task_c": 0.6, "val_task_b": 0.9}
    assert epoch_metrics(entry) == {"score": 0.5, "task_a": 0.4, "task_c": 0.6, "train_loss": 1.5, "epoch": 2}


@pytest.mark.slow
def test_tune_on_a_local_ray(synthetic_data, tmp_path, capsys):
    out = tmp_path / "tune"
    # 2 trials x at most 2 epochs (2 steps each: 96 memes, batch 48), ASHA with grace period 1
    assert (
        main(
            [
                "tune",
                "--data",
                str(synthetic_data),
                "--out",
                str(out),
                "--tiny",
                "--model",
                "clip_image",
                "--lr",
                "1e-3,1e-6",
                "--weight-decay",
                "0.01",
                "--focal-gamma",
                "2",
                "--epochs",
                "2",
                "--batch-size",
                "48",
                "--cpus",
                "2",
            ]
        )
        == 0
    )
    results = json.loads((out / "tune_results.json").read_text())
    trials = results["trials"]
    assert sorted(t["config"]["lr"] for t in trials) == [1e-6, 1e-3]
    assert all(t["config"]["weight_decay"] == 0.01 and t["config"]["focal_gamma"] == 2 for t in trials)
    assert all(t["error"] is None and 1 <= t["epochs"] <= 2 for t in trials)
    assert max(t["epochs"] for t in trials) == 2  # ASHA lets the first trial at a rung go on
    assert all(0 <= s <= 1 for t in trials for s in t["scores"])
    best = max(trials, key=lambda t: t["best_score"])
    assert results["best"] == best
    assert json.loads((out / "best_config.json").read_text())["lr"] == best["config"]["lr"]
    assert (out / "tune_trials.png").stat().st_size > 5000
    assert "best: lr" in capsys.readouterr().out
