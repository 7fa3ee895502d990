"""The model repository's manifest: the contract between training (writer) and gateway (reader).

`memotion export` writes ``<repository>/manifest.json``; the gateway reads only that file and the
files it names. Everything the gateway needs to turn an image and a text into Task A/B/C answers is
here: label order, image preprocessing, tokenizer, model files and their tensor names, ensemble.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class ModelEntry(_Strict):
    """One exported model. ``inputs`` name the tensors it takes; ``outputs`` are logits per task."""

    name: str
    kind: Literal["clip_text", "clip_image", "clip_multi"]
    version: int = Field(ge=1)
    file: str
    inputs: tuple[Literal["input_ids", "pixel_values"], ...]
    outputs: tuple[str, ...]
    output_kind: Literal["logits"] = "logits"
    validation: dict[str, float] = Field(default_factory=dict)
    backbone: dict[str, str | None] = Field(default_factory=dict)


class EnsembleEntry(_Strict):
    members: tuple[str, ...]
    method: Literal["majority_vote"] = "majority_vote"
    # Ties between labels with equally many votes: highest mean member probability, then lowest index.
    tie_break: Literal["mean_probability_then_lowest_index"] = "mean_probability_then_lowest_index"
    task_b: Literal["from_task_c"] = "from_task_c"


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

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model names in manifest: {names}")
        missing = [m for m in self.ensemble.members if m not in names]
        if missing:
            raise ValueError(f"ensemble members not among the models: {missing}")
        task_names = [t.name for t in self.tasks]
        for model in self.models:
            if list(model.outputs) != task_names:
                raise ValueError(f"model {model.name}: outputs {model.outputs} != tasks {task_names}")
        for head in self.task_b_names:
            if head not in task_names:
                raise ValueError(f"task_b_names names unknown head {head!r}")
        return self

    def model(self, name: str) -> ModelEntry:
        for entry in self.models:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def members(self) -> list[ModelEntry]:
        return [self.model(name) for name in self.ensemble.members]


class ManifestError(RuntimeError):
    """The repository has no usable manifest, or it names files that are not there."""


def load_manifest(repository: str | Path) -> Manifest:
    """Read and validate ``manifest.json``; check every file it names exists."""
    root = Path(repository)
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(
            f"no {MANIFEST_FILE} in model repository {root}; run `memotion export` "
            f"(or `memotion demo`) to create one"
        )
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise ManifestError(f"{path}: invalid manifest: {err}") from err
    for relative in [manifest.tokenizer.file, *(m.file for m in manifest.models)]:
        if not (root / relative).is_file():
            raise ManifestError(f"{path} names {relative}, which is missing from {root}")
    return manifest


def write_manifest(manifest: Manifest, repository: str | Path) -> Path:
    path = Path(repository) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path
