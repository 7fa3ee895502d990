"""The region detector behind OSCAR: a torchvision Faster R-CNN, and the module that turns one image
into OSCAR's region inputs (features + box geometry, padded to a fixed count) and object tags.

Real use: ``fasterrcnn_resnet50_fpn`` (or another torchvision Faster R-CNN) with its released COCO
weights from a local file (see ``weights_url``); nothing is downloaded here. The authors used a
ResNet-101 Faster R-CNN trained on Visual Genome (2048-d features); torchvision's box head gives
1024-d ones, so region features are ``box_head_dim + 6`` wide (1030 for the named architectures).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import detection
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from training.oscar.config import BOX_GEOMETRY_DIM, DetectorConfig

# torchvision's COCO category names (index = class id; 0 is the background, "N/A" unused ids).
COCO_CATEGORIES: tuple[str, ...] = tuple(detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])

_NAMED_WEIGHTS = {
    "fasterrcnn_resnet50_fpn": detection.FasterRCNN_ResNet50_FPN_Weights,
    "fasterrcnn_resnet50_fpn_v2": detection.FasterRCNN_ResNet50_FPN_V2_Weights,
    "fasterrcnn_mobilenet_v3_large_fpn": detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    "fasterrcnn_mobilenet_v3_large_320_fpn": detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
}

TINY_CHANNELS = 32
TINY_REPRESENTATION = 64


def weights_url(arch: str) -> str | None:
    """Where torchvision publishes the COCO weights of ``arch`` (what a user downloads)."""
    weights = _NAMED_WEIGHTS.get(arch)
    return None if weights is None else weights.COCO_V1.url


def detector_categories(config: DetectorConfig) -> tuple[str, ...]:
    if config.categories is not None:
        return config.categories
    if config.arch == "tiny":
        return COCO_CATEGORIES[: config.num_classes]
    if config.num_classes != len(COCO_CATEGORIES):
        raise ValueError(
            f"{config.arch} with {config.num_classes} classes needs category names "
            "(--detector-categories FILE, one name per line, background first)"
        )
    return COCO_CATEGORIES


def _tiny_fasterrcnn(config: DetectorConfig) -> FasterRCNN:
    """Three strided convolutions as the backbone: a real Faster R-CNN, small enough for tests."""
    c = TINY_CHANNELS
    backbone = nn.Sequential(
        nn.Conv2d(3, c, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, stride=2, padding=1),
        nn.ReLU(),
    )
    backbone.out_channels = c
    model = FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=AnchorGenerator(sizes=((16, 32, 64),), aspect_ratios=((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(c * 7 * 7, TINY_REPRESENTATION),
        box_predictor=FastRCNNPredictor(TINY_REPRESENTATION, config.num_classes),
        min_size=160,
        max_size=256,
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=60,
        box_detections_per_img=config.regions,
        box_score_thresh=config.score_threshold,
    )
    # torchvision starts the RPN at std 0.01, so a random RPN scores every anchor almost alike and
    # its top-k would be decided by rounding (PyTorch and ONNX Runtime would keep different boxes).
    # Spread the random scores so the choice is well defined, as it is for a trained detector.
    for layer in model.rpn.head.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, std=0.3)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.pt`` file: plain, or under ``state_dict`` / ``model``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detector weights {path} do not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
    return payload


def build_detector(config: DetectorConfig, state_dict: dict[str, torch.Tensor] | None = None) -> FasterRCNN:
    """A torchvision Faster R-CNN in eval mode; weights from ``state_dict`` or ``config.weights``."""
    if config.arch == "tiny":
        model = _tiny_fasterrcnn(config)
    else:
        if state_dict is None and config.weights is None:
            raise ValueError(
                f"{config.arch} needs trained weights: download {weights_url(config.arch)} and pass "
                "--detector-weights PATH (a random detector finds nothing useful)"
            )
        model = getattr(detection, config.arch)(
            weights=None,
            weights_backbone=None,
            num_classes=config.num_classes,
            box_detections_per_img=config.regions,
            box_score_thresh=config.score_threshold,
        )
    if state_dict is None and config.weights is not None:
        state_dict = read_state_dict(config.weights)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.eval()


def box_geometry(boxes: torch.Tensor, height: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """[N, 4] xyxy pixel boxes -> [N, 6] (x1/w, y1/h, x2/w, y2/h, bw/w, bh/h), Oscar's box features."""
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack([x1 / width, y1 / height, x2 / width, y2 / height, (x2 - x1) / width, (y2 - y1) / height], dim=1)


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """The first ``rows`` rows of ``x``, zero-padded to exactly ``rows`` (traces with dynamic N)."""
    padding = [0, 0] * (x.dim() - 1) + [0, rows]
    return F.pad(x, padding)[:rows]


class RegionDetector(nn.Module):
    """One image -> OSCAR's region inputs.

    ``forward(image)``: ``image`` [3, H, W] float32 RGB in [0, 1] (torchvision's detection input;
    the detector normalises and resizes inside). Returns ``region_features`` [R, D + 6] (the box
    head's feature of each detected box, then its geometry), ``region_mask`` [R] int64 (1 for a
    detected box, 0 for padding) and ``region_labels`` [R] int64 (class ids, 0 for padding),
    boxes in descending score order. Exported to ONNX as the gateway's first stage.
    """

    def __init__(self, detector: FasterRCNN, regions: int) -> None:
        super().__init__()
        self.detector = detector
        self.regions = regions
        self.eval()

    def train(self, mode: bool = True) -> RegionDetector:
        # A frozen feature extractor: always in inference mode (torchvision's detector needs
        # targets in training mode), whatever a caller or the ONNX exporter asks for.
        return super().train(False)

    @property
    def feature_dim(self) -> int:
        return self.detector.roi_heads.box_predictor.cls_score.in_features + BOX_GEOMETRY_DIM

    @property
    def image_scaling(self) -> tuple[int, int, int]:
        """(min_size, max_size, size_divisor): how ``inputs.detector_image`` scales images for it."""
        transform = self.detector.transform
        return int(transform.min_size[-1]), int(transform.max_size), int(transform.size_divisible)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        det = self.detector
        # torchvision's transform without its resize: images arrive scaled already, to multiples
        # of the size divisor (``inputs.detector_image``, numpy/PIL), so the graph neither resizes
        # nor pads (zero padding gives exactly tied scores, which runtimes break differently).
        normalized = det.transform.normalize(image)
        size = normalized.shape[-2:]
        images = ImageList(det.transform.batch_images([normalized], det.transform.size_divisible), [(size[0], size[1])])
        features = det.backbone(images.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        proposals, _ = det.rpn(images, features)
        detections, _ = det.roi_heads(features, proposals, images.image_sizes)
        boxes = detections[0]["boxes"]
        pooled = det.roi_heads.box_roi_pool(features, [boxes], images.image_sizes)
        box_features = det.roi_heads.box_head(pooled)
        height, width = (torch._shape_as_tensor(image)[1:].to(torch.float32)).unbind(0)
        regions = torch.cat([box_features, box_geometry(boxes, height, width)], dim=1)
        mask = torch.ones_like(detections[0]["scores"], dtype=torch.int64)
        return (
            pad_rows(regions, self.regions),
            pad_rows(mask, self.regions),
            pad_rows(detections[0]["labels"], self.regions),
        )
