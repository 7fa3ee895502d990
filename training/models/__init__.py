"""Meme classifiers built on open_clip towers (paper Fig. 1 and 2). Tensors in, tensors out."""

from training.models.clip_image import ClipImageClassifier
from training.models.clip_multi import ClipMultiClassifier
from training.models.clip_text import ClipTextClassifier

__all__ = ["ClipImageClassifier", "ClipMultiClassifier", "ClipTextClassifier"]
