"""``bert_text`` as a registered model kind: build, prepare (encoder checked and loaded, WordPiece
ids per split) and export (ONNX + its tokenizer into the repository).

The kind's run directory (``<run>/bert_text/``) holds, besides what the trainer writes:
    tokenizer.json    the encoder's WordPiece tokenizer (``tokenizers`` JSON), what the gateway runs
    text_encoder.json the encoder folder, its weights' SHA-256 and the max length
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from typing import TYPE_CHECKING

from memotion.labels import ALL_TASKS

if TYPE_CHECKING:
    from torch import nn

    from memotion.manifest import ModelEntry
    from training.factory import KindData, KindExport, ModelConfig, PreparedKind

INPUT = "bert_input_ids"
INPUTS = (INPUT,)
TOKENIZER_FILE = "tokenizer.json"
SETTINGS_FILE = "text_encoder.json"


def build_bert_text(clip_name: str, config: ModelConfig, pretrained: str | None) -> nn.Module:
    """A random-initialised model of ``config.text_encoder`` (``load_checkpoint`` loads the weights)."""
    from transformers import BertConfig, BertModel

    from training.pretrained_text.model import BertTextClassifier

    arch = config.text_encoder
    if arch is None:
        raise ValueError(
            "a bert_text model needs ModelConfig.text_encoder; `memotion train --models bert_text` sets it"
        )
    bert = BertModel(BertConfig(**arch["bert_config"]), add_pooling_layer=False)
    return BertTextClassifier(bert, config.lstm_hidden, config.head_hidden, config.dropout, arch["pad_id"])


def prepare_bert_text(data: KindData) -> PreparedKind:
    """Check and load the encoder, write its tokenizer, add WordPiece ids to each split, make the model."""
    import torch

    from memotion.tokenizer import WordPieceTokenizer
    from training.factory import PreparedKind
    from training.oscar.tokenizer import bert_tokenizer, write_tokenizer
    from training.pretrained_text.config import TextEncoderConfig
    from training.pretrained_text.encoder import checked_weights, encoder_folder, load_encoder
    from training.pretrained_text.model import BertTextClassifier

    options: TextEncoderConfig = getattr(data.recipe, "text_encoder", None) or TextEncoderConfig()
    folder, known = encoder_folder(options.encoder)
    expected = options.sha256 or known
    digest = checked_weights(folder, expected)
    bert = load_encoder(folder, expected)
    data.out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = WordPieceTokenizer(
        write_tokenizer(bert_tokenizer(folder), data.out_dir / TOKENIZER_FILE), options.max_length
    )
    tensors = {
        split: data.tensors[split].with_extras({INPUT: torch.from_numpy(tokenizer([r.text for r in records]))})
        for split, records in data.records.items()
    }
    arch = {"bert_config": bert.config.to_dict(), "max_length": options.max_length, "pad_id": tokenizer.pad_id}
    model_config = replace(data.recipe.model, text_encoder=arch)
    model = BertTextClassifier(
        bert, model_config.lstm_hidden, model_config.head_hidden, model_config.dropout, tokenizer.pad_id
    )
    model.encoder.freeze_below(options.trainable_layers)
    model.encoder_lr = options.encoder_lr
    settings = {"encoder": str(folder), "sha256": digest, "max_length": options.max_length}
    (data.out_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    data.log(f"[bert_text] encoder {folder} (SHA-256 {digest[:12]}... checked), {options.max_length} tokens")
    return PreparedKind(model, model_config, tensors)


def export_bert_text(job: KindExport) -> ModelEntry:
    """The model as ONNX (checked against PyTorch on the exported tokenizer's ids) and its tokenizer."""
    from memotion.manifest import ModelEntry, TextTokenizerEntry
    from memotion.tokenizer import WordPieceTokenizer
    from training.export import SAMPLE_TEXTS, export_checked

    kind_dir = job.run_dir / job.kind
    settings = json.loads((kind_dir / SETTINGS_FILE).read_text())
    tokenizer_file = f"tokenizer/{job.kind}.json"
    (job.repository / tokenizer_file).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kind_dir / TOKENIZER_FILE, job.repository / tokenizer_file)
    tokenizer = WordPieceTokenizer(job.repository / tokenizer_file, settings["max_length"])
    inputs = {INPUT: tokenizer([*SAMPLE_TEXTS, "a much longer caption " * 20])}
    model_file = f"{job.kind}/{job.version}/model.onnx"
    error = export_checked(job.model, inputs, job.repository / model_file, job.kind)
    job.log(f"exported {job.kind} -> {model_file} + {tokenizer_file} (ONNX Runtime vs PyTorch max |diff| {error:.1e})")
    return ModelEntry(
        name=job.kind,
        kind="bert_text",
        version=job.version,
        file=model_file,
        inputs=INPUTS,
        outputs=tuple(t.name for t in ALL_TASKS),
        validation=job.validation,
        backbone={"text_encoder": settings["encoder"], "text_encoder_sha256": settings["sha256"]},
        text_tokenizer=TextTokenizerEntry(file=tokenizer_file, max_length=settings["max_length"]),
    )
