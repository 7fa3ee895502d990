"""OSCAR's BERT WordPiece tokenizer, written as a ``tokenizers`` JSON file (what the gateway loads).

From a local BERT checkpoint directory (its vocab.txt / tokenizer.json, via transformers), or, for
the tiny random BERT, a WordPiece vocabulary trained on the training texts and the tag names.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, processors

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def bert_tokenizer(bert_dir: str | Path) -> Tokenizer:
    """The fast tokenizer of a local BERT checkpoint (no download: ``local_files_only``)."""
    from transformers import BertTokenizerFast

    path = Path(bert_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"BERT directory {path} does not exist (see README: OSCAR)")
    return BertTokenizerFast.from_pretrained(str(path), local_files_only=True).backend_tokenizer


def train_wordpiece(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A lower-casing BERT WordPiece tokenizer trained on ``texts`` (deterministic, offline)."""
    from tokenizers.implementations import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(
        list(texts), vocab_size=vocab_size, min_frequency=1, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    tokenizer: Tokenizer = wordpiece._tokenizer  # the underlying Tokenizer
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    # BERT's template (what BertTokenizerFast has): [CLS] A [SEP] B [SEP], B with token type 1.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tokenizer


def write_tokenizer(tokenizer: Tokenizer, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(path))
    return path
