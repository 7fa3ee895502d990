"""What every OCR engine is: image -> the text printed on it, and how boxes become one text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image


@runtime_checkable
class OcrEngine(Protocol):
    name: str

    def read(self, image: Image.Image) -> str:
        """All text printed on ``image`` as one string, in reading order ("" if none)."""
        ...


class NoOcr:
    """OCR switched off: clients must send the text themselves."""

    name = "none"
    thread_safe = True

    def read(self, image: Image.Image) -> str:
        return ""


@dataclass(frozen=True)
class TextBox:
    left: float
    top: float
    right: float
    bottom: float
    text: str

    @classmethod
    def from_points(cls, points: Sequence[Sequence[float]], text: str) -> TextBox:
        xs = [float(p[0]) for p in points]
        ys = [float(p[1]) for p in points]
        return cls(min(xs), min(ys), max(xs), max(ys), text)

    @property
    def center_y(self) -> float:
        return (self.top + self.bottom) / 2


def reading_order(boxes: Sequence[TextBox]) -> list[TextBox]:
    """Boxes grouped into lines (top to bottom), each line read left to right.

    A box joins the current line when its vertical centre lies within the line's vertical extent.
    """
    lines: list[list[TextBox]] = []
    extent: list[tuple[float, float]] = []
    for box in sorted(boxes, key=lambda b: (b.top, b.left)):
        if lines and extent[-1][0] <= box.center_y <= extent[-1][1]:
            lines[-1].append(box)
            top, bottom = extent[-1]
            extent[-1] = (min(top, box.top), max(bottom, box.bottom))
        else:
            lines.append([box])
            extent.append((box.top, box.bottom))
    return [box for line in lines for box in sorted(line, key=lambda b: b.left)]


def join_text(boxes: Sequence[TextBox]) -> str:
    return " ".join(" ".join(b.text.split()) for b in reading_order(boxes) if b.text.strip())
