"""ONNX Runtime's threads per session: the cores shared out over what runs at once (issue 21)."""

from __future__ import annotations

import pytest

from service.core.settings import GatewaySettings
from service.inference.backends import ort_intra_op_threads


@pytest.fixture
def cores(monkeypatch) -> None:
    monkeypatch.setattr("service.inference.backends.usable_cores", lambda: 16)


def test_cores_are_shared_over_processes_and_their_workers(cores) -> None:
    assert ort_intra_op_threads(0, processes=1, workers=1) == 16
    assert ort_intra_op_threads(0, processes=1, workers=2) == 8
    assert ort_intra_op_threads(0, processes=2, workers=4) == 2
    assert ort_intra_op_threads(0, processes=4, workers=8) == 1  # never below one thread


def test_a_configured_thread_count_wins(cores) -> None:
    assert ort_intra_op_threads(3, processes=4, workers=8) == 3


def test_the_gateway_defaults_give_one_thread_per_session_on_two_cores(monkeypatch) -> None:
    monkeypatch.setattr("service.inference.backends.usable_cores", lambda: 2)
    settings = GatewaySettings()
    assert (settings.ort_intra_op_threads, settings.workers) == (0, 2)
    assert ort_intra_op_threads(settings.ort_intra_op_threads, settings.processes, settings.workers) == 1
