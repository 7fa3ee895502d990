"""Uploaded bytes -> one RGB PIL image, or an :class:`ApiError` saying why not.

The pixel budget is checked from the image header before any pixel is decoded, truncated files are
rejected (never silently padded), and only common raster formats are opened (no EPS, which would run
Ghostscript, and none of PIL's exotic plugins).
"""

from __future__ import annotations

import io
import logging

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


def _corrupt(reason: str) -> ApiError:
    return ApiError(
        400,
        "corrupt_image",
        f"the image file is damaged or incomplete ({reason}); upload the complete {ALLOWED_DESCRIPTION} file",
    )


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode an upload into an RGB image (EXIF orientation applied, first frame of animations)."""
    if not data:
        raise ApiError(400, "empty_file", f"the uploaded image is empty (0 bytes); upload a {ALLOWED_DESCRIPTION} file")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
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

    width, height = image.size
    if width <= 0 or height <= 0:
        raise _corrupt(f"it declares a {width}x{height} size")
    if width * height > max_pixels:
        raise _too_large(width, height, max_pixels)

    try:
        image.seek(0)
        image.load()
        oriented = ImageOps.exif_transpose(image)
        if oriented is None:  # pragma: no cover - only with in_place=True
            oriented = image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(width, height, max_pixels) from err
    except Exception as err:
        logger.debug("image decode failed", exc_info=err)
        raise _corrupt(str(err) or type(err).__name__) from err

    try:
        if oriented.mode in ("P", "PA") or "transparency" in oriented.info:
            oriented = oriented.convert("RGBA")
        return oriented.convert("RGB")
    except Exception as err:
        raise ApiError(
            415,
            "unsupported_image",
            f"the image's pixel format ({oriented.mode}) cannot be converted to RGB; upload an 8-bit "
            f"{ALLOWED_DESCRIPTION} file",
        ) from err
