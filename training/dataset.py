"""Memotion records -> tensors (token ids, pixels, targets), precomputed once per split.

Images go through ``memotion.preprocess``, the same code the gateway runs, so training and serving
see identical pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from memotion.data_format import MemeRecord
from memotion.labels import ALL_TASKS
from memotion.manifest import Preprocessing
from memotion.preprocess import image_to_array
from memotion.progress import progress_bar

Tokenize = Callable[[Sequence[str]], torch.Tensor]


@dataclass
class MemeTensors:
    input_ids: torch.Tensor  # [N, L] int64
    pixel_values: torch.Tensor  # [N, 3, S, S] float32
    targets: torch.Tensor  # [N, len(ALL_TASKS)] int64, columns in ALL_TASKS order
    # Inputs of kinds that need more than the CLIP tensors, by input name, one row per meme
    # (OSCAR: BERT ids of text + tags, detector regions; see ModelKind.prepare in training/factory.py).
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, index: torch.Tensor) -> MemeTensors:
        return MemeTensors(
            self.input_ids[index],
            self.pixel_values[index],
            self.targets[index],
            {name: tensor[index] for name, tensor in self.extras.items()},
        )

    def with_extras(self, extras: dict[str, torch.Tensor]) -> MemeTensors:
        """The same memes with more named inputs (each with one row per meme)."""
        wrong = {name: tuple(t.shape) for name, t in extras.items() if t.shape[0] != len(self)}
        if wrong:
            raise ValueError(f"extra inputs {wrong} do not have {len(self)} rows")
        return MemeTensors(self.input_ids, self.pixel_values, self.targets, {**self.extras, **extras})

    def target_columns(self) -> dict[str, np.ndarray]:
        return {t.name: self.targets[:, i].numpy() for i, t in enumerate(ALL_TASKS)}


def build_tensors(
    records: Sequence[MemeRecord],
    tokenize: Tokenize,
    preprocessing: Preprocessing,
    progress: bool = False,
    desc: str = "preprocess",
) -> MemeTensors:
    pixels = np.zeros((len(records), 3, preprocessing.image_size, preprocessing.image_size), np.float32)
    for row, record in enumerate(progress_bar(records, desc=desc, disable=not progress, leave=False)):
        with Image.open(record.image_path) as image:
            pixels[row] = image_to_array(image, preprocessing)
    labels = [record.labels() for record in records]
    targets = torch.tensor([[lab[t.name] for t in ALL_TASKS] for lab in labels], dtype=torch.int64)
    return MemeTensors(
        input_ids=tokenize([record.text for record in records]).to(torch.int64),
        pixel_values=torch.from_numpy(pixels),
        targets=targets.reshape(len(records), len(ALL_TASKS)),
    )


def class_counts(tensors: MemeTensors) -> list[list[int]]:
    """Training-set class frequencies per task (for focal-loss alpha)."""
    return [torch.bincount(tensors.targets[:, i], minlength=t.num_classes).tolist() for i, t in enumerate(ALL_TASKS)]
