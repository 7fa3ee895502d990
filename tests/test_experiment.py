"""The Table-4 experiment (`memotion experiment`) and the synthetic modality-imbalance setting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.data.synthetic import SyntheticConfig, make_synthetic_dataset


def _latents(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "latents.jsonl").read_text().splitlines()]


def test_partial_dominance_moves_a_share_of_the_other_modality(tmp_path):
    config = SyntheticConfig(n_train=120, n_val=0, seed=3, image_size=64, dominant="text", dominant_coverage=0.6)
    make_synthetic_dataset(tmp_path, config)
    memes = _latents(tmp_path)
    covered = []
    for meme in memes:
        factors, text, image = meme["factors"], meme["text"], meme["image"]
        assert {k: text[k] for k in ("polarity", "joke", "insult", "motivation", "twist")} == {
            k: factors[k] for k in ("polarity", "joke", "insult", "motivation", "twist")
        }
        for key in ("mood", "face", "angry"):
            if key in text:  # rendered by the caption, truthfully
                assert text[key] == factors[key]
                covered.append(True)
            else:  # left to the picture, which then shows the true value
                assert image[key] == factors[key]
                covered.append(False)
    assert 0.5 < np.mean(covered) < 0.7
    # The caption alone now misses the mood in ~40% of memes: sentiment needs the picture there.
    missing = [m for m in memes if "mood" not in m["text"]]
    assert missing and all(m["image"]["mood"] == m["factors"]["mood"] for m in missing)


def test_full_dominance_is_unchanged_by_the_new_option(tmp_path):
    old = SyntheticConfig(n_train=8, n_val=0, seed=4, image_size=64, dominant="image")
    make_synthetic_dataset(tmp_path / "a", old)
    for meme in _latents(tmp_path / "a"):
        assert meme["image"] == meme["factors"]  # the picture renders everything
    with pytest.raises(ValueError):
        SyntheticConfig(dominant="text", dominant_coverage=1.5)


@pytest.mark.slow
def test_quick_experiment_writes_the_table(tmp_path):
    from training.experiments.table4 import COLUMNS, ENSEMBLES, MULTI_VARIANTS, UNIMODAL, quick_config, run_experiment

    lines: list[str] = []
    report = run_experiment(tmp_path, quick_config(), progress=False, log=lines.append)
    table = (tmp_path / "table4.md").read_text()
    saved = json.loads((tmp_path / "table4.json").read_text())
    assert (tmp_path / "rho.png").read_bytes()[:4] == b"\x89PNG"
    rows = [*UNIMODAL, *MULTI_VARIANTS, *ENSEMBLES]
    for row in rows:
        assert f"| {row} |" in table
    for column in COLUMNS.values():
        assert column in table
    (setting,) = saved["settings"].values()
    per_seed = setting["per_seed"]
    assert len(per_seed) == 2
    for row in rows:
        for key in COLUMNS:
            values = [seed["rows"][row]["test"][key] for seed in per_seed]
            assert all(0.0 <= v <= 1.0 for v in values)
            assert setting["test"][row][key]["mean"] == pytest.approx(np.mean(values))
            assert setting["test"][row][key]["std"] == pytest.approx(np.std(values, ddof=1))
    for name, members in ENSEMBLES.items():  # voters are searched among the named members only
        selection = per_seed[0]["rows"][name]["selection"]
        assert set(selection["members"]) <= set(members)
        assert set(selection["task_members"]) == {"sentiment", "humour", "sarcasm", "offensive", "motivational"}
    diagnostics = setting["diagnostics"]
    assert diagnostics["CLIP-multi"]["rho_last_epoch"] > 0
    assert diagnostics["CLIP-multi"]["blend_weights"] == {}
    assert sum(diagnostics["CLIP-multi +GB"]["blend_weights"].values()) == pytest.approx(1.0)
    assert report["settings"].keys() == saved["settings"].keys()
    assert any("CLIP-multi +GB +PMR trained" in line for line in lines)
