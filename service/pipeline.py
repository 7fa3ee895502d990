"""Image + text -> Task A/B/C answers: OCR, tokenize, preprocess, run each member, vote.

Everything about labels, tensors and models comes from the manifest; the backend is any
:class:`~service.backends.base.InferenceBackend`.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import numpy as np
from PIL import Image

from memotion.manifest import Manifest, ManifestError, TaskEntry, load_manifest
from memotion.preprocess import images_to_batch
from memotion.tokenizer import ClipTokenizer
from memotion.voting import majority_vote
from service.backends import InferenceBackend, create_backend
from service.errors import GatewayStartupError
from service.ocr import OcrEngine, create_ocr
from service.settings import GatewaySettings

TextSource = Literal["ocr", "request"]


class ClassificationCancelled(Exception):
    """The caller gave up (time-out) before this classification got to its next stage."""


@dataclass(frozen=True)
class TaskPrediction:
    """One head's ensemble answer: the voted label and the mean member probability of each label."""

    task: str
    index: int
    label: str
    code: str
    scores: dict[str, float]


@dataclass
class ClassifyResult:
    text: str
    text_source: TextSource
    tasks: dict[str, TaskPrediction]  # every head, in manifest order
    task_b: dict[str, bool]  # Task B emotion name -> present
    votes: dict[str, dict[str, str]]  # member -> head -> label it voted for
    timings_ms: dict[str, float] = field(default_factory=dict)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class StageTimer:
    """Wall-clock milliseconds per named stage."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000.0


class MemeClassifier:
    def __init__(self, manifest: Manifest, repository_root: Path, backend: InferenceBackend, ocr: OcrEngine) -> None:
        self.manifest = manifest
        self.repository_root = Path(repository_root)
        self.backend = backend
        self.ocr = ocr
        self.members = manifest.members()
        # OCR runs one image at a time; waiting here (not inside the engine) lets a request that
        # timed out meanwhile skip its OCR instead of running it for nobody.
        self._ocr_lock = threading.Lock()
        self.tasks: tuple[TaskEntry, ...] = manifest.tasks
        task_c = [t for t in self.tasks if t.name in manifest.task_b_names]
        task_a = [t for t in self.tasks if t.name not in manifest.task_b_names]
        if len(task_a) != 1:
            raise ManifestError(
                f"{self.repository_root}: expected exactly one Task A head (a task not in task_b_names), "
                f"found {[t.name for t in task_a]}"
            )
        self.task_a: TaskEntry = task_a[0]
        self.task_c: tuple[TaskEntry, ...] = tuple(task_c)
        needed = {name for member in self.members for name in member.inputs}
        self._needs_text = "input_ids" in needed
        self._needs_image = "pixel_values" in needed
        tokenizer_path = self.repository_root / manifest.tokenizer.file
        try:
            self.tokenizer = ClipTokenizer(tokenizer_path, manifest.tokenizer.context_length, manifest.tokenizer.pad_id)
        except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exceptions on bad JSON
            raise ManifestError(f"{tokenizer_path}: not a usable CLIP tokenizer: {err}") from err

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> "MemeClassifier":
        """Load the manifest, the backend and OCR as ``settings`` say; GatewayStartupError if unusable."""
        root = Path(settings.model_repository)
        try:
            manifest = load_manifest(root)
        except ManifestError as err:
            raise GatewayStartupError(f"unusable model repository: {err}") from err
        backend = create_backend(settings, manifest, root)
        try:
            ocr = create_ocr(settings)
            return cls(manifest, root, backend, ocr)
        except ManifestError as err:
            backend.close()
            raise GatewayStartupError(f"unusable model repository: {err}") from err
        except BaseException:
            backend.close()
            raise

    def ready(self) -> bool:
        return self.backend.ready()

    def warm_up(self) -> None:
        """Run every stage once on a small synthetic meme, so the first request is not the slow one."""
        from PIL import ImageDraw, ImageFont

        image = Image.new("RGB", (320, 96), "white")
        ImageDraw.Draw(image).text((10, 20), "WARM UP", fill="black", font=ImageFont.load_default(40))
        self.classify(image, None)

    def close(self) -> None:
        self.backend.close()

    def classify(
        self, image: Image.Image, text: str | None = None, *, cancelled: Callable[[], bool] | None = None,
    ) -> ClassifyResult:
        return self.classify_batch([image], [text], cancelled=cancelled)[0]

    def classify_batch(
        self,
        images: Sequence[Image.Image],
        texts: Sequence[str | None] | None = None,
        *,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[ClassifyResult]:
        """Classify several memes at once. A ``None`` text means: read it from the image (OCR).

        ``cancelled`` is polled before OCR and before inference; when it says True the work stops
        with :class:`ClassificationCancelled`.
        """

        def check() -> None:
            if cancelled is not None and cancelled():
                raise ClassificationCancelled()

        if texts is None:
            texts = [None] * len(images)
        if len(texts) != len(images):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        if not images:
            return []
        timer = StageTimer()
        start = time.perf_counter()

        resolved: list[str] = []
        sources: list[TextSource] = []
        for image, text in zip(images, texts):
            if text is None:
                with self._ocr_lock:
                    check()
                    with timer.stage("ocr"):
                        resolved.append(self.ocr.read(image))
                sources.append("ocr")
            else:
                resolved.append(text)
                sources.append("request")

        tensors: dict[str, np.ndarray] = {}
        if self._needs_text:
            with timer.stage("tokenize"):
                tensors["input_ids"] = self.tokenizer(resolved)
        if self._needs_image:
            with timer.stage("preprocess"):
                tensors["pixel_values"] = images_to_batch(images, self.manifest.preprocessing)

        check()
        probabilities: dict[str, dict[str, np.ndarray]] = {}  # member -> task -> [B, C]
        for member in self.members:
            with timer.stage(f"inference.{member.name}"):
                outputs = self.backend.infer(member, tensors)
            probabilities[member.name] = {task.name: softmax(outputs[task.name]) for task in self.tasks}
        timer.ms["inference"] = sum(timer.ms[f"inference.{m.name}"] for m in self.members)

        with timer.stage("vote"):
            voted = {
                task.name: majority_vote([probabilities[m.name][task.name] for m in self.members])
                for task in self.tasks
            }
            mean_scores = {
                task.name: np.mean([probabilities[m.name][task.name] for m in self.members], axis=0)
                for task in self.tasks
            }
        timer.ms["total"] = (time.perf_counter() - start) * 1000.0

        results = []
        for row in range(len(images)):
            predictions = {
                task.name: self._prediction(task, int(voted[task.name][row]), mean_scores[task.name][row])
                for task in self.tasks
            }
            task_b = {
                self.manifest.task_b_names[task.name]: predictions[task.name].index > 0 for task in self.task_c
            }
            votes = {
                m.name: {task.name: task.labels[int(np.argmax(probabilities[m.name][task.name][row]))] for task in self.tasks}
                for m in self.members
            }
            results.append(ClassifyResult(resolved[row], sources[row], predictions, task_b, votes, dict(timer.ms)))
        return results

    @staticmethod
    def _prediction(task: TaskEntry, index: int, scores: np.ndarray) -> TaskPrediction:
        if len(scores) != len(task.labels):
            raise ValueError(f"head {task.name}: model gave {len(scores)} scores for {len(task.labels)} labels")
        return TaskPrediction(
            task=task.name, index=index, label=task.labels[index], code=task.codes[index],
            scores={label: float(score) for label, score in zip(task.labels, scores)},
        )

