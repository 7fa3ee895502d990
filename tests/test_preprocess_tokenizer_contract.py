"""The gateway's torch-free preprocessing and tokenizer give exactly what open_clip gives."""

import numpy as np
import open_clip
import pytest
from PIL import Image

from memotion.manifest import Preprocessing
from memotion.preprocess import images_to_batch
from memotion.tokenizer import ClipTokenizer
from training.backbone import TINY_CLIP, register_model_configs
from training.tokenizer_export import write_clip_tokenizer

TEXTS = [
    "Hello World!!",
    "when the code finally compiles",
    "bhai ekdum mast hai yaar 😂",
    "  multiple   spaces\tand\nnewlines ",
    "Don't you'll I'm",
    "",
    "123 4567 numbers",
    "Ünïcödé café naïve",
    "a " * 100,
    "यह हिंदी है",
    "&amp; html &lt;3 entities",
    "MAX=36,000,000 #hashtag @user http://x.co/a?b=1",
    "ALL CAPS MEME TEXT",
    "literal <end_of_text> inside",
    "<start_of_text>",
]


@pytest.mark.parametrize("size", [(64, 64), (300, 200), (123, 457), (640, 64)])
@pytest.mark.parametrize("image_size", [64, 224])
def test_preprocessing_equals_open_clip_transform(size, image_size):
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    transform = open_clip.image_transform(image_size, is_train=False)
    expected = transform(image).numpy()
    got = images_to_batch([image], Preprocessing(image_size=image_size))[0]
    assert got.shape == expected.shape == (3, image_size, image_size)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_preprocessing_accepts_grey_and_alpha_images():
    spec = Preprocessing(image_size=64)
    for mode in ("L", "RGBA", "P"):
        assert images_to_batch([Image.new(mode, (80, 40))], spec).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("context_length", [32, 77])
def test_exported_tokenizer_equals_open_clip(tmp_path, context_length):
    register_model_configs()
    simple = open_clip.get_tokenizer(TINY_CLIP, context_length=context_length)
    path = write_clip_tokenizer(simple, tmp_path / "tokenizer.json")
    ours = ClipTokenizer(path, context_length)(TEXTS)
    np.testing.assert_array_equal(ours, simple(TEXTS).numpy())
    assert ours.dtype == np.int64 and ours.shape == (len(TEXTS), context_length)
