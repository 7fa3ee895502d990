"""Shared fixtures: a real model repository (trained for a few steps and exported) and a real
gateway HTTP server on a loopback port serving it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.database_fixtures import database_url, postgres_server  # noqa: F401  (fixtures)
from tests.gateway_fixtures import gateway_url, start_gateway  # noqa: F401  (fixtures)
from tests.translation_fixtures import translation_model_dir  # noqa: F401  (fixture)

if "MEMOTION_DATABASE_URL" not in os.environ:
    # The gateways the tests start (in process and as `memotion serve` children) keep their database
    # in a temporary folder, not in the checkout.
    import atexit
    import shutil
    import tempfile

    _DB_FOLDER = tempfile.mkdtemp(prefix="memotion-test-db-")
    atexit.register(shutil.rmtree, _DB_FOLDER, ignore_errors=True)
    os.environ["MEMOTION_DATABASE_URL"] = f"sqlite:///{_DB_FOLDER}/memotion.db"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one thread is faster than two fighting over a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A small synthetic Memotion-format data set (train.csv, val.csv, image/...)."""
    from training.data.synthetic import SyntheticConfig, make_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, SyntheticConfig(n_train=96, n_val=48, seed=7))
    return root


@pytest.fixture(scope="session")
def pretraining_data(tmp_path_factory, synthetic_data) -> Path:
    """A copy of ``synthetic_data`` with its memes also in the Hateful Memes and MAMI formats
    (hateful_memes/{train,dev}.jsonl, mami/training.csv; label = offensive): the tiny schedule's
    data root."""
    import shutil

    from training.schedule import write_pretraining_formats

    root = tmp_path_factory.mktemp("pretraining") / "data"
    shutil.copytree(synthetic_data, root)
    write_pretraining_formats(root)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_data) -> Path:
    """A `memotion train` run directory: tiny CLIP models trained for a few steps."""
    from training.recipe import tiny_recipe, train_recipe

    run_dir = tmp_path_factory.mktemp("tiny-run")
    train_recipe(synthetic_data, run_dir, tiny_recipe(epochs=2, max_steps=6), progress=False, log=lambda _: None)
    return run_dir


@pytest.fixture(scope="session")
def model_repository(request, tmp_path_factory) -> Path:
    """An exported model repository.

    ``MEMOTION_TEST_REPOSITORY`` points the suite at an existing export (for example a ViT-B-32
    one); otherwise the ``tiny_run`` models are exported.
    """
    existing = os.environ.get("MEMOTION_TEST_REPOSITORY")
    if existing:
        return Path(existing)
    from training.export import export_run

    run_dir = request.getfixturevalue("tiny_run")
    return export_run(run_dir, tmp_path_factory.mktemp("exported") / "model_repository")
