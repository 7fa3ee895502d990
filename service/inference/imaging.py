"""Uploaded bytes -> one RGB PIL image, or an :class:`ApiError` saying why not.

Every limit (:class:`ImageLimits`: pixels, longest side, aspect ratio) is checked from the image
header before any pixel is decoded or resized, so a tiny file cannot make a huge image (a 1 x 300000
PNG would blow up in the shortest-edge resize). Truncated files are rejected, never silently padded:
PIL refuses a file that ends early, and a JPEG whose scan data is too short for the size it declares
is refused before decoding (libjpeg would fill the missing part with grey). Only common raster
formats are opened (no EPS, which would run Ghostscript, and none of PIL's exotic plugins).
:func:`open_image` stops after the header (an :class:`OpenedImage`, with the memory its decoding
will take), so callers can budget that memory before they decode; :func:`decode_image` does both.
:func:`scaled_for_ocr` bounds what OCR reads.
"""

from __future__ import annotations

import io
import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from service.core.errors import ApiError

logger = logging.getLogger("memotion.gateway")

# PIL's default; set explicitly because a truncated upload must be an error, not a grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
ALLOWED_DESCRIPTION = "JPEG, PNG, GIF, WebP, BMP or TIFF"

# Leading bytes of the allowed formats: a file that starts like one of them but cannot be read is
# corrupt (400), anything else is not an image we accept (415).
_SIGNATURES: tuple[bytes, ...] = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF little endian
    b"MM\x00*",  # TIFF big endian
)


@dataclass(frozen=True)
class ImageLimits:
    """What an upload may declare; the defaults are the gateway settings' defaults."""

    max_pixels: int = 36_000_000
    max_side: int = 20_000
    max_aspect_ratio: float = 20.0

    @classmethod
    def from_settings(cls, settings: Any) -> ImageLimits:
        return cls(settings.max_image_pixels, settings.max_image_side, settings.max_image_aspect_ratio)


def as_limits(limits: ImageLimits | int) -> ImageLimits:
    """``limits``, or a bare pixel budget with the default side and aspect-ratio limits."""
    return limits if isinstance(limits, ImageLimits) else ImageLimits(max_pixels=int(limits))


def _looks_like_allowed_image(data: bytes) -> bool:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return any(data.startswith(sig) for sig in _SIGNATURES)


def _too_large(width: int, height: int, max_pixels: int) -> ApiError:
    return ApiError(
        413,
        "image_too_large",
        f"the image is {width}x{height} = {width * height} pixels; at most {max_pixels} pixels are "
        "allowed, resize it first",
    )


def _check_shape(width: int, height: int, limits: ImageLimits) -> None:
    """Size, longest side and aspect ratio, from the header (before any pixel is decoded)."""
    if width <= 0 or height <= 0:
        raise _corrupt(f"it declares a {width}x{height} size")
    if width * height > limits.max_pixels:
        raise _too_large(width, height, limits.max_pixels)
    longest, shortest = max(width, height), min(width, height)
    if longest > limits.max_side:
        raise ApiError(
            413,
            "image_too_large",
            f"the image is {width}x{height}; its longest side may be at most {limits.max_side} pixels, resize it first",
        )
    if longest / shortest > limits.max_aspect_ratio:
        raise ApiError(
            422,
            "image_aspect_ratio",
            f"the image is {width}x{height}, an aspect ratio of {longest / shortest:.0f}:1; at most "
            f"{limits.max_aspect_ratio:g}:1 is allowed (crop it, or split a long strip into panels)",
        )


def _corrupt(reason: str) -> ApiError:
    return ApiError(
        400,
        "corrupt_image",
        f"the image file is damaged or incomplete ({reason}); upload the complete {ALLOWED_DESCRIPTION} file",
    )


# --- JPEG scan length ----------------------------------------------------------------------------
# A marker that ends entropy-coded data: 0xFF followed by neither a stuffed 0x00 nor a restart marker.
_END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_blocks(segment: bytes) -> int:
    """8x8 blocks a SOF segment declares (a lower bound over interleaved and single-component scans)."""
    height, width, count = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big"), segment[5]
    factors = [(segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15) for i in range(count) if 8 + 3 * i < len(segment)]
    h_max = max((h for h, _ in factors), default=1) or 1
    v_max = max((v for _, v in factors), default=1) or 1
    return sum(
        math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8) for h, v in factors
    )


def jpeg_scan_shortfall(data: bytes) -> str | None:
    """Why a JPEG's entropy-coded data cannot hold the blocks its header declares, or None.

    Huffman coding spends at least 2 bits per 8x8 block in a sequential scan (a DC and an end-of-block
    code) and at least 1 bit in a progressive file's DC scan. A file with less was cut short (a marker
    such as an appended EOI then ends the scan early, and libjpeg pads the rest with grey). Arithmetic
    coded files and anything this walk does not understand are left to the decoder.
    """
    pos, entropy_bytes, blocks, bits_per_block = 2, 0, 0, 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 1 if marker == 0xFF else 2
            continue
        if marker == 0xD9:
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_MARKERS:
            if marker in _ARITHMETIC:
                return None
            blocks = _jpeg_blocks(data[pos + 4 : pos + 2 + length])
            bits_per_block = 1 if marker in _PROGRESSIVE else 2
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            found = _END_OF_SCAN.search(data, pos)
            end = found.start() if found else len(data)
            entropy_bytes, pos = entropy_bytes + end - pos, end
    if blocks and entropy_bytes * 8 < blocks * bits_per_block:
        return f"its scan data ({entropy_bytes} bytes) is too short for the {blocks} blocks its size declares"
    return None


# Bytes PIL keeps per pixel for a decoded frame, by mode (RGB, RGBA, CMYK, I, F...: 4).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_RGB_BYTES = 4  # PIL stores RGB as 4 bytes a pixel


def decoded_bytes_estimate(width: int, height: int, mode: str, rgba_step: bool = False, turned: bool = False) -> int:
    """The most memory decoding one image to RGB holds at once: the frame in its own mode and its RGB
    copy, plus an RGBA step (palette, transparency) and a turned copy (EXIF orientation) when taken."""
    per_pixel = _MODE_BYTES.get(mode, 4) + _RGB_BYTES + (4 if rgba_step else 0) + (_RGB_BYTES if turned else 0)
    return width * height * per_pixel


@dataclass
class OpenedImage:
    """An upload whose header was read and checked against every limit; no pixel decoded yet.
    :meth:`decode` decodes it (once the memory for it is granted: service/inference/decode_budget.py)."""

    image: Image.Image
    data: bytes
    max_pixels: int

    @property
    def pixels(self) -> int:
        return self.image.width * self.image.height

    @property
    def decoded_bytes(self) -> int:
        """:func:`decoded_bytes_estimate` for this image, from its header."""
        mode, info = self.image.mode, self.image.info
        rgba_step = mode in ("P", "PA") or "transparency" in info
        # Any EXIF may turn the image (reading its orientation could decode a PNG: count the copy).
        turned = "exif" in info or 0x0112 in getattr(self.image, "tag_v2", {})
        return decoded_bytes_estimate(self.image.width, self.image.height, mode, rgba_step, turned)

    def decode(self) -> Image.Image:
        """The RGB image (EXIF orientation applied, first frame); a corrupt-image error otherwise.
        Once only: the frame in its own mode is released as soon as the RGB copy exists."""
        try:
            return _to_rgb(_load_oriented(self.image, self.max_pixels))
        finally:
            self.image.close()


def open_image(data: bytes, limits: ImageLimits | int) -> OpenedImage:
    """Read and check an upload's header (size, side, aspect ratio, JPEG scan length) without
    decoding a pixel: 400, 413, 415 or 422 for what cannot or may not be decoded."""
    limits = as_limits(limits)
    if not data:
        raise ApiError(400, "empty_file", f"the uploaded image is empty (0 bytes); upload a {ALLOWED_DESCRIPTION} file")
    image = _open(data, limits.max_pixels)
    width, height = image.size
    _check_shape(width, height, limits)
    if image.format == "JPEG":
        shortfall = jpeg_scan_shortfall(data)
        if shortfall is not None:
            raise _corrupt(shortfall)
    return OpenedImage(image, data, limits.max_pixels)


def decode_image(data: bytes, limits: ImageLimits | int) -> Image.Image:
    """Decode an upload into an RGB image (EXIF orientation applied, first frame of animations).

    ``limits``: an :class:`ImageLimits`, or a bare pixel budget (default side and aspect limits)."""
    return open_image(data, limits).decode()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """The image's header read (no pixels decoded yet); 413, 415 or a corrupt-image error otherwise."""
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ApiError(
            413,
            "image_too_large",
            f"the image has too many pixels to decode safely ({err}); at most {max_pixels} pixels are allowed",
        ) from err
    except UnidentifiedImageError as err:
        if _looks_like_allowed_image(data):
            raise _corrupt("its header cannot be read") from err
        raise ApiError(
            415,
            "unsupported_image",
            f"the upload is not an image in a supported format; upload a {ALLOWED_DESCRIPTION} file",
        ) from err
    except Exception as err:
        raise _corrupt(f"{type(err).__name__}: {err}") from err


def _load_oriented(image: Image.Image, max_pixels: int) -> Image.Image:
    """The first frame decoded, turned (in place) as its EXIF orientation says."""
    width, height = image.size
    try:
        image.seek(0)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # no copy of an image that needs no turning
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(width, height, max_pixels) from err
    except Exception as err:
        logger.debug("image decode failed", exc_info=err)
        raise _corrupt(str(err) or type(err).__name__) from err
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels (palette and transparent images through RGBA); 415 for a mode that cannot convert."""
    try:
        if image.mode in ("P", "PA") or "transparency" in image.info:
            image = image.convert("RGBA")
        return image.convert("RGB")
    except Exception as err:
        raise ApiError(
            415,
            "unsupported_image",
            f"the image's pixel format ({image.mode}) cannot be converted to RGB; upload an 8-bit "
            f"{ALLOWED_DESCRIPTION} file",
        ) from err


def scaled_for_ocr(image: Image.Image, max_side: int) -> Image.Image:
    """``image``, or a copy scaled down so that its longest side is ``max_side`` (what OCR reads:
    the text detector works on at most a 1280-pixel canvas anyway, and a 6000x6000 page would cost
    seconds in colour conversion and recognition crops for nothing)."""
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
