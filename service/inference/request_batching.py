"""Request-level dynamic batching: concurrent classifications whose text is known run as one
``classify_batch`` -- one tokenizer call, one preprocessing batch, one inference per member and one
vote for all of them -- instead of each request paying that Python work alone.

On top of the per-model batching (service/inference/batching.py, which merges the members' calls
but leaves each request its own tokenizing, preprocessing, soft-max and voting): on a CPU those
per-request steps cost as much as the networks (bench/serving.py). Requests whose text must be
read by OCR do not come here: OCR stays per request (its networks are batched per model), since
one batch would read every image in one thread.

The batches follow the members' own Triton settings (``request_batching_policy``): the smallest
``max_batch_size``, their preferred sizes, the longest ``max_queue_delay``; a lone request does not
wait (nobody could join it). A request cancelled (timed out) before its batch runs is answered at
once; the batch stops early only when all of its requests are cancelled. A batch that fails runs
again request by request, so a bad request fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from PIL import Image

from memotion.triton_repository import TritonBatching
from service.inference.batching import Batcher, BatchObserver

Answer = TypeVar("Answer")
REQUEST_BATCHER = "classify"  # the ``model`` label of its batch metrics


class ClassifyBatch(Protocol[Answer]):
    def __call__(
        self, images: Sequence[Image.Image], texts: Sequence[str], *, cancelled: Callable[[], bool] | None = None
    ) -> list[Answer]: ...


@dataclass(eq=False)  # identity: two requests for the same meme are two requests
class ClassifyRequest:
    image: Image.Image
    text: str
    cancelled: Callable[[], bool] | None = None

    def is_cancelled(self) -> bool:
        return self.cancelled is not None and self.cancelled()


def request_batching_policy(policies: Mapping[str, TritonBatching], members: Sequence[str]) -> TritonBatching | None:
    """The members' batching settings combined (None when one of them is not batched)."""
    chosen = [policies[name] for name in members if name in policies]
    if not chosen or len(chosen) < len(members) or any(p.max_batch_size <= 0 for p in chosen):
        return None
    largest = min(p.max_batch_size for p in chosen)
    preferred = sorted({size for p in chosen for size in p.preferred_batch_sizes if size <= largest})
    return TritonBatching(
        max_batch_size=largest,
        preferred_batch_sizes=tuple(preferred),
        max_queue_delay_us=max(p.max_queue_delay_us for p in chosen),
    )


class RequestBatcher(Generic[Answer]):
    """Runs concurrent ``classify(image, text)`` calls together through ``classify_batch``."""

    def __init__(
        self,
        classify_batch: ClassifyBatch[Answer],
        policy: TritonBatching,
        cancelled_error: Callable[[], BaseException],
        observer: BatchObserver | None = None,
    ) -> None:
        self._classify_batch = classify_batch
        self._cancelled_error = cancelled_error
        self._batcher: Batcher[ClassifyRequest, Answer] = Batcher(
            REQUEST_BATCHER, self._run, policy, observer, company=lambda: self._batcher.in_flight > 1
        )

    @property
    def observer(self) -> BatchObserver | None:
        return self._batcher.observer

    @observer.setter
    def observer(self, observer: BatchObserver | None) -> None:
        self._batcher.observer = observer

    def classify(self, image: Image.Image, text: str, cancelled: Callable[[], bool] | None = None) -> Answer:
        return self._batcher.submit(ClassifyRequest(image, text, cancelled))

    def close(self) -> None:
        self._batcher.close()

    def _run(self, requests: list[ClassifyRequest]) -> list[Answer | BaseException]:
        """One classify_batch over the requests still wanted; the others get their cancellation."""
        live = [r for r in requests if not r.is_cancelled()]
        results = iter(
            self._classify_batch(
                [r.image for r in live],
                [r.text for r in live],
                cancelled=lambda: all(r.is_cancelled() for r in live),
            )
            if live
            else []
        )
        wanted = {id(r) for r in live}
        return [next(results) if id(r) in wanted else self._cancelled_error() for r in requests]
