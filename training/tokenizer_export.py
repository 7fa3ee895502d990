"""Write open_clip's CLIP BPE tokenizer as a HuggingFace ``tokenizers`` JSON file for the gateway.

The gateway (``memotion.tokenizer.ClipTokenizer``) then tokenises without torch or open_clip;
``tests/test_tokenizer_parity.py`` checks both give the same ids.
"""

from __future__ import annotations

from pathlib import Path

from open_clip.tokenizer import SimpleTokenizer
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

# open_clip's token pattern (tokenizer.py); its two special tokens are added as special tokens.
_CLIP_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def clip_tokenizer_json(simple: SimpleTokenizer) -> Tokenizer:
    """The same vocabulary, merges, normalisation and specials as ``simple``."""
    start, end = "<start_of_text>", "<end_of_text>"
    merges = sorted(simple.bpe_ranks, key=simple.bpe_ranks.get)
    bpe = models.BPE(
        vocab=dict(simple.encoder),
        merges=list(merges),
        end_of_word_suffix="</w>",
        continuing_subword_prefix="",
        unk_token=None,
        fuse_unk=False,
    )
    tokenizer = Tokenizer(bpe)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # open_clip matches these two literally in text too; so must we.
    tokenizer.add_special_tokens([start, end])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{start} $A {end}",
        special_tokens=[(start, simple.encoder[start]), (end, simple.encoder[end])],
    )
    return tokenizer


def write_clip_tokenizer(simple: SimpleTokenizer, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    clip_tokenizer_json(simple).save(str(path))
    return path
