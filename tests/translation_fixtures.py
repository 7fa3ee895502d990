"""A tiny real translation model for the offline translator's tests.

No Hindi<->English model ships in any package and nothing can be downloaded, so the test builds one
the way a user converts OPUS-MT: a Marian model (transformers) -> ``ctranslate2`` converter, with
SentencePiece models beside it. It is trained for a few seconds to memorise :data:`PAIRS` in both
directions (the source script tells the direction), so a correct pipeline gives exact answers and a
broken one (tokenisation, decoder start, detokenisation) does not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

PAIRS: tuple[tuple[str, str], ...] = (
    ("my friend is crazy", "मेरा दोस्त पागल है"),
    ("this is rubbish", "यह बकवास है"),
    ("work hard", "मेहनत करो"),
    ("never give up", "हार मत मानो"),
    ("very good", "बहुत बढ़िया"),
    ("what a thing", "क्या बात है"),
    ("i love this", "मुझे यह पसंद है"),
    ("best day ever", "सबसे अच्छा दिन"),
)


def build_tiny_translation_model(out_dir: Path, steps: int = 300, seed: int = 0) -> Path:
    """Write ``out_dir/en-hi`` and ``out_dir/hi-en`` (the same bidirectional model) and return ``out_dir``."""
    import sentencepiece as spm
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    work = out_dir.parent / (out_dir.name + "-build")
    hf_dir = work / "marian"
    hf_dir.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(text for pair in PAIRS for text in pair) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(work / "spm"),
        vocab_size=80,
        character_coverage=1.0,
        model_type="unigram",
        eos_id=0,
        unk_id=1,
        bos_id=-1,
        pad_id=-1,
        unk_piece="<unk>",
        eos_piece="</s>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    pieces = spm.SentencePieceProcessor(model_file=str(work / "spm.model"))
    vocab = {pieces.id_to_piece(i): i for i in range(pieces.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    for name in ("source.spm", "target.spm"):
        shutil.copy(work / "spm.model", hf_dir / name)
    (hf_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = MarianTokenizer(str(hf_dir / "source.spm"), str(hf_dir / "target.spm"), str(hf_dir / "vocab.json"))
    tokenizer.save_pretrained(hf_dir)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        # Marian decoders start from a zero embedding (CTranslate2: start_from_zero_embedding): start
        # from <pad> and keep its row at zero (the output projection shares it, so it gets gradients).
        pad = vocab["<pad>"]
        config = MarianConfig(
            vocab_size=len(vocab),
            d_model=64,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
            max_position_embeddings=64,
            pad_token_id=pad,
            eos_token_id=0,
            decoder_start_token_id=pad,
            forced_eos_token_id=0,
            share_encoder_decoder_embeddings=True,
            scale_embedding=True,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
        )
        model = MarianMTModel(config)
        sources = [en for en, _ in PAIRS] + [hi for _, hi in PAIRS]
        targets = [hi for _, hi in PAIRS] + [en for en, _ in PAIRS]
        batch = tokenizer(sources, text_target=targets, padding=True, return_tensors="pt")
        labels = batch["labels"].masked_fill(batch["labels"] == pad, -100)
        embeddings = model.get_input_embeddings().weight
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(steps):
            loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                embeddings[pad].zero_()
        model.save_pretrained(hf_dir)
    finally:
        torch.set_num_threads(threads)

    first = out_dir / "en-hi"
    TransformersConverter(str(hf_dir)).convert(str(first), force=True)
    for name in ("source.spm", "target.spm"):
        shutil.copy(hf_dir / name, first / name)
    shutil.copytree(first, out_dir / "hi-en", dirs_exist_ok=True)
    return out_dir


@pytest.fixture(scope="session")
def translation_model_dir(tmp_path_factory) -> Path:
    """A CTranslate2 model folder (``en-hi/``, ``hi-en/``) that knows :data:`PAIRS`."""
    return build_tiny_translation_model(tmp_path_factory.mktemp("translation") / "models")
