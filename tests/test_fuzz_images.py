"""Property-based fuzzing of the image and wire parsers (Hypothesis; tests/fuzz_strategies.py).

The contract, for any upload: ``decode_image`` returns an RGB image within every limit (then
preprocessing makes the model's tensor of the manifest's shape), or raises an ``ApiError`` with a
4xx status; never another exception. The same for form thresholds and base64 fields. A few hundred
cases per run; ``bench/fuzz.py`` runs thousands against a real server.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from memotion.manifest import Preprocessing
from memotion.preprocess import images_to_batch
from service.api.wire import decode_base64_image, parse_thresholds_field
from service.core.errors import ApiError
from service.inference.imaging import ImageLimits, decode_image, scaled_for_ocr
from tests.fuzz_strategies import image_files, patch_declared_size, thresholds_values

LIMITS = ImageLimits(max_pixels=4_000_000, max_side=5000, max_aspect_ratio=20.0)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _decode(data: bytes) -> Image.Image | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's warnings about odd metadata are not the point
        try:
            return decode_image(data, LIMITS)
        except ApiError as err:
            assert 400 <= err.status < 500, err
            assert err.code and err.message
            return None


@FUZZ
@given(image_files())
def test_any_upload_decodes_within_limits_or_is_a_4xx(data: bytes) -> None:
    image = _decode(data)
    if image is None:
        return
    width, height = image.size
    assert image.mode == "RGB" and width * height <= LIMITS.max_pixels
    assert max(width, height) <= LIMITS.max_side and max(width, height) / min(width, height) <= 20.0
    tensor = images_to_batch([image], Preprocessing(image_size=32))
    assert tensor.shape == (1, 3, 32, 32) and np.isfinite(tensor).all()
    ocr_input = scaled_for_ocr(image, 256)
    assert max(ocr_input.size) <= 256 or ocr_input is image


@FUZZ
@given(st.sampled_from(["PNG", "JPEG", "GIF", "BMP"]), st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_a_declared_size_is_judged_before_decoding(image_format: str, width: int, height: int) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, image_format)
    image = _decode(patch_declared_size(buffer.getvalue(), width, height))
    if image is not None:  # only a size within every limit can get through, and then the real one
        assert image.width * image.height <= LIMITS.max_pixels


@FUZZ
@given(thresholds_values())
def test_form_thresholds_are_a_dict_of_floats_or_a_422(value: object) -> None:
    import json

    try:
        text = value if isinstance(value, str) else json.dumps(value)
    except ValueError:
        return
    try:
        parsed = parse_thresholds_field(text)
    except ApiError as err:
        assert (err.status, err.code) == (422, "invalid_thresholds")
        return
    assert parsed is None or all(isinstance(k, str) and isinstance(v, float) for k, v in parsed.items())


@FUZZ
@given(st.text(max_size=400))
def test_base64_fields_decode_or_are_a_422(value: str) -> None:
    try:
        assert isinstance(decode_base64_image(value), bytes)
    except ApiError as err:
        assert (err.status, err.code) == (422, "invalid_base64")


@pytest.mark.parametrize("size", [(1, 1), (20, 1), (1, 20), (5000, 250)])
def test_the_limits_themselves_are_allowed(size: tuple[int, int]) -> None:
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, "PNG")
    image = _decode(buffer.getvalue())
    assert image is not None and image.size == size
