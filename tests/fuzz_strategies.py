"""Hypothesis strategies for hostile uploads (tests/test_fuzz_*.py and bench/fuzz.py).

``image_files()``: image files of any size (kept small in pixels so a run is fast), any PIL mode,
every accepted format plus some refused ones, extreme aspect ratios, metadata (EXIF orientation,
valid or not; ICC profiles; text chunks; animation frames), then a mutation: none, truncation
anywhere, flipped bytes, junk appended, or the declared size patched to something huge.
``thresholds_values()`` and ``classify_json_bodies()``: request bodies, well formed or not.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from hypothesis import strategies as st
from PIL import Image

FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "ICO", "PPM", "TGA")
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F")


@st.composite
def image_sizes(draw: st.DrawFn) -> tuple[int, int]:
    """Ordinary sizes, thin strips (aspect ratios up to 4000:1) and 1-pixel images; few pixels."""
    kind = draw(st.sampled_from(["ordinary", "strip", "tiny"]))
    if kind == "ordinary":
        return draw(st.integers(1, 320)), draw(st.integers(1, 320))
    if kind == "tiny":
        return draw(st.integers(1, 3)), draw(st.integers(1, 3))
    long_side, short_side = draw(st.integers(30, 4000)), draw(st.integers(1, 2))
    return (long_side, short_side) if draw(st.booleans()) else (short_side, long_side)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # orientation: 1..8 are valid, anything else is not
    return exif.tobytes()


@st.composite
def encoded_images(draw: st.DrawFn) -> bytes:
    """A genuine file written by PIL (the combination of mode and format must be writable)."""
    size, mode = draw(image_sizes()), draw(st.sampled_from(MODES))
    image_format = draw(st.sampled_from(FORMATS))
    seed = draw(st.integers(0, 255))
    image = Image.new(mode, size, color=seed if mode not in ("RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA") else None)
    if draw(st.booleans()):
        image = image.point(lambda v: (v * 37 + seed) % 256) if mode in ("L", "RGB", "RGBA") else image
    options: dict[str, Any] = {}
    if draw(st.booleans()) and image_format in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["exif"] = _exif(draw(st.integers(0, 300)))
    if draw(st.booleans()) and image_format in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["icc_profile"] = draw(st.binary(min_size=0, max_size=300))  # junk ICC: must not matter
    if image_format == "JPEG":
        options.update(quality=draw(st.integers(1, 100)), progressive=draw(st.booleans()))
        options["optimize"] = draw(st.booleans())
    if image_format == "GIF" and draw(st.booleans()):
        options.update(save_all=True, append_images=[image.copy() for _ in range(draw(st.integers(1, 4)))])
    buffer = io.BytesIO()
    try:
        image.save(buffer, image_format, **options)
    except (OSError, ValueError, KeyError, TypeError):
        buffer = io.BytesIO()
        Image.new("RGB", size).save(buffer, "PNG")  # the combination is not writable: a plain PNG
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def patch_declared_size(data: bytes, width: int, height: int) -> bytes:
    """The same file with its header declaring ``width`` x ``height`` (PNG IHDR, JPEG SOF, GIF, BMP)."""
    if data.startswith(b"\x89PNG") and data[12:16] == b"IHDR":
        header = struct.pack(">II", width, height) + data[24:29]
        return data[:8] + _png_chunk(b"IHDR", header) + data[33:]
    if data.startswith(b"\xff\xd8"):
        for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
            at = data.find(marker)
            if at > 0:
                size = struct.pack(">HH", min(height, 65535), min(width, 65535))
                return data[: at + 5] + size + data[at + 9 :]
    if data.startswith(b"GIF"):
        return data[:6] + struct.pack("<HH", min(width, 65535), min(height, 65535)) + data[10:]
    if data.startswith(b"BM") and len(data) >= 26:
        return data[:18] + struct.pack("<ii", width, height) + data[26:]
    return data


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["none", "truncate", "flip", "append", "declare", "declare+truncate"]))
    if kind == "truncate" and len(data) > 1:
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flip" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if kind == "append":
        return data + draw(st.binary(min_size=1, max_size=200))
    if kind.startswith("declare"):
        width = draw(st.sampled_from([1, 7, 6000, 65535, 300_000, 2**31 - 1]))
        height = draw(st.sampled_from([1, 7, 6000, 65535, 300_000, 2**31 - 1]))
        patched = patch_declared_size(data, width, height)
        if kind.endswith("truncate") and len(patched) > 1:
            patched = patched[: draw(st.integers(len(patched) // 2, len(patched) - 1))] + b"\xff\xd9"
        return patched
    return data


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    """Any upload: a genuine image file mutated (or not), or plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2000))
    return draw(mutated(draw(encoded_images())))


json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def thresholds_values() -> st.SearchStrategy[Any]:
    """Valid and invalid ``thresholds``: known and unknown names, any JSON value, deep nesting."""
    names = st.sampled_from(["offensive", "humorous", "humour", "sarcasm", "motivational", "anger", ""])
    deep = st.integers(1, 5000).map(lambda n: "[" * n + "]" * n)
    return st.one_of(
        st.dictionaries(names, st.floats(allow_nan=True) | st.integers(-3, 3) | st.booleans(), max_size=4),
        st.dictionaries(names, json_values, max_size=3),
        json_values,
        deep,
    )


@st.composite
def classify_json_bodies(draw: st.DrawFn) -> Any:
    """JSON bodies for POST /v1/classify: mostly the right shape with hostile values, sometimes anything."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["text"] = draw(st.text(max_size=300) | json_values)
    if draw(st.booleans()):
        body["image"] = draw(st.text(alphabet="ABCDabcd0123+/=-_ \n:;,", max_size=200) | json_values)
    if draw(st.booleans()):
        body["thresholds"] = draw(thresholds_values())
    return body


# --- issue 20: text at every entry, odd charsets, batch pixel totals, hang-ups -------------------

lone_surrogates = st.integers(0xD800, 0xDFFF).map(chr)


@st.composite
def surrogate_texts(draw: st.DrawFn) -> str:
    """Text holding at least one lone surrogate (what a JSON ``"\\ud800"`` escape or UTF-7 makes)."""
    parts = draw(st.lists(st.text(max_size=8) | lone_surrogates, min_size=1, max_size=5))
    return "".join(parts) + draw(lone_surrogates)


def hostile_texts() -> st.SearchStrategy[str]:
    """Ordinary text, or text that is not valid Unicode."""
    return st.text(max_size=40) | surrogate_texts()


CHARSETS = ("utf-7", "UTF-7", '"utf-7"', "latin-1", "iso-8859-1", "utf-16", "shift_jis", "utf-8", "UTF8", "x-nope", "")


@st.composite
def multipart_with_charset(draw: st.DrawFn, image: bytes) -> tuple[str, bytes]:
    """(Content-Type, body) of a classify form whose Content-Type names an odd ``charset``; its text
    field holds bytes that mean something else under that charset (UTF-7's ``+2AA-`` is U+D800)."""
    charset = draw(st.sampled_from(CHARSETS))
    text = draw(st.sampled_from([b"+2AA-", b"+2ADcAA-", b"\xff\xfe\x00\xd8", b"caf\xe9", b"\xed\xa0\x80", b"ok"]))
    body = b'--b\r\nContent-Disposition: form-data; name="text"\r\n'
    if draw(st.booleans()):
        body += b"Content-Type: text/plain; charset=" + draw(st.sampled_from(CHARSETS)).encode() + b"\r\n"
    body += b"\r\n" + text + b"\r\n--b\r\n"
    body += b'Content-Disposition: form-data; name="image"; filename="m.png"\r\nContent-Type: image/png\r\n\r\n'
    body += image + b"\r\n--b--\r\n"
    return f"multipart/form-data; charset={charset}; boundary=b", body


def declared_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` zero pixels: a few KB however large it declares."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    row = b"\x00" * (1 + (width + 7) // 8)
    idat = zlib.compress(row * height, 9)
    return b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def pixel_batches(max_side: int) -> st.SearchStrategy[list[tuple[int, int]]]:
    """The declared sizes of a batch's images: many large ones, whose total goes past a request's budget."""
    side = st.sampled_from([8, 64, 500, max_side // 2, max_side])
    return st.lists(st.tuples(side, side), min_size=1, max_size=12)


@st.composite
def hang_ups(draw: st.DrawFn) -> tuple[str, str, int, bytes]:
    """(path, Content-Type, declared length, bytes sent before hanging up) of a client that leaves."""
    path = draw(st.sampled_from(["/v1/classify", "/v1/classify/batch", "/v1/nope", "/healthz"]))
    content_type = draw(st.sampled_from(["application/json", "multipart/form-data; boundary=b", "text/plain"]))
    declared = draw(st.integers(10, 5_000_000))
    sent = draw(st.binary(max_size=200) | st.just(b'{"items": [{"text": "') | st.just(b"--b\r\n"))
    return path, content_type, declared, sent[: max(0, declared - 1)]
