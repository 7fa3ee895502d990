"""Image fingerprints for the review queue: SHA-256 of the bytes (the same file) and a 64-bit
difference hash (the same picture re-encoded, resized or under other text), and a small thumbnail."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

HASH_SIDE = 8  # 8 x 8 = 64 bits
THUMBNAIL_SIDE = 256
CAPTION_BAND = 0.2  # share of the height at the top and at the bottom left out of the picture hash


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dhash(image: Image.Image, caption_band: float = CAPTION_BAND) -> int:
    """64-bit dHash of the picture: grey, 9 x 8 pixels, one bit per horizontally adjacent pair (left
    brighter than right), of the image without its top and bottom ``caption_band`` (where memes print
    their captions: the same picture under other text keeps its hash).

    As a signed 64-bit integer, so that it fits a BIGINT column.
    """
    width, height = image.size
    band = int(height * caption_band)
    if height - 2 * band >= HASH_SIDE:
        image = image.crop((0, band, width, height - band))
    small = image.convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.LANCZOS)
    grey = np.asarray(small, dtype=np.int16)
    bits = (grey[:, :-1] > grey[:, 1:]).flatten()
    value = int("".join("1" if b else "0" for b in bits), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int | np.ndarray, b: int) -> np.ndarray:
    """Bits that differ between 64-bit hashes (``a`` may be an array of them)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.int64), np.int64(b))
    return np.bitwise_count(x).astype(np.int64)


def thumbnail_jpeg(image: Image.Image, side: int = THUMBNAIL_SIDE) -> bytes:
    copy = image.convert("RGB")
    copy.thumbnail((side, side))
    buffer = io.BytesIO()
    copy.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()
