"""OSCAR's parts on tiny random models: box geometry, image scaling, tags, the (text, tags)
tokenizer against transformers', the model's masking, learning and ONNX parity, the detector's
weight loading and its ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from memotion.labels import ALL_TASKS
from memotion.oscar_inputs import OSCAR_INPUTS, PairTokenizer, detector_image, scaled_size, tag_text
from training.losses import multitask_loss
from training.oscar.config import DetectorConfig, OscarArchitecture, tiny_oscar_config
from training.oscar.detector import (
    COCO_CATEGORIES,
    RegionDetector,
    box_geometry,
    build_detector,
    detector_categories,
    pad_rows,
    weights_url,
)
from training.oscar.detector_export import RELATIVE_TOLERANCE, check_images, detector_parity_error, export_detector
from training.oscar.inputs import OnnxRegionDetector
from training.oscar.model import OscarClassifier
from training.oscar.tokenizer import bert_tokenizer, train_wordpiece, write_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


WORDS = (
    "when the code finally compiles bhai ekdum mast hai yaar person car dog cat tie sports ball meme boss monday coffee"
).split()


def test_box_geometry_is_oscars_six_values():
    # VinVL/Oscar region geometry: (x1/w, y1/h, x2/w, y2/h, box w/w, box h/h)
    boxes = torch.tensor([[10.0, 20.0, 60.0, 120.0], [0.0, 0.0, 200.0, 100.0]])
    got = box_geometry(boxes, torch.tensor(100.0), torch.tensor(200.0))
    expected = torch.tensor([[0.05, 0.2, 0.3, 1.2, 0.25, 1.0], [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(got, expected)


def test_pad_rows_pads_with_zeros_and_truncates():
    x = torch.arange(6.0).reshape(3, 2)
    torch.testing.assert_close(pad_rows(x, 5), torch.cat([x, torch.zeros(2, 2)]))
    torch.testing.assert_close(pad_rows(x, 2), x[:2])
    assert pad_rows(torch.tensor([4, 5]), 4).tolist() == [4, 5, 0, 0]


def test_scaled_size_follows_torchvisions_rule_in_multiples_of_the_divisor():
    # shorter side to min_size ...
    assert scaled_size(400, 300, 800, 1333, 32) == (1056, 800)  # 1066.7 -> nearest multiple of 32
    # ... unless the longer side would pass max_size
    assert scaled_size(3000, 500, 800, 1333, 32) == (1344, 224)
    assert scaled_size(20, 20, 160, 256, 32) == (160, 160)
    array = detector_image(Image.new("L", (120, 90), 255), 160, 256, 32)  # 213.3 x 160
    assert array.shape == (3, 160, 224) and array.dtype == np.float32
    assert np.allclose(array, 1.0)


def test_tags_are_detected_class_names_in_order_without_background():
    categories = ("__background__", "person", "N/A", "dog")
    labels = np.array([3, 1, 2, 1, 0])
    mask = np.array([1, 1, 1, 0, 0])
    assert tag_text(labels, mask, categories) == "dog person"
    assert tag_text(labels, np.zeros(5, np.int64), categories) == ""


def make_bert_dir(folder: Path) -> Path:
    """A local 'pre-trained' BERT folder as HuggingFace ships one: config.json, weights, vocab.txt."""
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing", "fun", "run"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return make_bert_dir(tmp_path_factory.mktemp("bert") / "bert")


def test_pair_tokenizer_equals_transformers_bert_tokenizer(bert_dir, tmp_path):
    from transformers import BertTokenizerFast

    path = write_tokenizer(bert_tokenizer(bert_dir), tmp_path / "tokenizer.json")
    ours = PairTokenizer(path, max_length=12)
    vocab = (bert_dir / "vocab.txt").read_text().split()
    theirs = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    texts = ["When the CODE finally compiles", "", "bhai ekdum mast hai yaar " * 4, "runs funning"]
    tags = ["person car dog", "tie", "person person person person person", ""]
    got = ours(texts, tags)
    expected = theirs(texts, tags, truncation="longest_first", max_length=12, padding="max_length")
    np.testing.assert_array_equal(got["oscar_input_ids"], np.array(expected["input_ids"]))
    np.testing.assert_array_equal(got["oscar_token_type_ids"], np.array(expected["token_type_ids"]))
    np.testing.assert_array_equal(got["oscar_attention_mask"], np.array(expected["attention_mask"]))
    # [CLS] text [SEP] tags [SEP], tags as token type 1; the long pair keeps some of both
    vocab = theirs.get_vocab()
    row = got["oscar_input_ids"][2]
    assert row[0] == vocab["[CLS]"] and list(row).count(vocab["[SEP]"]) == 2
    assert got["oscar_token_type_ids"][2].sum() >= 3 and got["oscar_attention_mask"][2].all()


def test_wordpiece_trained_on_texts_has_berts_pair_template(tmp_path):
    path = write_tokenizer(train_wordpiece([" ".join(WORDS)] * 3, vocab_size=200), tmp_path / "t.json")
    tokenizer = PairTokenizer(path, max_length=16)
    feeds = tokenizer(["the boss"], ["dog"])
    ids, types = feeds["oscar_input_ids"][0], feeds["oscar_token_type_ids"][0]
    cls, sep, pad = (tokenizer._tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    assert ids[0] == cls and ids[3] == sep and ids[5] == sep and ids[6] == pad
    assert types[:6].tolist() == [0, 0, 0, 0, 1, 1]
    assert feeds["oscar_attention_mask"][0].tolist() == [1] * 6 + [0] * 10


def _tiny_oscar(seed: int = 0, vocab: int = 60, region_dim: int = 14) -> OscarClassifier:
    from transformers import BertConfig

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    arch = OscarArchitecture(bert_config=config.to_dict(), region_dim=region_dim, max_length=12, regions=5)
    return OscarClassifier.from_architecture(arch, head_hidden=32, dropout=0.1)


def _inputs(batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    attention = torch.ones(batch, 12, dtype=torch.int64)
    attention[:, 9:] = 0
    regions = torch.ones(batch, 5, dtype=torch.int64)
    regions[:, 3:] = 0
    return {
        "oscar_input_ids": torch.randint(5, 60, (batch, 12), generator=g),
        "oscar_token_type_ids": (torch.arange(12) >= 6).long().expand(batch, 12).contiguous(),
        "oscar_attention_mask": attention,
        "region_features": torch.randn(batch, 5, 14, generator=g),
        "region_mask": regions,
    }


def test_oscar_ignores_padding_and_gives_logits_per_task():
    model = _tiny_oscar().eval()
    inputs = _inputs(3)
    with torch.no_grad():
        logits = model(*inputs.values())
        assert [tuple(t.shape) for t in logits] == [(3, t.num_classes) for t in ALL_TASKS]
        pooled = model.encode(*inputs.values())
        padded = dict(inputs)
        padded["region_features"] = inputs["region_features"].clone()
        padded["region_features"][:, 3:] = 50.0  # padded regions
        padded["oscar_input_ids"] = inputs["oscar_input_ids"].clone()
        padded["oscar_input_ids"][:, 9:] = 7  # padded tokens
        assert (model.encode(*padded.values()) - pooled).abs().max() < 1e-6
        region = dict(inputs)
        region["region_features"] = inputs["region_features"].clone()
        region["region_features"][:, 0] = 3 * torch.randn(3, 14)  # a detected region does count
        assert (model.encode(*region.values()) - pooled).abs().max() > 1e-4


def test_oscar_learns_a_batch_in_a_few_steps():
    model = _tiny_oscar(seed=3)
    inputs = _inputs(8, seed=4)
    targets = [
        torch.randint(0, t.num_classes, (8,), generator=torch.Generator().manual_seed(i))
        for i, t in enumerate(ALL_TASKS)
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(15):
        loss = multitask_loss(model(*inputs.values()), targets, 2.0, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_oscar_onnx_equals_pytorch(tmp_path):
    from training.export import export_onnx, parity_error

    model = _tiny_oscar().eval()
    export_onnx(model, {k: v.numpy() for k, v in _inputs(2).items()}, tmp_path / "oscar.onnx")
    session = ort.InferenceSession(str(tmp_path / "oscar.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(OSCAR_INPUTS)
    for batch in (1, 4):  # dynamic batch
        inputs = {k: v.numpy() for k, v in _inputs(batch, seed=batch + 10).items()}
        assert parity_error(model, tmp_path / "oscar.onnx", inputs) < 1e-4


@pytest.fixture(scope="module")
def tiny_detector() -> RegionDetector:
    config = tiny_oscar_config().detector
    torch.manual_seed(0)
    return RegionDetector(build_detector(config), config.regions)


def test_detector_outputs_fixed_size_regions(tiny_detector):
    image = torch.from_numpy(check_images(tiny_detector)[0])
    with torch.no_grad():
        features, mask, labels = tiny_detector(image)
    regions = tiny_detector.regions
    assert features.shape == (regions, tiny_detector.feature_dim) and mask.shape == labels.shape == (regions,)
    assert mask.dtype == labels.dtype == torch.int64 and int(mask.sum()) > 0
    kept = mask.bool()
    assert (labels[kept] > 0).all() and (labels[~kept] == 0).all() and (features[~kept] == 0).all()
    geometry = features[kept, -6:]
    assert (geometry >= 0).all() and (geometry <= 1).all()
    torch.testing.assert_close(geometry[:, 4], geometry[:, 2] - geometry[:, 0])


def test_detector_loads_weights_from_a_local_file(tiny_detector, tmp_path):
    config = tiny_oscar_config().detector
    state = tiny_detector.detector.state_dict()
    torch.save({"model": state}, tmp_path / "wrapped.pth")
    torch.save(state, tmp_path / "plain.pth")
    image = torch.from_numpy(check_images(tiny_detector)[1])
    with torch.no_grad():
        expected = tiny_detector(image)
        for name in ("plain.pth", "wrapped.pth"):
            torch.manual_seed(123)  # a different random start: the file must decide the outputs
            loaded = RegionDetector(
                build_detector(DetectorConfig(**{**config.__dict__, "weights": str(tmp_path / name)})), config.regions
            )
            for a, b in zip(expected, loaded(image)):
                torch.testing.assert_close(a, b)
    with pytest.raises(FileNotFoundError):
        build_detector(DetectorConfig(arch="tiny", num_classes=8, weights=str(tmp_path / "missing.pth")))


def test_torchvision_detectors_need_weights_and_name_their_download():
    with pytest.raises(ValueError, match="fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"):
        build_detector(DetectorConfig(arch="fasterrcnn_resnet50_fpn"))
    assert weights_url("fasterrcnn_mobilenet_v3_large_320_fpn").startswith("https://download.pytorch.org/")
    assert detector_categories(DetectorConfig())[1] == "person" and len(COCO_CATEGORIES) == 91
    with pytest.raises(ValueError, match="category names"):
        detector_categories(DetectorConfig(num_classes=5))


def test_torchvision_faster_rcnn_loads_a_state_dict_file(tmp_path):
    """The real architecture path, with a small num_classes so the file stays small."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    source = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3)
    torch.save(source.state_dict(), tmp_path / "detector.pth")
    config = DetectorConfig(
        arch="fasterrcnn_mobilenet_v3_large_320_fpn",
        num_classes=3,
        categories=("__background__", "cat", "dog"),
        regions=4,
        weights=str(tmp_path / "detector.pth"),
    )
    detector = build_detector(config)
    for (name, a), b in zip(source.state_dict().items(), detector.state_dict().values()):
        assert torch.equal(a, b), name
    assert not detector.training and RegionDetector(detector, 4).feature_dim == 1024 + 6


@pytest.fixture(scope="module")
def detector_onnx(tiny_detector, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("detector") / "detector.onnx"
    assert export_detector(tiny_detector, path) < 1e-4  # checked on three noise images
    return path


def test_detector_onnx_graph_equals_pytorch_at_other_image_sizes(tiny_detector, detector_onnx):
    min_size, max_size, divisor = tiny_detector.image_scaling
    onnx_detector = OnnxRegionDetector(detector_onnx, min_size=min_size, max_size=max_size, size_divisor=divisor)
    rng = np.random.default_rng(5)  # sizes the export never saw
    for height, width in ((192, 160), (160, 256)):
        image = rng.random((3, height, width), dtype=np.float32)
        with torch.no_grad():
            expected = [t.numpy() for t in tiny_detector(torch.from_numpy(image))]
        got = onnx_detector.run(image)
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_array_equal(got[2], expected[2])
        np.testing.assert_allclose(got[0], expected[0], atol=1e-4, rtol=0)


def test_detector_check_catches_a_graph_of_another_detector(detector_onnx):
    config = tiny_oscar_config().detector
    torch.manual_seed(99)
    other = RegionDetector(build_detector(config), config.regions)
    assert detector_parity_error(other, detector_onnx, check_images(other)) > RELATIVE_TOLERANCE


def test_the_detector_graph_has_no_resize(detector_onnx):
    """Images arrive scaled: the graph must not resize (its rounding differs between runtimes)."""
    import onnx

    def op_types(graph: onnx.GraphProto) -> set[str]:  # with the If/Loop bodies
        found = set()
        for node in graph.node:
            found.add(node.op_type)
            for attribute in node.attribute:
                if attribute.g.node:
                    found |= op_types(attribute.g)
        return found

    ops = op_types(onnx.load(str(detector_onnx)).graph)
    assert "Resize" not in ops and {"RoiAlign", "NonMaxSuppression", "TopK"} <= ops
