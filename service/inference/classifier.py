"""Image + text -> Task A/B/C answers: OCR, tokenize, preprocess, run each member, vote.

Everything about labels, tensors and models comes from the manifest; the backend is any
:class:`~service.inference.backends.base.InferenceBackend`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from memotion.manifest import Manifest, ManifestError, ModelEntry, TaskEntry, load_manifest
from memotion.preprocess import images_to_batch
from memotion.tokenizer import ClipTokenizer
from memotion.voting import majority_vote, presence_probabilities
from service.core.errors import GatewayStartupError
from service.core.settings import GatewaySettings
from service.inference.backends import InferenceBackend, create_backend
from service.inference.ocr import OcrEngine, create_ocr
from service.text.processing import TextProcessor, TextStep, text_config_from_settings
from service.text.translation import TranslationError

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
    language: str | None = None  # of the text, when language identification is on
    text_steps: list[TextStep] = field(default_factory=list)  # the text path, step by step


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
    def __init__(
        self,
        manifest: Manifest,
        repository_root: Path,
        backend: InferenceBackend,
        ocr: OcrEngine,
        text_processor: TextProcessor | None = None,
    ) -> None:
        self.manifest = manifest
        self.repository_root = Path(repository_root)
        self.backend = backend
        self.ocr = ocr
        self.text_processor = text_processor
        self.members = manifest.members()
        # Members with stages of their own before the model (OSCAR: a region detector and a BERT
        # tokenizer; training/oscar/inputs.py OscarFeeder makes their inputs) are not wired in yet.
        staged = [m.name for m in self.members if m.detector is not None or m.text_tokenizer is not None]
        if staged:
            raise ManifestError(
                f"ensemble members {staged} need a region detector and a BERT tokenizer run before "
                "the model (OSCAR), which this gateway does not do yet; serve a repository exported "
                "from a run trained without them (memotion train --models without oscar)"
            )
        # Members that read only the text: what a request without an image is classified with.
        self.text_only_members = [m for m in self.members if "pixel_values" not in m.inputs]
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
        tokenizer_path = self.repository_root / manifest.tokenizer.file
        try:
            self.tokenizer = ClipTokenizer(tokenizer_path, manifest.tokenizer.context_length, manifest.tokenizer.pad_id)
        except Exception as err:
            raise ManifestError(f"{tokenizer_path}: not a usable CLIP tokenizer: {err}") from err

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> MemeClassifier:
        """Load the manifest, the backend and OCR as ``settings`` say; GatewayStartupError if unusable."""
        root = Path(settings.model_repository)
        try:
            manifest = load_manifest(root)
        except ManifestError as err:
            raise GatewayStartupError(f"unusable model repository: {err}") from err
        backend = create_backend(settings, manifest, root)
        try:
            ocr = create_ocr(settings)
            text_processor = TextProcessor(text_config_from_settings(settings))
            return cls(manifest, root, backend, ocr, text_processor)
        except ManifestError as err:
            backend.close()
            raise GatewayStartupError(f"unusable model repository: {err}") from err
        except TranslationError as err:
            backend.close()
            raise GatewayStartupError(f"unusable translator: {err}") from err
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
        if self.text_processor is not None:
            self.text_processor.close()

    def classify(
        self,
        image: Image.Image,
        text: str | None = None,
        *,
        cancelled: Callable[[], bool] | None = None,
    ) -> ClassifyResult:
        return self.classify_batch([image], [text], cancelled=cancelled)[0]

    def classify_batch(
        self,
        images: Sequence[Image.Image | None],
        texts: Sequence[str | None] | None = None,
        *,
        cancelled: Callable[[], bool] | None = None,
        members: Sequence[ModelEntry] | None = None,
    ) -> list[ClassifyResult]:
        """Classify several memes at once. A ``None`` text means: read it from the image (OCR).

        ``cancelled`` is polled before OCR and before inference; when it says True the work stops
        with :class:`ClassificationCancelled`. ``members``: the ensemble members to run (default:
        all); an image may be ``None`` when none of them reads pixels (``text_only_members``).
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
        members = list(members) if members is not None else self.members
        if not members:
            raise ValueError("no ensemble member to run")
        needs_image = any("pixel_values" in m.inputs for m in members)
        needs_text = any("input_ids" in m.inputs for m in members)
        if needs_image and any(image is None for image in images):
            raise ValueError("an image is missing, and a member that reads pixels was asked for")
        timer = StageTimer()
        start = time.perf_counter()

        resolved: list[str] = []
        sources: list[TextSource] = []
        for image, text in zip(images, texts):
            if text is None and image is None:
                resolved.append("")
                sources.append("request")
            elif text is None:
                with self._ocr_lock:
                    check()
                    with timer.stage("ocr"):
                        resolved.append(self.ocr.read(image))
                sources.append("ocr")
            else:
                resolved.append(text)
                sources.append("request")

        processed = None
        if self.text_processor is not None:
            with timer.stage("text"):
                processed = self.text_processor.process_many(resolved)
            resolved = [p.text for p in processed]

        tensors: dict[str, np.ndarray] = {}
        if needs_text:
            with timer.stage("tokenize"):
                tensors["input_ids"] = self.tokenizer(resolved)
        if needs_image:
            with timer.stage("preprocess"):
                tensors["pixel_values"] = images_to_batch(images, self.manifest.preprocessing)  # type: ignore[arg-type]

        check()
        probabilities: dict[str, dict[str, np.ndarray]] = {}  # member -> task -> [B, C]
        task_b_heads: dict[str, np.ndarray] = {}  # member -> [B, 4] P(present), direct Task B head
        for member in members:
            with timer.stage(f"inference.{member.name}"):
                outputs = self.backend.infer(member, tensors)
            probabilities[member.name] = {task.name: softmax(outputs[task.name]) for task in self.tasks}
            if member.task_b_output is not None and member.task_b_output in outputs:
                task_b_heads[member.name] = 0.5 * (
                    1.0 + np.tanh(0.5 * np.asarray(outputs[member.task_b_output], dtype=np.float64))
                )  # sigmoid
        timer.ms["inference"] = sum(timer.ms[f"inference.{m.name}"] for m in members)

        def voters(names: Sequence[str]) -> list[str]:  # the chosen voters among the members that ran
            return [n for n in names if n in probabilities] or list(probabilities)

        def presence(member: str, task: TaskEntry) -> np.ndarray:  # [B, 2] a member's Task B vote
            if member in task_b_heads:  # its direct Task B head, else P(intensity > 0)
                p = task_b_heads[member][:, list(self.manifest.task_b_names).index(task.name)]
                return np.stack([1.0 - p, p], axis=-1)
            return presence_probabilities(probabilities[member][task.name])

        ensemble = self.manifest.ensemble
        with timer.stage("vote"):  # each head by its own voters (the ensemble search's choice)
            voted = {
                task.name: majority_vote([probabilities[m][task.name] for m in voters(ensemble.members_for(task.name))])
                for task in self.tasks
            }
            mean_scores = {
                task.name: np.mean(
                    [probabilities[m][task.name] for m in voters(ensemble.members_for(task.name))], axis=0
                )
                for task in self.tasks
            }
            present = {  # Task B per Task C head: from the voted intensity, or voted directly
                task.name: voted[task.name] > 0
                if ensemble.task_b != "direct"
                else majority_vote([presence(m, task) for m in voters(ensemble.task_b_members_for(task.name))]) == 1
                for task in self.task_c
            }
        timer.ms["total"] = (time.perf_counter() - start) * 1000.0

        results = []
        for row in range(len(images)):
            predictions = {
                task.name: self._prediction(task, int(voted[task.name][row]), mean_scores[task.name][row])
                for task in self.tasks
            }
            task_b = {self.manifest.task_b_names[task.name]: bool(present[task.name][row]) for task in self.task_c}
            votes = {
                m.name: {
                    task.name: task.labels[int(np.argmax(probabilities[m.name][task.name][row]))] for task in self.tasks
                }
                for m in members
            }
            results.append(
                ClassifyResult(
                    resolved[row],
                    sources[row],
                    predictions,
                    task_b,
                    votes,
                    dict(timer.ms),
                    language=processed[row].language if processed is not None else None,
                    text_steps=processed[row].steps if processed is not None else [],
                )
            )
        return results

    @staticmethod
    def _prediction(task: TaskEntry, index: int, scores: np.ndarray) -> TaskPrediction:
        if len(scores) != len(task.labels):
            raise ValueError(f"head {task.name}: model gave {len(scores)} scores for {len(task.labels)} labels")
        return TaskPrediction(
            task=task.name,
            index=index,
            label=task.labels[index],
            code=task.codes[index],
            scores={label: float(score) for label, score in zip(task.labels, scores)},
        )
