"""Image + text -> Task A/B/C answers: OCR, tokenize, preprocess, run each member, vote.

Everything about labels, tensors and models comes from the manifest; the backend is any
:class:`~service.inference.backends.base.InferenceBackend`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from memotion.manifest import (
    RAW_TEXT_INPUT,
    TEXT_TOKENIZER_INPUT,
    Manifest,
    ManifestError,
    ModelEntry,
    ServedModel,
    TaskEntry,
    TextTokenizerEntry,
    WordPieceTokenizerEntry,
    load_manifest,
)
from memotion.preprocess import images_to_batch
from memotion.raw_text import raw_text_feed
from memotion.tokenizer import ClipTokenizer, WordPieceTokenizer
from memotion.voting import combine, majority_vote, presence_probabilities
from service.core.errors import GatewayStartupError
from service.core.settings import GatewaySettings
from service.inference.backends import InferenceBackend, create_backend
from service.inference.batching import BatchingBackend, BatchObserver
from service.inference.imaging import scaled_for_ocr
from service.inference.ocr import OcrEngine, create_ocr, repository_ocr_models
from service.inference.oscar import OscarStages
from service.inference.request_batching import RequestBatcher, request_batching_policy
from service.text.processing import ProcessedText, TextProcessor, TextStep, text_config_from_settings
from service.text.translation import TranslationError
from service.text.unicode_gate import repaired

TextSource = Literal["ocr", "request"]

logger = logging.getLogger("memotion.gateway")


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


@dataclass
class MemberOutputs:
    """What the members said: class probabilities per head, and direct Task B heads' P(present)."""

    probabilities: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # member -> task -> [B, C]
    task_b_heads: dict[str, np.ndarray] = field(default_factory=dict)  # member -> [B, 4] P(present)

    def voters(self, names: Sequence[str]) -> list[str]:
        """The chosen voters among the members that ran (all that ran when none of them did)."""
        return [n for n in names if n in self.probabilities] or list(self.probabilities)

    def presence(self, member: str, task: str, task_b_names: dict[str, str]) -> np.ndarray:
        """[B, 2] a member's Task B vote for ``task``: its direct Task B head, else P(intensity > 0)."""
        if member in self.task_b_heads:
            p = self.task_b_heads[member][:, list(task_b_names).index(task)]
            return np.stack([1.0 - p, p], axis=-1)
        return presence_probabilities(self.probabilities[member][task])


@dataclass(frozen=True)
class Votes:
    """The ensemble's answer per head for a batch: voted index, mean member scores, Task B presence."""

    voted: dict[str, np.ndarray]  # task -> [B] label index
    mean_scores: dict[str, np.ndarray]  # task -> [B, C]
    present: dict[str, np.ndarray]  # Task C head -> [B] bool


def reads_image(member: ModelEntry) -> bool:
    """True for a member that needs the meme's image: pixels, or regions from its own detector."""
    return "pixel_values" in member.inputs or member.detector is not None


def _row_timings(chunk_ms: dict[str, float], ocr_ms: float | None) -> dict[str, float]:
    """One meme's timings: the chunk's stages, with its own OCR time (none when its text was sent)."""
    timings = {name: ms for name, ms in chunk_ms.items() if name != "ocr"}
    if ocr_ms is not None:
        timings["ocr"] = ocr_ms
    return timings


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
        self.ocr_max_side = 1280  # OCR reads a copy scaled down to this longest side (MEMOTION_OCR_MAX_SIDE)
        self.request_batcher: RequestBatcher[ClassifyResult] | None = None  # from_settings, when batching
        self.ocr_warmup = False  # warm_up runs OCR's own warm-up too (MEMOTION_OCR_WARMUP)
        self.members = manifest.members()
        # Members with stages of their own before the model (OSCAR: a region detector run by the
        # backend, a BERT pair tokenizer): service/inference/oscar.py makes their inputs.
        self.stages = {
            m.name: OscarStages(m, self.repository_root, backend)
            for m in self.members
            if m.detector is not None or isinstance(m.text_tokenizer, WordPieceTokenizerEntry)
        }
        # Text members with a tokenizer of their own (bert_text): WordPiece ids per member.
        self.text_tokenizers = text_tokenizers(self.members, self.repository_root)
        # Members that read only the text: what a request without an image is classified with.
        self.text_only_members = [m for m in self.members if not reads_image(m)]
        # An engine that is not thread-safe (EasyOCR) runs one image at a time; waiting here (not
        # inside the engine) lets a request that timed out meanwhile skip its OCR instead of running
        # it for nobody. The repository's OCR models (ppocr) run concurrently: no lock.
        self._ocr_lock = None if getattr(ocr, "thread_safe", False) else threading.Lock()
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
        backend = create_backend(settings, manifest, root, gateway_models(settings, manifest))
        try:
            ocr = create_ocr(settings, manifest, backend, root)
            text_processor = TextProcessor(text_config_from_settings(settings))
            classifier = cls(manifest, root, backend, ocr, text_processor)
            classifier.ocr_max_side = settings.ocr_max_side
            classifier.ocr_warmup = ocr_warmup_wanted(settings)
            classifier.request_batcher = request_batcher_for(classifier, backend)
            return classifier
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
        warm_up_ocr = getattr(self.ocr, "warm_up", None)
        if self.ocr_warmup and warm_up_ocr is not None:
            started = time.perf_counter()
            shapes = warm_up_ocr()
            logger.info("OCR warmed up at %d input shapes in %.2f s", shapes, time.perf_counter() - started)

    def close(self) -> None:
        if self.request_batcher is not None:
            self.request_batcher.close()
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
        """One meme; with a text and request batching on, run together with concurrent ones."""
        if text is not None and self.request_batcher is not None:
            return self.request_batcher.classify(image, text, cancelled)
        return self.classify_batch([image], [text], cancelled=cancelled)[0]

    def set_batch_observer(self, observer: BatchObserver | None) -> None:
        """Where the dynamic batchers (per model, and per request) report their batches."""
        if isinstance(self.backend, BatchingBackend):
            self.backend.set_observer(observer)
        if self.request_batcher is not None:
            self.request_batcher.observer = observer

    def classify_batch(
        self,
        images: Sequence[Image.Image | None],
        texts: Sequence[str | None] | None = None,
        *,
        cancelled: Callable[[], bool] | None = None,
        members: Sequence[ModelEntry] | None = None,
    ) -> list[ClassifyResult]:
        """Classify several memes at once. A ``None`` text means: read it from the image (OCR).

        ``cancelled`` is polled between stages (before each OCR, after the text path, before each
        member's inference); when it says True the work stops with :class:`ClassificationCancelled`
        (the stage running at that moment finishes first). ``members``: the ensemble members to run (default:
        all); an image may be ``None`` when none of them reads it (``text_only_members``).
        """

        def check() -> None:
            if cancelled is not None and cancelled():
                raise ClassificationCancelled()

        texts = self._checked_texts(images, texts)
        if not images:
            return []
        chosen = self._chosen_members(images, members)
        timer = StageTimer()
        start = time.perf_counter()
        resolved, sources, ocr_ms = self._resolve_texts(images, texts, timer, check)
        processed = self._process_texts(resolved, timer, check)
        if processed is not None:
            resolved = [p.text for p in processed]
        check()
        staged = self._staged_inputs(images, resolved, chosen, timer, check)  # OSCAR's own inputs
        outputs = self._run_members(chosen, self._input_tensors(images, resolved, chosen, timer), timer, check, staged)
        with timer.stage("vote"):
            votes = self._vote(outputs)
        timer.ms["total"] = (time.perf_counter() - start) * 1000.0
        return [
            ClassifyResult(
                resolved[row],
                sources[row],
                *self._row_answers(row, outputs, votes, chosen),
                _row_timings(timer.ms, ocr_ms[row]),
                language=processed[row].language if processed is not None else None,
                text_steps=processed[row].steps if processed is not None else [],
            )
            for row in range(len(images))
        ]

    @staticmethod
    def _checked_texts(images: Sequence[Image.Image | None], texts: Sequence[str | None] | None) -> list[str | None]:
        """One text (or None: read by OCR) per image."""
        if texts is None:
            return [None] * len(images)
        if len(texts) != len(images):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        return list(texts)

    def _process_texts(
        self, texts: list[str], timer: StageTimer, check: Callable[[], None]
    ) -> list[ProcessedText] | None:
        """The text path (cleaning, language, translation...) over the texts; None when it is off."""
        if self.text_processor is None:
            return None
        check()
        with timer.stage("text"):
            return self.text_processor.process_many(texts)

    def _chosen_members(
        self, images: Sequence[Image.Image | None], members: Sequence[ModelEntry] | None
    ) -> list[ModelEntry]:
        """The members to run (default: all); ValueError if none, or if one needs an image that is missing."""
        chosen = list(members) if members is not None else self.members
        if not chosen:
            raise ValueError("no ensemble member to run")
        needs_image = any(reads_image(m) for m in chosen)
        if needs_image and any(image is None for image in images):
            raise ValueError("an image is missing, and a member that reads the image was asked for")
        return chosen

    def _resolve_texts(
        self,
        images: Sequence[Image.Image | None],
        texts: Sequence[str | None],
        timer: StageTimer,
        check: Callable[[], None],
    ) -> tuple[list[str], list[TextSource], list[float | None]]:
        """Each meme's text, where it came from (the request's, or OCR of a bounded copy of its image,
        one at a time) and its own OCR milliseconds (None: no OCR)."""
        resolved: list[str] = []
        sources: list[TextSource] = []
        ocr_ms: list[float | None] = []
        for image, text in zip(images, texts):
            ocr_ms.append(None)
            if text is not None:
                resolved.append(text)
                sources.append("request")
            elif image is None:
                resolved.append("")
                sources.append("request")
            else:
                with self._ocr_lock or nullcontext():
                    check()
                    started = time.perf_counter()
                    with timer.stage("ocr"):
                        # the text gate's rule for text nobody can resend: U+FFFD for a lone surrogate
                        resolved.append(repaired(self.ocr.read(scaled_for_ocr(image, self.ocr_max_side))))
                    ocr_ms[-1] = (time.perf_counter() - started) * 1000.0
                sources.append("ocr")
        return resolved, sources, ocr_ms

    def _input_tensors(
        self,
        images: Sequence[Image.Image | None],
        texts: list[str],
        members: Sequence[ModelEntry],
        timer: StageTimer,
    ) -> dict[str, np.ndarray]:
        """``input_ids`` and ``pixel_values``, each only when one of ``members`` reads it."""
        tensors: dict[str, np.ndarray] = {}
        if any("input_ids" in m.inputs for m in members):
            with timer.stage("tokenize"):
                tensors["input_ids"] = self.tokenizer(texts)
        if any(RAW_TEXT_INPUT in m.inputs for m in members):  # tfidf_lr: the text itself, [B, 1]
            tensors[RAW_TEXT_INPUT] = raw_text_feed(texts)
        if any("pixel_values" in m.inputs for m in members):
            present = [image for image in images if image is not None]  # all of them (_chosen_members)
            with timer.stage("preprocess"):
                tensors["pixel_values"] = images_to_batch(present, self.manifest.preprocessing)
        return tensors

    def _staged_inputs(
        self,
        images: Sequence[Image.Image | None],
        texts: list[str],
        members: Sequence[ModelEntry],
        timer: StageTimer,
        check: Callable[[], None],
    ) -> dict[str, dict[str, np.ndarray]]:
        """Per member with stages of its own (OSCAR): its inputs. Its detector runs once per image
        (one backend call each, shared by members with the same detector), then its tokenizer."""
        staged: dict[str, dict[str, np.ndarray]] = {}
        regions: dict[str, list] = {}  # detector name -> each image's regions
        for member in members:
            tokenizer = self.text_tokenizers.get(member.name)
            if tokenizer is not None:
                with timer.stage("tokenize"):
                    staged[member.name] = {TEXT_TOKENIZER_INPUT: tokenizer(texts)}
            stages = self.stages.get(member.name)
            if stages is None:
                continue
            if stages.detector.name not in regions:
                found = regions[stages.detector.name] = []
                for image in images:  # all present: _chosen_members checked
                    check()
                    with timer.stage("regions"):
                        found.append(stages.regions(image))  # type: ignore[arg-type]
            with timer.stage("tokenize"):
                staged[member.name] = stages.feeds(texts, regions[stages.detector.name])
        return staged

    def _run_members(
        self,
        members: Sequence[ModelEntry],
        tensors: dict[str, np.ndarray],
        timer: StageTimer,
        check: Callable[[], None] = lambda: None,
        staged: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> MemberOutputs:
        """Each member's class probabilities per head, and its direct Task B head's P(present) if any.
        ``staged``: the inputs of members with stages of their own, by member name."""
        outputs = MemberOutputs()
        for member in members:
            check()  # a timed-out request stops between members
            own = (staged or {}).get(member.name)
            with timer.stage(f"inference.{member.name}"):
                raw = self.backend.infer(member, {**tensors, **own} if own else tensors)
            outputs.probabilities[member.name] = {task.name: softmax(raw[task.name]) for task in self.tasks}
            if member.task_b_output is not None and member.task_b_output in raw:
                logits = np.asarray(raw[member.task_b_output], dtype=np.float64)
                outputs.task_b_heads[member.name] = 0.5 * (1.0 + np.tanh(0.5 * logits))  # sigmoid
        timer.ms["inference"] = sum(timer.ms[f"inference.{m.name}"] for m in members)
        return outputs

    def _vote(self, outputs: MemberOutputs) -> Votes:
        """Each head voted by its own voters (the ensemble search's choice), and Task B per Task C head."""
        ensemble = self.manifest.ensemble
        probabilities = outputs.probabilities
        voted, mean_scores = {}, {}
        for task in self.tasks:  # each head by its own rule (majority vote or weighted mean probability)
            voters = outputs.voters(ensemble.members_for(task.name))
            member_probabilities = [probabilities[m][task.name] for m in voters]
            how = ensemble.combination_for(task.name, voters)
            voted[task.name] = combine(how.rule, member_probabilities, how.weights, how.offsets, how.stacker)
            mean_scores[task.name] = np.average(member_probabilities, axis=0, weights=how.weights)
        present = {  # Task B per Task C head: from the voted intensity, or voted directly
            task.name: voted[task.name] > 0
            if ensemble.task_b != "direct"
            else majority_vote(
                [
                    outputs.presence(m, task.name, self.manifest.task_b_names)
                    for m in outputs.voters(ensemble.task_b_members_for(task.name))
                ]
            )
            == 1
            for task in self.task_c
        }
        return Votes(voted, mean_scores, present)

    def _row_answers(
        self, row: int, outputs: MemberOutputs, votes: Votes, members: Sequence[ModelEntry]
    ) -> tuple[dict[str, TaskPrediction], dict[str, bool], dict[str, dict[str, str]]]:
        """One meme's predictions per head, its Task B, and each member's own vote per head."""
        predictions = {
            task.name: self._prediction(task, int(votes.voted[task.name][row]), votes.mean_scores[task.name][row])
            for task in self.tasks
        }
        task_b = {self.manifest.task_b_names[task.name]: bool(votes.present[task.name][row]) for task in self.task_c}
        member_votes = {
            m.name: {
                task.name: task.labels[int(np.argmax(outputs.probabilities[m.name][task.name][row]))]
                for task in self.tasks
            }
            for m in members
        }
        return predictions, task_b, member_votes

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


def text_tokenizers(members: Sequence[ModelEntry], root: Path) -> dict[str, WordPieceTokenizer]:
    """The WordPiece tokenizer of each member with one of its own (``bert_text``), by member name."""
    tokenizers = {}
    for member in members:
        entry = member.text_tokenizer
        if isinstance(entry, TextTokenizerEntry):
            try:
                tokenizers[member.name] = WordPieceTokenizer(root / entry.file, entry.max_length)
            except Exception as err:
                raise ManifestError(f"{root / entry.file}: not a usable WordPiece tokenizer: {err}") from err
    return tokenizers


def gateway_models(settings: GatewaySettings, manifest: Manifest) -> list[ServedModel]:
    """What the gateway's backend serves: the ensemble members, their stage models (OSCAR's
    detector) and, when OCR runs on them, the repository's OCR models."""
    members = manifest.members()
    return [*members, *manifest.stage_models(members), *repository_ocr_models(settings, manifest)]


def ocr_warmup_wanted(settings: GatewaySettings) -> bool:
    """MEMOTION_OCR_WARMUP: on, off, or auto (on for the embedded OpenVINO engine)."""
    if settings.ocr_warmup != "auto":
        return settings.ocr_warmup == "on"
    return settings.backend != "triton" and settings.engine == "openvino"


def request_batcher_for(classifier: MemeClassifier, backend: InferenceBackend) -> RequestBatcher[ClassifyResult] | None:
    """Request-level batching on the embedded backend when it batches (MEMOTION_BATCHING) and every
    member is batched; its settings are the members' own (config.pbtxt)."""
    if not isinstance(backend, BatchingBackend):
        return None
    policy = request_batching_policy(backend.policies, [m.name for m in classifier.members])
    if policy is None:
        return None
    return RequestBatcher(classifier.classify_batch, policy, ClassificationCancelled)
