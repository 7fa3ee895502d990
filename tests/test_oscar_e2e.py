"""OSCAR end to end on synthetic memes: `train_recipe` trains it with the shared loop, `export_run`
writes its two ONNX stages and tokenizer into the manifest, the torch-free feeder turns real
images and texts into the same inputs training used, and ONNX Runtime equals PyTorch. The gateway
serving it: tests/test_oscar_served.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from memotion.data_format import load_split
from memotion.manifest import load_manifest
from memotion.oscar_inputs import OSCAR_INPUTS
from training.factory import KindData, load_checkpoint
from training.oscar.inputs import OscarFeeder
from training.oscar.model import OscarClassifier
from training.recipe import read_summary, tiny_recipe, train_recipe

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def oscar_run(synthetic_data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("oscar-run")
    config = replace(tiny_recipe(epochs=2, max_steps=4), models=("clip_text", "oscar"))
    train_recipe(synthetic_data, run_dir, config, progress=False, log=lambda _: None)
    return run_dir


@pytest.fixture(scope="module")
def oscar_repository(oscar_run, tmp_path_factory) -> Path:
    from training.export import export_run

    return export_run(oscar_run, tmp_path_factory.mktemp("oscar-export") / "repository")


def test_recipe_trains_oscar_with_the_shared_loop(oscar_run):
    summary = read_summary(oscar_run)
    assert list(summary["models"]) == ["clip_text", "oscar"]
    assert summary["ensemble"]["members"] == ["clip_text", "oscar"]
    history = json.loads((oscar_run / "oscar" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(0 <= h["val_task_a"] <= 1 for h in history)
    for name in ("checkpoint.pt", "detector.onnx", "detector.pt", "tokenizer.json", "training_curves.png"):
        assert (oscar_run / "oscar" / name).stat().st_size > 0, name
    model, meta = load_checkpoint(oscar_run / "oscar" / "checkpoint.pt")
    assert isinstance(model, OscarClassifier) and meta["kind"] == "oscar"
    assert meta["model_config"]["oscar"]["regions"] == 10


def test_export_declares_both_stages_in_the_manifest(oscar_repository):
    manifest = load_manifest(oscar_repository)  # checks every named file exists
    entry = manifest.model("oscar")
    assert entry.inputs == OSCAR_INPUTS
    assert entry.detector is not None and entry.text_tokenizer is not None
    assert entry.detector.categories[1] == "person" and entry.detector.regions == 10
    session = ort.InferenceSession(str(oscar_repository / entry.detector.file), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(entry.detector.outputs)
    triton = (oscar_repository / "oscar" / "config.pbtxt").read_text()
    assert "region_features" in triton and f"dims: [ {entry.detector.regions}, {entry.detector.feature_dim} ]" in triton


@pytest.mark.parametrize("batch", [1, 5])
def test_feeder_reproduces_training_inputs_and_onnx_equals_pytorch(oscar_repository, oscar_run, synthetic_data, batch):
    manifest = load_manifest(oscar_repository)
    entry = manifest.model("oscar")
    records = load_split(synthetic_data / "val.csv")[:batch]
    feeder = OscarFeeder(entry, oscar_repository)
    images = [Image.open(r.image_path) for r in records]
    feeds = feeder(images, [r.text for r in records])

    # The gateway's regions are the ones training cached for these validation memes.
    (val_cache,) = [p for p in (oscar_run / "oscar" / "regions").glob("*.npz") if np.load(p)["features"].shape[0] == 48]
    with np.load(val_cache) as cached:
        np.testing.assert_array_equal(feeds["region_features"], cached["features"][:batch])
        np.testing.assert_array_equal(feeds["region_mask"], cached["mask"][:batch])

    model, _ = load_checkpoint(oscar_run / "oscar" / "checkpoint.pt")
    session = ort.InferenceSession(str(oscar_repository / entry.file), providers=["CPUExecutionProvider"])
    got = session.run(list(entry.outputs), {name: feeds[name] for name in entry.inputs})
    with torch.no_grad():
        expected = model(*(torch.from_numpy(feeds[name]) for name in entry.inputs))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=0)


def test_prepare_loads_a_local_bert_and_its_tokenizer(synthetic_data, tmp_path):
    from tests.test_oscar import make_bert_dir
    from training.dataset import build_tensors
    from training.factory import model_kind
    from training.oscar.config import tiny_oscar_config

    bert_dir = make_bert_dir(tmp_path / "bert")
    records = {split: load_split(synthetic_data / f"{split}.csv")[:6] for split in ("train", "val")}
    tensors = {
        split: build_tensors(rows, lambda texts: torch.zeros(len(texts), 4, dtype=torch.int64), _tiny_preprocessing())
        for split, rows in records.items()
    }
    recipe = replace(tiny_recipe(), oscar=replace(tiny_oscar_config(), bert=str(bert_dir)))
    prepared = model_kind("oscar").prepare(
        KindData(records, tensors, recipe, tmp_path / "oscar", progress=False, log=lambda _: None)
    )
    from transformers import BertModel

    saved = BertModel.from_pretrained(bert_dir).state_dict()
    for name, value in prepared.model.bert.state_dict().items():
        assert torch.equal(value, saved[name]), name
    ids = prepared.tensors["train"].extras["oscar_input_ids"]
    assert ids.shape == (6, recipe.oscar.max_length) and int(ids.max()) < len(
        (bert_dir / "vocab.txt").read_text().split()
    )
    assert prepared.model_config.oscar.bert_config["hidden_size"] == 32


def _tiny_preprocessing():
    from memotion.manifest import Preprocessing

    return Preprocessing(image_size=16)


def test_cli_options_reach_the_oscar_config(tmp_path):
    from memotion_cli.main import build_parser
    from training.cli import _oscar_options
    from training.oscar.config import OscarConfig

    (tmp_path / "classes.txt").write_text("__background__\ncat\ndog\n")
    args = build_parser().parse_args(
        [
            "train",
            "--data",
            "d",
            "--out",
            "o",
            "--models",
            "oscar",
            "--oscar-bert",
            "/models/bert",
            "--detector",
            "fasterrcnn_mobilenet_v3_large_320_fpn",
            "--detector-weights",
            "/models/d.pth",
            "--detector-categories",
            str(tmp_path / "classes.txt"),
            "--oscar-regions",
            "36",
        ]
    )
    options = _oscar_options(args, OscarConfig())
    assert options.bert == "/models/bert" and options.max_length == 70
    assert options.detector.arch == "fasterrcnn_mobilenet_v3_large_320_fpn"
    assert options.detector.weights == "/models/d.pth" and options.detector.regions == 36
    assert options.detector.categories == ("__background__", "cat", "dog") and options.detector.num_classes == 3
