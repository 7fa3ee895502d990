"""A real gateway HTTP server for tests, and the inputs (good and bad) the gateway tests send it.

``start_gateway(repository, **env)`` runs `memotion serve` (``service.launchers.gateway_process.GatewayProcess``) on a
free loopback port with ``MEMOTION_*`` settings, waits for ``/readyz`` and stops it afterwards.
``gateway_url`` is the session-wide server for ``model_repository``.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.launchers.gateway_process import GatewayProcess

CAPTION_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def _env_name(key: str) -> str:
    return key if key.upper().startswith("MEMOTION_") else f"MEMOTION_{key.upper()}"


@contextmanager
def start_gateway(repository: Path, **env: object) -> Iterator[str]:
    """Serve ``repository`` with a real `memotion serve` process; yields its base URL.

    ``env``: settings as ``MEMOTION_MAX_UPLOAD_BYTES="200000"`` or ``max_upload_bytes=200000``.
    Raises GatewayStartError with the server's output if it exits or is not ready in time.
    """
    settings = {_env_name(k): str(v) for k, v in env.items()}
    with GatewayProcess(repository, env=settings) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def gateway_url(model_repository: Path) -> Iterator[str]:
    """A real gateway (ONNX Runtime + EasyOCR) serving ``model_repository`` for the whole session."""
    with start_gateway(model_repository) as url:
        yield url


# --- inputs -----------------------------------------------------------------------------------


def render_meme(top: str, bottom: str, size: tuple[int, int] = (640, 480)) -> bytes:
    """A meme-like PNG: a busy background with white, black-outlined captions (impact style)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, (70, 110, 160))
    draw = ImageDraw.Draw(image)
    for x in range(0, size[0], 40):
        draw.rectangle([x, size[1] * 0.38, x + 20, size[1] * 0.62], fill=(200, 160, 90))
    draw.ellipse([size[0] * 0.4, size[1] * 0.3, size[0] * 0.6, size[1] * 0.7], fill=(240, 200, 170))
    font = ImageFont.truetype(CAPTION_FONT, 48)
    for y, line in ((20, top), (size[1] - 80, bottom)):
        width = draw.textlength(line, font=font)
        draw.text(((size[0] - width) / 2, y), line, font=font, fill="white", stroke_width=3, stroke_fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def photo_jpeg(size: tuple[int, int] = (400, 300), seed: int = 0) -> bytes:
    """A noisy, photo-like JPEG (so that cutting it anywhere leaves scan data missing)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = photo_jpeg()
    return data[: len(data) // 2]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000, corrupt_pixels: bool = False) -> bytes:
    """A small PNG declaring ``width`` x ``height`` 1-bit pixels (all zero rows, streamed through zlib).

    With ``corrupt_pixels`` the IDAT is garbage: only a decoder that looks at the header first can
    still tell the image is too large.
    """
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    if corrupt_pixels:
        idat = b"\x00not zlib data at all" * 8
    else:
        compressor = zlib.compressobj(9)
        row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
        rows_per_chunk = max(1, (1 << 20) // len(row))
        block = row * rows_per_chunk
        parts = []
        remaining = height
        while remaining > 0:
            count = min(rows_per_chunk, remaining)
            parts.append(compressor.compress(block if count == rows_per_chunk else row * count))
            remaining -= count
        parts.append(compressor.flush())
        idat = b"".join(parts)
    return b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
