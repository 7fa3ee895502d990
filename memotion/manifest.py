"""The model repository's manifest: the contract between training (writer) and gateway (reader).

`memotion export` writes ``<repository>/manifest.json``; the gateway reads only that file and the
files it names. Everything the gateway needs to turn an image and a text into Task A/B/C answers is
here: label order, image preprocessing, tokenizer, model files and their tensor names, ensemble.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memotion.voting import Stacker

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1

# CLIP's (OpenAI) image normalisation, the open_clip default.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskEntry(_Strict):
    name: str
    labels: tuple[str, ...]
    codes: tuple[str, ...]


class Preprocessing(_Strict):
    """Image preprocessing: resize shortest edge (bicubic), centre crop, scale to [0,1], normalise."""

    image_size: int = Field(gt=0)
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resize: Literal["shortest_edge_bicubic"] = "shortest_edge_bicubic"
    crop: Literal["center"] = "center"


class TokenizerEntry(_Strict):
    """CLIP byte-level BPE, stored as a HuggingFace ``tokenizers`` JSON file."""

    type: Literal["clip_bpe"] = "clip_bpe"
    file: str
    context_length: int = Field(gt=2)
    pad_id: int = 0


class WordPieceTokenizerEntry(_Strict):
    """OSCAR's text input: BERT WordPiece over (text, object tags) pairs, a ``tokenizers`` JSON file.

    ``[CLS] text [SEP] tags [SEP]``, token types 0 / 1, truncated longest-first and padded with
    [PAD] to ``max_length``; gives ``oscar_input_ids``, ``oscar_token_type_ids``,
    ``oscar_attention_mask`` (int64 [B, max_length]). See ``memotion/oscar_inputs.py``.
    """

    type: Literal["bert_wordpiece_pair"] = "bert_wordpiece_pair"
    file: str
    max_length: int = Field(gt=4)


class TextTokenizerEntry(_Strict):
    """A text member's own tokenizer (``bert_text``): BERT WordPiece over the text alone, a
    ``tokenizers`` JSON file. ``[CLS] text [SEP]`` truncated and padded with [PAD] to
    ``max_length``; gives ``bert_input_ids`` (int64 [B, max_length]). See
    ``memotion.tokenizer.WordPieceTokenizer``."""

    type: Literal["bert_wordpiece"] = "bert_wordpiece"
    file: str
    max_length: int = Field(gt=2)


class RegionDetectorEntry(_Strict):
    """A detector run before the model (OSCAR): one image -> its regions and object tags.

    ONNX ``file``: input ``image`` float32 [3, H, W], RGB in [0, 1], scaled (bilinear) so the
    shorter side is ``min_size`` unless the longer would pass ``max_size``, each side then rounded
    to a multiple of ``size_divisor`` (``memotion/oscar_inputs.py: detector_image``); outputs
    ``region_features`` [regions, feature_dim] float32 (detector feature + 6 box-geometry values),
    ``region_mask`` [regions] int64 (1: a detected box, 0: padding), ``region_labels`` [regions]
    int64 (indices into ``categories``). The tags are the names of the detected labels in order,
    ``__background__`` and ``N/A`` left out, joined by spaces.
    """

    file: str
    arch: str
    input: Literal["image"] = "image"
    outputs: tuple[str, ...] = ("region_features", "region_mask", "region_labels")
    min_size: int = Field(gt=0)
    max_size: int = Field(gt=0)
    size_divisor: int = Field(gt=0)
    regions: int = Field(gt=0)
    feature_dim: int = Field(gt=0)
    categories: tuple[str, ...]

    def served_model(self) -> StageModelEntry:
        """The detector as a model the backend runs; name and version from ``<name>/<version>/model.onnx``."""
        parts = Path(self.file).parts
        name = parts[0] if len(parts) == 3 else Path(self.file).stem
        version = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 1
        return StageModelEntry(
            name=name,
            kind="region_detector",
            version=version,
            file=self.file,
            inputs=(self.input,),
            outputs=self.outputs,
        )


class StageModelEntry(_Strict):
    """A network a model runs before itself (OSCAR's region detector), served by the backend like
    the models. One item per call: its tensors have no batch axis (Triton ``max_batch_size: 0``, no
    dynamic batching). Not written in the manifest: made from the stage's entry (``served_model``)."""

    name: str
    kind: Literal["region_detector"]
    version: int = Field(ge=1)
    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def served_outputs(self) -> list[str]:
        return list(self.outputs)

    def files(self) -> list[str]:
        return [self.file]


class QuantizationEntry(_Strict):
    """How a member's served graph was quantised and how far it is from its FP32 export.

    ``label_agreement``: per head, the fraction of ``memes`` where the quantised graph's argmax
    equals the FP32 graph's; ``inputs``: what they were (the run's validation memes, or sample
    inputs when those were not on the exporting machine)."""

    precision: Literal["int8", "bf16"]  # bf16: the FP32 graph, which OpenVINO serves in BF16 (int8-static)
    method: str
    inputs: str
    memes: int = Field(ge=1)
    label_agreement: dict[str, float]
    max_abs_logit_diff: float = Field(ge=0)
    # What the agreement was measured on, the engine the graph is made for: onnxruntime (dynamic
    # INT8), or openvino (static INT8 QDQ, ``--quantize int8-static``) with its precision hint for
    # the float ops, which the gateway's OpenVINO engine uses unless told otherwise.
    engine: Literal["onnxruntime", "openvino"] = "onnxruntime"
    precision_hint: Literal["f32", "bf16"] | None = None


class TokenTrimmingEntry(_Strict):
    """The model's ``input_ids`` have a dynamic token axis and may be cut to the batch's longest
    text (``memotion.tokenizer.trim_token_ids``): same logits as at the full context length.

    ``checked_lengths``: the token lengths the export ran the ONNX graph at; ``max_abs_logit_diff``:
    the largest difference there from PyTorch on the same texts padded to the context length."""

    input: Literal["input_ids"] = "input_ids"
    checked_lengths: tuple[int, ...]
    max_abs_logit_diff: float = Field(ge=0)


ModelInput = Literal[
    "input_ids",
    "pixel_values",
    "oscar_input_ids",
    "oscar_token_type_ids",
    "oscar_attention_mask",
    "region_features",
    "region_mask",
    "bert_input_ids",
    "text",
]
# The inputs a model's own pre-stages make (OSCAR): from ``text_tokenizer`` and from ``detector``.
WORDPIECE_INPUTS = ("oscar_input_ids", "oscar_token_type_ids", "oscar_attention_mask")
REGION_INPUTS = ("region_features", "region_mask")
# A text member's own tokenizer's ids (bert_text), and the raw text (tfidf_lr: string [B, 1]).
TEXT_TOKENIZER_INPUT = "bert_input_ids"
RAW_TEXT_INPUT = "text"


class ModelEntry(_Strict):
    """One exported model. ``inputs`` name the tensors it takes; ``outputs`` are logits per task.

    ``text_tokenizer`` and ``detector``: the stages a model with inputs of its own (OSCAR) needs
    before it runs; None for the CLIP models (they read ``input_ids`` / ``pixel_values``).
    """

    name: str
    kind: Literal[
        "clip_text",
        "clip_image",
        "clip_multi",
        "oscar",
        "fusion_concat",
        "fusion_sum",
        "fusion_product",
        "fusion_max",
        "fusion_attention",
        "fusion_gated",
        "fusion_bilinear",
        "fusion_factorised_bilinear",
        "gmu",
        "pmmo",
        "bert_text",
        "tfidf_lr",
    ]
    version: int = Field(ge=1)
    file: str
    inputs: tuple[ModelInput, ...]
    outputs: tuple[str, ...]
    output_kind: Literal["logits"] = "logits"
    validation: dict[str, float] = Field(default_factory=dict)
    backbone: dict[str, str | None] = Field(default_factory=dict)
    text_tokenizer: WordPieceTokenizerEntry | TextTokenizerEntry | None = None
    detector: RegionDetectorEntry | None = None
    # A model with a direct Task B head (BCE-trained) has one more graph output of this name:
    # [B, 4] logits (sigmoid) in task_b_names order. With ensemble.task_b "direct" it is that
    # member's Task B vote; None: the model has none (its vote comes from its Task C head).
    task_b_output: str | None = None
    # None: the FP32 export (equal to PyTorch within the export's parity tolerance).
    quantization: QuantizationEntry | None = None
    # None: input_ids at the tokenizer's full context length (repositories before issue 21).
    token_trimming: TokenTrimmingEntry | None = None

    @model_validator(mode="after")
    def _stages_present(self) -> ModelEntry:
        if set(self.inputs) & set(WORDPIECE_INPUTS) and not isinstance(self.text_tokenizer, WordPieceTokenizerEntry):
            raise ValueError(f"model {self.name}: inputs {self.inputs} need a bert_wordpiece_pair text_tokenizer")
        if TEXT_TOKENIZER_INPUT in self.inputs and not isinstance(self.text_tokenizer, TextTokenizerEntry):
            raise ValueError(f"model {self.name}: input {TEXT_TOKENIZER_INPUT} needs a bert_wordpiece text_tokenizer")
        if set(self.inputs) & set(REGION_INPUTS) and self.detector is None:
            raise ValueError(f"model {self.name}: inputs {self.inputs} need a detector entry")
        return self

    def served_outputs(self) -> list[str]:
        """The graph outputs the gateway reads: logits per task, and the direct Task B head if any."""
        return [*self.outputs, *([self.task_b_output] if self.task_b_output else [])]

    def input_dims(self, name: str) -> list[int] | None:
        """Per-item dims of an input this entry's own stages make (None for the CLIP inputs)."""
        if name in (*WORDPIECE_INPUTS, TEXT_TOKENIZER_INPUT) and self.text_tokenizer is not None:
            return [self.text_tokenizer.max_length]
        if name == RAW_TEXT_INPUT:
            return [1]
        if self.detector is not None and name == "region_features":
            return [self.detector.regions, self.detector.feature_dim]
        if self.detector is not None and name == "region_mask":
            return [self.detector.regions]
        return None

    def stage_models(self) -> list[StageModelEntry]:
        """The networks the backend runs for this model before it (OSCAR: its region detector)."""
        return [self.detector.served_model()] if self.detector is not None else []

    def files(self) -> list[str]:
        """Every repository file this model needs (ONNX graph, its stages' files)."""
        stages = [stage.file for stage in (self.text_tokenizer, self.detector) if stage is not None]
        return [self.file, *stages]


class OcrModelEntry(_Strict):
    """One OCR network, served like the classifiers: ONNX in the repository, run by the backend
    (in-process ONNX Runtime or Triton). ``inputs`` / ``outputs``: the graph's tensor names; the
    first axis of each is the batch axis. ``sha256`` and ``source``: where the graph came from."""

    name: str
    kind: Literal["ocr_detector", "ocr_recognizer"]
    version: int = Field(default=1, ge=1)
    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    source: str = ""
    sha256: str = ""

    def served_outputs(self) -> list[str]:
        return list(self.outputs)

    def files(self) -> list[str]:
        return [self.file]


class OcrEntry(_Strict):
    """OCR as served models: a text detector and a recogniser (``engine`` names their pre- and
    post-processing; the gateway's ``service/inference/ocr``).

    ``ppocr``: PaddleOCR's PP-OCR. Detector: BGR image scaled so its ``det_limit_type`` side
    ("min": shorter, "max": longer) is ``det_limit_side_len`` (sides rounded to multiples of 32),
    normalised with ``det_mean``/``det_std`` -> probability map [B, 1, H, W], boxes by DB
    post-processing (``det_thresh``, ``det_box_thresh``, ``det_unclip_ratio``). Recogniser: every
    box of a meme cropped, resized to height ``rec_height`` (width padded to the batch's widest,
    at least ``rec_min_width``, rounded up to ``rec_width_step``), all in one batch -> CTC
    probabilities [B, T, classes] over ``characters_file`` (one per line; blank first and space
    last are added by the decoder); lines below ``min_score`` are dropped.
    """

    engine: Literal["ppocr"] = "ppocr"
    detector: OcrModelEntry
    recognizer: OcrModelEntry
    characters_file: str
    # "max" 960: memes are read at their own size (scaled down only past 960 px); measured on real
    # memes (bench/ocr.py) faster than rapidocr's "min" 736 and more accurate than "min" 480.
    det_limit_side_len: int = Field(default=960, gt=0)
    det_limit_type: Literal["min", "max"] = "max"
    det_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    det_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    det_thresh: float = Field(default=0.3, gt=0, lt=1)
    det_box_thresh: float = Field(default=0.5, gt=0, lt=1)
    det_unclip_ratio: float = Field(default=1.6, gt=0)
    rec_height: int = Field(default=48, gt=0)
    rec_min_width: int = Field(default=320, gt=0)
    rec_width_step: int = Field(default=64, gt=0)
    rec_max_batch: int = Field(default=32, gt=0)
    min_score: float = Field(default=0.5, ge=0, le=1)

    def models(self) -> list[OcrModelEntry]:
        return [self.detector, self.recognizer]

    def files(self) -> list[str]:
        return [self.detector.file, self.recognizer.file, self.characters_file]


# Anything a backend runs: a classifier (ensemble member), a stage before one, or an OCR network.
ServedModel = ModelEntry | StageModelEntry | OcrModelEntry


class HeadCombination(NamedTuple):
    """memotion.voting.combine's arguments for one head, as the manifest says."""

    rule: str
    weights: list[float] | None
    offsets: tuple[float, ...] | None
    stacker: Stacker | None


class StackerEntry(_Strict):
    """A head's stacker (memotion.voting.Stacker): [C, voters * C] coefficients and C intercepts."""

    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]


class EnsembleEntry(_Strict):
    """Majority voting. ``members``: every model the gateway runs. ``task_members``: per head, the
    models that vote on it (found by the exhaustive search on validation; a head not listed: all
    members). Task B: ``from_task_c`` (present iff the voted intensity > 0, the paper) or ``direct``
    (per Task C head in ``task_b_members``, members vote present iff P(intensity > 0) > 1/2; a
    member with a ``task_b_output`` votes with its direct Task B head's probability instead)."""

    members: tuple[str, ...]
    method: Literal["majority_vote"] = "majority_vote"
    # Ties between labels with equally many votes: highest mean member probability, then lowest index.
    tie_break: Literal["mean_probability_then_lowest_index"] = "mean_probability_then_lowest_index"
    task_b: Literal["from_task_c", "direct"] = "from_task_c"
    task_members: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    task_b_members: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # How the subsets were chosen: "exhaustive" search on validation or "all" members; ties between
    # equally good subsets went to the fewest members, then the first in model order.
    selection: str = "all"
    subset_tie_break: Literal["fewest_members_then_model_order"] = "fewest_members_then_model_order"
    # What a user must know about the selection (a validation set too small to tell the members
    # apart: training/ensemble_evidence.py); printed by export, logged by the gateway at start-up.
    warnings: tuple[str, ...] = ()
    # Per head, how its voters are combined (absent: ``method``, majority vote): ``mean_probability``
    # is argmax of the voters' mean probability, weighted by ``task_weights[head]`` when given
    # (memotion/voting.py); the rule was chosen on validation by the F1 in ``objective``.
    task_rules: dict[str, Literal["majority_vote", "mean_probability", "stacked_lr"]] = Field(default_factory=dict)
    task_weights: dict[str, dict[str, float]] = Field(default_factory=dict)
    objective: Literal["weighted_f1", "macro_f1"] = "weighted_f1"
    # Decision calibration fitted on validation (training/calibration.py): per head, one offset per
    # class added to the log mean probability (or the stacker's logits) before the argmax; and for
    # ``stacked_lr`` heads the stacker: logits = coef @ [log p of each voter, in voter order] + intercept.
    task_offsets: dict[str, tuple[float, ...]] = Field(default_factory=dict)
    task_stackers: dict[str, StackerEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_name_voters(self) -> EnsembleEntry:
        for task, weights in self.task_weights.items():
            voters = self.members_for(task)
            if set(weights) != set(voters) or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                raise ValueError(f"ensemble: task_weights[{task!r}] must give each of {list(voters)} a weight >= 0")
        return self

    @model_validator(mode="after")
    def _calibration_fits_the_rules(self) -> EnsembleEntry:
        for task in {*self.task_rules, *self.task_stackers, *self.task_offsets}:
            rule = self.rule_for(task)
            if (rule == "stacked_lr") != (task in self.task_stackers):
                raise ValueError(f"ensemble: head {task!r} needs a stacker exactly when its rule is stacked_lr")
            if task in self.task_offsets and rule == "majority_vote":
                raise ValueError(f"ensemble: head {task!r} votes by majority and takes no task_offsets")
        for task, stacker in self.task_stackers.items():
            classes, width = len(stacker.intercept), len(self.members_for(task)) * len(stacker.intercept)
            if any(len(row) != width for row in stacker.coef) or len(stacker.coef) != classes:
                raise ValueError(f"ensemble: task_stackers[{task!r}].coef must be {classes} x {width}")
        return self

    def members_for(self, task: str) -> tuple[str, ...]:
        return self.task_members.get(task, self.members)

    def rule_for(self, task: str) -> str:
        return self.task_rules.get(task, self.method)

    def weights_for(self, task: str, voters: Sequence[str]) -> list[float] | None:
        """The weights of ``voters`` (the members that ran) for ``task``; None: equal."""
        weights = self.task_weights.get(task)
        if weights is None or not any(weights.get(v, 0.0) > 0 for v in voters):
            return None
        return [weights.get(v, 0.0) for v in voters]

    def combination_for(self, task: str, voters: Sequence[str]) -> HeadCombination:
        """How ``voters`` (the members that ran) are combined on ``task``: rule, weights, per-class
        offsets, stacker. A stacker needs every voter it was fitted on: when one did not run, the
        head falls back to the plain mean probability of those that did."""
        rule, stacker = self.rule_for(task), self.task_stackers.get(task)
        if rule == "stacked_lr" and list(voters) != list(self.members_for(task)):
            return HeadCombination("mean_probability", None, None, None)
        weights = self.weights_for(task, voters) if rule == "mean_probability" else None
        offsets = self.task_offsets.get(task)
        fitted = None if stacker is None else Stacker(stacker.coef, stacker.intercept)
        return HeadCombination(rule, weights, offsets, fitted)

    def task_b_members_for(self, head: str) -> tuple[str, ...]:
        return self.task_b_members.get(head, self.members_for(head))


class EvaluationEntry(_Strict):
    """How the served models were measured, so a moderation team can see it (``GET /v1/model-card``).

    ``scores``: measure (``macro_f1``: SemEval-2020 Task 8, ``weighted_f1``: Memotion 3) -> task
    (``task_a``, ``task_b``, ``task_c``, a Task C head, or a binary task such as ``sarcastic``) -> F1.
    ``model``: a model in ``models``, ``ensemble``, or another row of the experiment that measured it.
    """

    dataset: str
    split: str  # validation, test, ...
    model: str
    scores: dict[str, dict[str, float]]
    seeds: int = Field(default=1, ge=1)  # scores are the mean over this many training seeds
    memes: int | None = None
    note: str = ""


class Manifest(_Strict):
    schema_version: int = SCHEMA_VERSION
    repository_version: str
    created_at: str
    tasks: tuple[TaskEntry, ...]
    task_b_names: dict[str, str]
    preprocessing: Preprocessing
    tokenizer: TokenizerEntry
    models: tuple[ModelEntry, ...]
    ensemble: EnsembleEntry
    training: dict[str, object] = Field(default_factory=dict)
    notice: str = ""
    # OCR as served models (None: the gateway falls back to its own OCR, or none).
    ocr: OcrEntry | None = None
    # Quality numbers: what the models (or the experiment that chose them) scored, on which data.
    evaluation: tuple[EvaluationEntry, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model names in manifest: {names}")
        missing = [m for m in self.ensemble.members if m not in names]
        if missing:
            raise ValueError(f"ensemble members not among the models: {missing}")
        task_names = [t.name for t in self.tasks]
        for group, valid in (
            (self.ensemble.task_members, task_names),
            (self.ensemble.task_b_members, list(self.task_b_names)),
        ):
            for task, voters in group.items():
                if task not in valid or not voters or set(voters) - set(self.ensemble.members):
                    raise ValueError(
                        f"ensemble: {task!r} -> {list(voters)} must name a known head "
                        f"and a non-empty subset of the members"
                    )
        for model in self.models:
            if list(model.outputs) != task_names:
                raise ValueError(f"model {model.name}: outputs {model.outputs} != tasks {task_names}")
            if model.task_b_output is not None and model.task_b_output in task_names:
                raise ValueError(f"model {model.name}: task_b_output {model.task_b_output!r} is a task")
        for head in self.task_b_names:
            if head not in task_names:
                raise ValueError(f"task_b_names names unknown head {head!r}")
        ocr_names = [m.name for m in self.ocr.models()] if self.ocr else []
        clash = [name for name in ocr_names if name in names]
        if clash:
            raise ValueError(f"OCR models {clash} have the names of classifiers")
        clash = [stage.name for stage in self.stage_models() if stage.name in [*names, *ocr_names]]
        if clash:
            raise ValueError(f"stage models {clash} have the names of classifiers or OCR models")
        return self

    def model(self, name: str) -> ModelEntry:
        for entry in self.models:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def members(self) -> list[ModelEntry]:
        return [self.model(name) for name in self.ensemble.members]

    def stage_models(self, models: list[ModelEntry] | None = None) -> list[StageModelEntry]:
        """The stage networks of ``models`` (default: every model), each once."""
        stages: dict[str, StageModelEntry] = {}
        for model in models if models is not None else self.models:
            stages.update((stage.name, stage) for stage in model.stage_models())
        return list(stages.values())

    def served_models(self) -> list[ServedModel]:
        """Everything a Triton serving this repository loads: models, their stages, OCR networks."""
        return [*self.models, *self.stage_models(), *(self.ocr.models() if self.ocr is not None else [])]


class ManifestError(RuntimeError):
    """The repository has no usable manifest, or it names files that are not there."""


def load_manifest(repository: str | Path) -> Manifest:
    """Read and validate ``manifest.json``; check every file it names exists."""
    root = Path(repository)
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(
            f"no {MANIFEST_FILE} in model repository {root}; run `memotion export` (or `memotion demo`) to create one"
        )
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise ManifestError(f"{path}: invalid manifest: {err}") from err
    ocr_files = manifest.ocr.files() if manifest.ocr is not None else []
    for relative in [manifest.tokenizer.file, *(f for m in manifest.models for f in m.files()), *ocr_files]:
        if not (root / relative).is_file():
            raise ManifestError(f"{path} names {relative}, which is missing from {root}")
    return manifest


def write_manifest(manifest: Manifest, repository: str | Path) -> Path:
    path = Path(repository) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path
