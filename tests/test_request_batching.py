"""Request-level batching (service/inference/request_batching.py): concurrent classifications with a
text run as one classify_batch, each caller gets its own answer (the one it gets alone), a bad or
cancelled request fails alone, and the settings come from the members' Triton configs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from PIL import Image

from memotion.triton_repository import TritonBatching
from service.core.settings import GatewaySettings
from service.inference.classifier import ClassificationCancelled, MemeClassifier
from service.inference.request_batching import RequestBatcher, request_batching_policy
from tests.gateway_fixtures import photo_jpeg

TEXTS = ["when the code compiles", "monday again", "", "a cat", "tax day", "ok", "x" * 300, "hello there"]


class Held:
    """Wraps a classify_batch: the first call waits until ``release`` is set, then every call runs;
    the batch sizes are recorded."""

    def __init__(self, run: Callable[..., list]) -> None:
        self.run = run
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sizes: list[int] = []
        self.texts: list[str] = []

    def __call__(self, images: Sequence[Image.Image], texts: Sequence[str], *, cancelled=None) -> list:
        self.sizes.append(len(images))
        self.texts.extend(texts)
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60)
        return self.run(images, texts, cancelled=cancelled)


def call_concurrently(call: Callable[[int], object], count: int, held: Held, queued: Callable[[], int]) -> list:
    """``call(i)`` from a thread each: the first runs (held), the others queue behind it, then all run.
    The answers (or exceptions) in order."""
    answers: list = [None] * count

    def run(i: int) -> None:
        try:
            answers[i] = call(i)
        except Exception as err:
            answers[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    threads[0].start()
    assert held.entered.wait(60)
    for thread in threads[1:]:
        thread.start()
    for _ in range(6000):
        if queued() == count - 1:
            break
        threading.Event().wait(0.01)
    held.release.set()
    for thread in threads:
        thread.join(60)
    return answers


def queued(batcher: RequestBatcher) -> int:
    return len(batcher._batcher._queue)


@pytest.fixture(scope="module")
def classifier(model_repository: Path):
    classifier = MemeClassifier.from_settings(GatewaySettings(model_repository=model_repository, ocr="none"))
    yield classifier
    classifier.close()


def test_each_caller_gets_the_answer_it_gets_alone(classifier: MemeClassifier) -> None:
    import io

    batcher = classifier.request_batcher
    assert batcher is not None, "batching is on by default: the classifier batches requests"
    images = [Image.open(io.BytesIO(photo_jpeg((96 + 16 * i, 128), seed=i))).convert("RGB") for i in range(8)]
    alone = [classifier.classify_batch([image], [text])[0] for image, text in zip(images, TEXTS)]
    held = Held(classifier.classify_batch)
    batcher._classify_batch = held
    answers = call_concurrently(lambda i: classifier.classify(images[i], TEXTS[i]), 8, held, lambda: queued(batcher))
    batcher._classify_batch = classifier.classify_batch
    assert held.sizes == [1, 7]  # the first alone (it opened the queue), the seven that waited as one
    for got, expected in zip(answers, alone):
        assert not isinstance(got, Exception), got
        assert got.text == expected.text and got.votes == expected.votes and got.task_b == expected.task_b
        for task, prediction in expected.tasks.items():
            assert got.tasks[task].label == prediction.label
            assert got.tasks[task].scores == pytest.approx(prediction.scores, abs=1e-5)


def test_a_request_without_text_is_not_batched_it_reads_its_own(classifier: MemeClassifier) -> None:
    import io

    image = Image.open(io.BytesIO(photo_jpeg(seed=5))).convert("RGB")
    batcher = classifier.request_batcher
    assert batcher is not None
    held = Held(classifier.classify_batch)
    held.entered.set()  # never hold
    batcher._classify_batch = held
    try:
        classifier.classify(image, None)  # OCR (here: none) per request, never through the batcher
    finally:
        batcher._classify_batch = classifier.classify_batch
    assert held.sizes == []


def fake_answers(images: Sequence[object], texts: Sequence[str], *, cancelled=None) -> list[str]:
    """A classify_batch over strings: fails the whole batch when one text is "bad"."""
    if "bad" in texts:
        raise ValueError("a bad text in the batch")
    return [f"{image}:{text}" for image, text in zip(images, texts)]


def test_a_bad_request_fails_alone_and_a_cancelled_one_is_answered_without_running() -> None:
    held = Held(fake_answers)
    batcher: RequestBatcher[str] = RequestBatcher(
        held, TritonBatching(max_batch_size=16, max_queue_delay_us=0), ClassificationCancelled
    )
    texts = ["a", "b", "bad", "c", "gone", "d"]
    answers = call_concurrently(
        lambda i: batcher.classify(f"image{i}", texts[i], cancelled=lambda: texts[i] == "gone"),  # type: ignore[arg-type]
        len(texts),
        held,
        lambda: queued(batcher),
    )
    assert isinstance(answers[2], ValueError) and isinstance(answers[4], ClassificationCancelled)
    assert [answers[i] for i in (0, 1, 3, 5)] == ["image0:a", "image1:b", "image3:c", "image5:d"]
    assert "gone" not in held.texts  # the cancelled one never ran


def test_a_batch_stops_at_the_smallest_members_max_batch_size() -> None:
    held = Held(fake_answers)
    policy = TritonBatching(max_batch_size=3, preferred_batch_sizes=(), max_queue_delay_us=0)
    batcher: RequestBatcher[str] = RequestBatcher(held, policy, ClassificationCancelled)
    answers = call_concurrently(lambda i: batcher.classify(f"m{i}", str(i)), 8, held, lambda: queued(batcher))  # type: ignore[arg-type]
    assert answers == [f"m{i}:{i}" for i in range(8)]
    assert max(held.sizes) == 3 and sum(held.sizes) == 8


def test_the_policy_combines_the_members_settings() -> None:
    policies = {
        "a": TritonBatching(max_batch_size=32, preferred_batch_sizes=(8,), max_queue_delay_us=2000),
        "b": TritonBatching(max_batch_size=16, preferred_batch_sizes=(4, 16), max_queue_delay_us=500),
        "stage": TritonBatching(max_batch_size=0, preferred_batch_sizes=()),
    }
    combined = request_batching_policy(policies, ["a", "b"])
    assert combined == TritonBatching(max_batch_size=16, preferred_batch_sizes=(4, 8, 16), max_queue_delay_us=2000)
    assert request_batching_policy(policies, ["a", "stage"]) is None  # a member that is not batched
    assert request_batching_policy(policies, ["a", "unknown"]) is None
