"""Dynamic batching inside the gateway: concurrent requests for one model run as one call.

Triton's dynamic batcher, in process. Each model gets a queue: the oldest request waiting opens a
batch; requests that arrive while it is open join it until it holds ``max_batch_size`` rows,
reaches the largest ``preferred_batch_size``, or ``max_queue_delay`` has passed since the oldest
came. The batch runs as one call of the wrapped backend (in the thread of the request that led it,
no batcher thread) and each caller gets its own rows back. One difference from Triton: when no
other request is in flight in the backend, a lone request does not wait out the delay (nobody
could join it), so an idle gateway answers as fast as without batching. The settings are the
model's Triton config (``config.pbtxt``, written by ``memotion export`` from ``TritonBatching``),
so the embedded backend batches as Triton does.

Inputs: token sequences (``PADDABLE``) of different lengths are right-padded with the pad id;
other inputs (images) only share a batch when their per-row shapes agree (padding an image would
change the answer), so a request with another image size waits for the next batch. If a merged
batch fails, its requests are run one by one, so a bad request fails alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np

from memotion.manifest import ServedModel
from memotion.triton_repository import TritonBatching, default_batching, model_batching
from service.inference.backends.base import BackendError

logger = logging.getLogger("memotion.gateway")

Tensors = Mapping[str, np.ndarray]
# Inputs that may be right-padded to the longest sequence of the batch (value: the pad value key).
PADDABLE = ("input_ids", "oscar_input_ids", "oscar_token_type_ids", "oscar_attention_mask")
Item = TypeVar("Item")
Result = TypeVar("Result")


class BatchObserver(Protocol):
    def observe_batch(self, model: str, size: int, queue_delays_s: Sequence[float]) -> None:
        """A batch of ``size`` rows ran for ``model``; each request waited ``queue_delays_s``."""
        ...


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    rows: int
    group: Hashable
    enqueued: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)  # result or error set
    wake: threading.Event = field(default_factory=threading.Event)  # done, or lead the next batch
    result: Result | None = None
    error: BaseException | None = None


def batch_group(inputs: Tensors) -> tuple[object, ...]:
    """Requests with the same group can share a batch: same dtypes, same per-row shapes except the
    length of paddable sequences."""
    return tuple(
        (name, str(array.dtype), array.ndim if name in PADDABLE else array.shape[1:])
        for name, array in sorted(inputs.items())
    )


def merge_inputs(parts: Sequence[Tensors], pad_values: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Concatenate along the batch axis; paddable sequences right-padded to the longest."""
    merged = {}
    for name in parts[0]:
        arrays = [part[name] for part in parts]
        if name in PADDABLE and len({a.shape[1:] for a in arrays}) > 1:
            length = max(a.shape[1] for a in arrays)
            pad = pad_values.get(name, 0)
            arrays = [
                np.pad(a, [(0, 0), (0, length - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=pad)
                for a in arrays
            ]
        merged[name] = np.concatenate(arrays, axis=0)
    return merged


def split_outputs(outputs: Tensors, rows: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """The merged outputs cut back into each request's rows (in order)."""
    total = sum(rows)
    for name, value in outputs.items():
        if value.shape[:1] != (total,):
            raise BackendError(f"output {name!r} has shape {value.shape}, expected {total} rows first")
    bounds = np.cumsum([0, *rows])
    return [{name: value[bounds[i] : bounds[i + 1]] for name, value in outputs.items()} for i in range(len(rows))]


class Batcher(Generic[Item, Result]):
    """A queue whose concurrent items run together: ``run_batch(items)`` answers each item (a
    result, or an exception meant for that item alone), in order.

    No thread of its own: the caller that finds no batch being formed leads -- it forms the batch,
    runs it in its own thread and hands the others their answers; when it is done, the oldest item
    still waiting leads the next one. One batch at a time (Triton's one instance), and no thread
    hand-off at all for a lone item. A batch that raises is run again item by item, so a bad item
    fails alone."""

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[Item]], Sequence[Result | BaseException]],
        policy: TritonBatching,
        observer: BatchObserver | None = None,
        company: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self.observer = observer
        self._run_batch = run_batch
        self._company = company
        self._target = max(policy.preferred_batch_sizes, default=policy.max_batch_size)
        self._delay_s = policy.max_queue_delay_us / 1e6
        self._queue: deque[_Pending[Item, Result]] = deque()
        self._cond = threading.Condition()
        self._leading = False  # a caller's thread is forming or running a batch
        self._closed = False
        self.in_flight = 0  # items submitted and not answered yet (queued, or in the running batch)

    def submit(self, item: Item, rows: int = 1, group: Hashable = ()) -> Result:
        """Queue ``item`` (``rows`` rows; it shares batches only with items of its ``group``) and
        return its answer from the batch it ran in."""
        pending: _Pending[Item, Result] = _Pending(item, rows, group)
        with self._cond:
            if self._closed:
                raise BackendError(f"{self.name}: the batcher is closed")
            self._queue.append(pending)
            self.in_flight += 1
            lead, self._leading = not self._leading, True
            self._cond.notify_all()  # a leader gathering a batch may take this one
        try:
            if not lead:
                pending.wake.wait()
            if not pending.done.is_set():  # leading: from the start, or handed the lead
                self._lead(pending)
        finally:
            with self._cond:
                self.in_flight -= 1
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]  # set with done, unless error is

    def close(self) -> None:
        """No new items (those queued still run)."""
        with self._cond:
            self._closed = True

    # --- leading ------------------------------------------------------------------------------

    def _lead(self, own: _Pending[Item, Result]) -> None:
        try:
            while not own.done.is_set():
                self._execute(self._next_batch())
        finally:
            with self._cond:
                if self._queue:
                    self._queue[0].wake.set()  # the oldest waiting item leads next
                else:
                    self._leading = False

    def _next_batch(self) -> list[_Pending[Item, Result]]:
        """The oldest item and those that join it: until the batch holds the largest preferred
        size (or max_batch_size) or max_queue_delay has passed since the oldest came. Nobody else
        in flight (``company``): no waiting, since nobody could join."""
        with self._cond:
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            deadline = first.enqueued + self._delay_s
            if self._company is not None and not self._company():
                deadline = 0.0
            while True:
                rows += self._take_compatible(batch, rows)
                remaining = deadline - time.perf_counter()
                if rows >= self._target or remaining <= 0:
                    return batch
                self._cond.wait(remaining)

    def _take_compatible(self, batch: list[_Pending[Item, Result]], rows: int) -> int:
        """Move queued items of the batch's group into it while they fit; the rows added."""
        added, kept = 0, deque[_Pending[Item, Result]]()
        while self._queue:
            item = self._queue.popleft()
            if item.group == batch[0].group and rows + added + item.rows <= self.policy.max_batch_size:
                batch.append(item)
                added += item.rows
            else:
                kept.append(item)
        self._queue.extendleft(reversed(kept))
        return added

    def _execute(self, batch: list[_Pending[Item, Result]]) -> None:
        self._observe(batch)
        if len(batch) == 1:
            self._run_alone(batch[0])
            return
        try:
            answers = self._answers([p.item for p in batch])
        except Exception as err:
            logger.warning("%s: a batch of %d failed (%s); running them one by one", self.name, len(batch), err)
            for pending in batch:
                self._run_alone(pending)
            return
        for pending, answer in zip(batch, answers):
            self._settle(pending, answer)

    def _answers(self, items: list[Item]) -> Sequence[Result | BaseException]:
        answers = self._run_batch(items)
        if len(answers) != len(items):
            raise BackendError(f"{self.name}: {len(answers)} answers for {len(items)} items")
        return answers

    def _observe(self, batch: list[_Pending[Item, Result]]) -> None:
        if self.observer is None:
            return
        started = time.perf_counter()
        try:
            self.observer.observe_batch(self.name, sum(p.rows for p in batch), [started - p.enqueued for p in batch])
        except Exception as err:  # metrics never fail a request
            logger.debug("batch metrics: %s", err)

    def _run_alone(self, pending: _Pending[Item, Result]) -> None:
        try:
            answer: Result | BaseException = self._answers([pending.item])[0]
        except BaseException as err:
            answer = err
        self._settle(pending, answer)

    @staticmethod
    def _settle(pending: _Pending[Item, Result], answer: Result | BaseException) -> None:
        if isinstance(answer, BaseException):
            pending.error = answer
        else:
            pending.result = answer
        pending.done.set()
        pending.wake.set()


class ModelBatcher(Batcher[dict[str, np.ndarray], dict[str, np.ndarray]]):
    """One model's queue: requests' input tensors merged along the batch axis (sequences padded),
    run as one call of ``run``, the outputs split back into each request's rows."""

    def __init__(
        self,
        name: str,
        run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
        policy: TritonBatching,
        pad_values: Mapping[str, int] | None = None,
        observer: BatchObserver | None = None,
        company: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(name, self._run_merged, policy, observer, company)
        self._run = run
        self._pad_values = dict(pad_values or {})

    def _run_merged(self, parts: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        if len(parts) == 1:
            return [self._run(parts[0])]
        merged = merge_inputs(parts, self._pad_values)
        return split_outputs(self._run(merged), [_rows(self.name, p) for p in parts])

    def submit(
        self, item: dict[str, np.ndarray], rows: int | None = None, group: Hashable = None
    ) -> dict[str, np.ndarray]:
        """Queue one request's input tensors and return its rows of the batch it ran in (``rows``
        and ``group`` come from the tensors)."""
        return super().submit(item, _rows(self.name, item), batch_group(item))


def _rows(model: str, inputs: Tensors) -> int:
    rows = {len(a) for a in inputs.values()}
    if len(rows) != 1:
        raise BackendError(f"model {model}: inputs have different row counts {sorted(rows)}")
    return rows.pop()


class RunnableBackend(Protocol):
    """A backend whose work splits into checking a request's inputs and running a (merged) batch."""

    name: str

    def prepare(self, model: ServedModel, inputs: Tensors) -> dict[str, np.ndarray]: ...

    def run(self, model: ServedModel, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...


class BatchingBackend:
    """An :class:`InferenceBackend` that batches concurrent ``infer`` calls per model, then runs
    them on ``inner`` (the ONNX Runtime backend). A model whose policy has max_batch_size 0 (a
    stage model: one item per call, no batch axis) is never batched: its calls run directly."""

    def __init__(
        self,
        inner: RunnableBackend,
        models: Sequence[ServedModel],
        policies: Mapping[str, TritonBatching],
        pad_id: int = 0,
        observer: BatchObserver | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.policies = dict(policies)
        pads = {"input_ids": pad_id}
        self._in_flight = 0  # infer calls under way, every model together
        self._lock = threading.Lock()
        chosen = {m.name: (m, self.policies.get(m.name, default_batching(m))) for m in models}
        self._batchers = {
            name: ModelBatcher(name, _runner(inner, m), policy, pads, observer, company=self._has_company)
            for name, (m, policy) in chosen.items()
            if policy.max_batch_size > 0
        }

    def _has_company(self) -> bool:
        """Another request is in some model's queue or batch now: one worth waiting for may come."""
        return self._in_flight > 1

    def set_observer(self, observer: BatchObserver | None) -> None:
        for batcher in self._batchers.values():
            batcher.observer = observer

    def infer(self, model: ServedModel, inputs: Tensors) -> dict[str, np.ndarray]:
        feed = self.inner.prepare(model, inputs)  # a request's own errors are raised here, to it alone
        batcher = self._batchers.get(model.name)
        if batcher is None:
            return self.inner.run(model, feed)
        with self._lock:
            self._in_flight += 1
        try:
            return batcher.submit(feed)
        finally:
            with self._lock:
                self._in_flight -= 1

    def ready(self) -> bool:
        return self.inner.ready()

    def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.close()
        self.inner.close()


def _runner(inner: RunnableBackend, model: ServedModel) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    return lambda feed: inner.run(model, feed)


def repository_policies(repository: Path, models: Sequence[ServedModel]) -> dict[str, TritonBatching]:
    """Each model's batching settings from its Triton config in ``repository`` (defaults if absent)."""
    return {m.name: model_batching(repository, m) for m in models}
