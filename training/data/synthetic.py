"""Synthetic Memotion-format memes whose labels need both the caption and the picture.

Each meme has hidden factors. The caption renders the text factors (polarity, joke, insult,
motivation and twist phrases, English or Hinglish); the picture renders the image factors (scene
mood: sunny +1, grey office 0, dark storm -1; a funny cartoon face; a red angry symbol). Labels:

* sentiment = sign(polarity + mood) (irony when they disagree)
* sarcasm = |polarity - mood| + twist, humour = face + jokes + [polarity and mood opposite]
* offensive = insults * (1 + angry), motivational = motivation phrase and mood +1

clipped to the class range, then ``label_noise`` of each label is redrawn at random. With
``dominant="text"`` the caption renders every factor (the image ones as phrases) and the picture
shows unrelated random ones; ``dominant="image"`` is the mirror image (text factors as symbols).
``dominant_coverage`` < 1 makes that partial: each of the other modality's factors is rendered by the
dominant modality only with that probability, and otherwise (truthfully) by its own modality, so the
dominant modality explains most labels and is learnt first while the other one is still needed --
the modality-imbalance setting that PMR and gradient blending address.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from memotion.data_format import MemeRecord, write_split
from memotion.labels import ALL_TASKS
from memotion.progress import progress_bar

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
TEXT_FACTORS = ("polarity", "joke", "insult", "motivation", "twist")
IMAGE_FACTORS = ("mood", "face", "angry")

Lexicon = tuple[tuple[str, ...], tuple[str, ...]]  # (English, Hinglish) phrases

_SUBJECTS: Lexicon = (
    ("ME", "MY FRIEND", "MY BOSS", "EVERYONE", "THAT MOMENT WHEN", "WHEN YOU", "MOM", "MY TEAM"),
    ("BHAI", "YAAR", "MERA DOST", "MUMMY", "JAB", "APUN", "DEKHO", "BHAI LOG"),
)
_POLARITY: dict[int, Lexicon] = {
    1: (
        ("BEST DAY EVER", "LOVE THIS", "SO HAPPY", "AWESOME", "GREAT NEWS", "PERFECT"),
        ("MAST", "EKDUM BADHIYA", "KYA BAAT HAI", "MAZAA AA GAYA", "ZABARDAST", "DIL KHUSH"),
    ),
    0: (
        ("GOES TO WORK", "CHECKS PHONE", "EATS LUNCH", "WAITS FOR BUS", "OPENS LAPTOP"),
        ("OFFICE JA RAHA", "PHONE DEKH RAHA", "KHANA KHA RAHA", "BUS KA WAIT", "AAJ PHIR SE"),
    ),
    -1: (
        ("WORST DAY", "HATE THIS", "SO SAD", "TERRIBLE", "TOTAL DISASTER", "RUINED"),
        ("BAKWAS", "BEKAAR", "DUKH HUA", "BARBAAD", "GHATIYA", "SAB KHATAM"),
    ),
}
_JOKES: Lexicon = (
    ("LOL", "LMAO", "HAHAHA", "ROFL", "XD"),
    ("HAHAHA BHAI", "HASI NAHI RUKI", "LOL YAAR", "HEHE"),
)
_TWISTS: Lexicon = (
    ("SAID NO ONE EVER", "YEAH RIGHT", "OH SURE", "TOTALLY"),
    ("HAAN BILKUL", "SACH MEIN?", "WAAH BETA", "HAAN HAAN"),
)
_INSULTS: Lexicon = (
    ("IDIOT", "LOSER", "CLOWN", "DUMMY"),
    ("PAGAL", "BEWAKOOF", "NALAYAK", "GADHA"),
)
_MOTIVATION: Lexicon = (
    ("NEVER GIVE UP", "HUSTLE", "KEEP GOING", "DREAM BIG"),
    ("MEHNAT KARO", "HAAR MAT MAANO", "MEHNAT", "LAGE RAHO"),
)
# Image factors written as text (dominant="text" only).
_SCENES: dict[int, Lexicon] = {
    1: (("ON A SUNNY BEACH", "ON VACATION"), ("DHOOP MEIN CHHUTTI", "PICNIC PE")),
    0: (("IN THE OFFICE", "AT THE MEETING"), ("OFFICE MEIN", "MEETING MEIN")),
    -1: (("IN THE STORM", "IN THE DARK"), ("TOOFAN MEIN", "ANDHERE MEIN")),
}
_FACE_WORDS: Lexicon = (("THIS FACE THO", "LOOK AT HIS FACE"), ("ISKA FACE DEKHO", "SHAKAL DEKHO"))
_ANGRY_WORDS: Lexicon = (("RAGE MODE", "FULL ANGER"), ("GUSSA", "DIMAG KHARAB"))


@dataclass(frozen=True)
class SyntheticConfig:
    """Size, seed and difficulty of a synthetic data set."""

    n_train: int = 600
    n_val: int = 200
    seed: int = 0
    image_size: int = 256
    label_noise: float = 0.05
    dominant: Literal["none", "text", "image"] = "none"
    # With ``dominant``: the probability that each of the other modality's factors is rendered by
    # the dominant modality (the other modality then shows an unrelated value for it).
    dominant_coverage: float = 1.0
    hinglish_fraction: float = 0.3

    def __post_init__(self) -> None:
        if self.dominant not in ("none", "text", "image"):
            raise ValueError(f"dominant must be none, text or image, not {self.dominant!r}")
        if not (0 <= self.label_noise <= 1 and 0 <= self.hinglish_fraction <= 1 and 0 <= self.dominant_coverage <= 1):
            raise ValueError("label_noise, hinglish_fraction and dominant_coverage must lie in [0, 1]")
        if min(self.n_train, self.n_val) < 0 or self.image_size < 64:
            raise ValueError("counts must be >= 0 and image_size >= 64")


def make_synthetic_dataset(out_dir: Path, config: SyntheticConfig, progress: bool = False) -> dict[str, Path]:
    """Write ``train.csv``, ``val.csv``, ``image/{split}/{id}.jpg`` and ``latents.jsonl``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {"train": config.n_train, "val": config.n_val}
    paths: dict[str, Path] = {}
    with (
        progress_bar(total=sum(splits.values()), disable=not progress, unit="meme") as bar,
        (out_dir / "latents.jsonl").open("w", encoding="utf-8") as latents,
    ):
        for split_code, (split, count) in enumerate(splits.items()):
            image_dir = out_dir / "image" / split
            image_dir.mkdir(parents=True, exist_ok=True)
            records = []
            for index in range(1, count + 1):
                record_id = f"syn_{split}_{index:06d}"
                rng = np.random.default_rng([config.seed, split_code, index])
                meme = _sample_meme(rng, config)
                image_path = image_dir / f"{record_id}.jpg"
                render_meme(meme["caption"], rng=rng, size=config.image_size, **meme["image"]).save(
                    image_path, "JPEG", quality=90
                )
                text = " ".join(meme["caption"].split())
                records.append(MemeRecord(record_id, image_path, text, **meme["labels"]))
                latents.write(json.dumps({"id": record_id, "split": split, **meme}) + "\n")
                bar.update()
            paths[split] = write_split(out_dir / f"{split}.csv", records)
    (out_dir / "synthetic_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    return paths


def render_meme(
    caption: str,
    mood: int,
    rng: np.random.Generator,
    size: int = 256,
    *,
    face: bool = False,
    angry: bool = False,
    polarity: int | None = None,
    twist: bool = False,
    joke: int = 0,
    insult: int = 0,
    motivation: bool = False,
) -> Image.Image:
    """Draw one meme: a ``mood`` scene (-1, 0, +1), objects, and ``caption`` ("TOP\\nBOTTOM"; a
    caption without a newline is bottom text). ``polarity``..``motivation`` draw the text factors
    as symbols (badge, spiral, stars, bombs, trophy); the defaults draw none."""
    layout = _layout_caption(caption, size)
    image = Image.fromarray(_background(mood, rng, size))
    draw = ImageDraw.Draw(image)
    _SCENE_PAINTERS[mood](draw, rng, size)
    symbols = [  # in placement order: the first get the band between the captions
        (partial(_funny_face, rng=rng), face),
        (_angry_symbol, angry),
        (partial(_badge, polarity=polarity), polarity is not None),
        (_spiral, twist),
        (partial(_row, count=joke, painter=_star), joke > 0),
        (partial(_row, count=insult, painter=_bomb), insult > 0),
        (_trophy, motivation),
    ]
    shown = [painter for painter, present in symbols if present]
    slots = _slots(rng, size, layout.free_top, layout.free_bottom)
    clutter = min(int(rng.integers(0, 3)), len(slots) - len(shown))
    for cx, cy in slots[len(shown) : len(shown) + clutter]:  # uninformative, behind the symbols
        _DECOYS[int(rng.integers(len(_DECOYS)))](draw, cx, cy, size, rng=rng)
    for painter, (cx, cy) in zip(shown, slots):
        painter(draw, cx, cy, size)
    layout.draw(draw)
    return image


# --- hidden factors, labels and captions -------------------------------------------------------


def _sample_factors(rng: np.random.Generator) -> dict[str, int]:
    return {
        "polarity": int(rng.integers(-1, 2)),
        "joke": int(rng.choice(3, p=(0.45, 0.4, 0.15))),
        "insult": int(rng.choice(3, p=(0.5, 0.35, 0.15))),
        "motivation": int(rng.random() < 0.35),
        "twist": int(rng.random() < 0.25),
        "mood": int(rng.integers(-1, 2)),
        "face": int(rng.random() < 0.4),
        "angry": int(rng.random() < 0.35),
    }


def _clean_labels(f: dict[str, int]) -> dict[str, int]:
    polarity, mood = f["polarity"], f["mood"]
    return {
        "sentiment": int(np.sign(polarity + mood)) + 1,
        "humour": min(3, f["face"] + f["joke"] + int(polarity * mood < 0)),
        "sarcasm": min(3, abs(polarity - mood) + f["twist"]),
        "offensive": min(3, f["insult"] * (1 + f["angry"])),
        "motivational": int(f["motivation"] == 1 and mood == 1),
    }


def _sample_meme(rng: np.random.Generator, config: SyntheticConfig) -> dict:
    """Factors, what each modality renders, the caption and the (noisy) labels of one meme."""
    factors, decoy = _sample_factors(rng), _sample_factors(rng)
    text = {k: factors[k] for k in TEXT_FACTORS}
    image = {k: factors[k] for k in IMAGE_FACTORS}
    if config.dominant != "none":
        own, other = (TEXT_FACTORS, IMAGE_FACTORS) if config.dominant == "text" else (IMAGE_FACTORS, TEXT_FACTORS)
        covered = (
            set(other)
            if config.dominant_coverage >= 1
            else {k for k in other if rng.random() < config.dominant_coverage}
        )
        strong = {k: factors[k] for k in (*own, *other) if k in own or k in covered}
        weak = {k: decoy[k] if k in covered else factors[k] for k in other}
        text, image = (strong, weak) if config.dominant == "text" else (weak, strong)
    hinglish = bool(rng.random() < config.hinglish_fraction)
    clean = _clean_labels(factors)
    labels = {
        spec.name: int(rng.integers(spec.num_classes)) if rng.random() < config.label_noise else clean[spec.name]
        for spec in ALL_TASKS
    }
    caption = _caption(text, hinglish, rng)
    return {
        "hinglish": hinglish,
        "caption": caption,
        "factors": factors,
        "text": text,
        "image": image,
        "clean_labels": clean,
        "labels": labels,
    }


def _caption(text: dict[str, int], hinglish: bool, rng: np.random.Generator) -> str:
    """ "TOP\\nBOTTOM" caption rendering the text factors (and image factors present in ``text``)."""

    def pick(lexicon: Lexicon, count: int = 1) -> list[str]:
        pool = lexicon[1] if hinglish and rng.random() < 0.8 else lexicon[0]
        return [pool[i] for i in rng.choice(len(pool), size=count, replace=False)]

    phrases = pick(_SUBJECTS)
    if "mood" in text:
        phrases += pick(_SCENES[text["mood"]])
    phrases += pick(_POLARITY[text["polarity"]])
    extras = pick(_JOKES, text["joke"]) + pick(_INSULTS, text["insult"])
    extras += pick(_MOTIVATION, text["motivation"])
    extras += pick(_FACE_WORDS, text.get("face", 0)) + pick(_ANGRY_WORDS, text.get("angry", 0))
    phrases += [extras[i] for i in rng.permutation(len(extras))]
    phrases += pick(_TWISTS, text["twist"])
    if rng.random() < 0.2:
        return "\n" + " ".join(phrases)
    words = np.cumsum([len(p.split()) for p in phrases])
    cut = int(np.clip(np.searchsorted(words, words[-1] / 2) + 1, 1, len(phrases) - 1))
    return " ".join(phrases[:cut]) + "\n" + " ".join(phrases[cut:])


# --- drawing -----------------------------------------------------------------------------------

Color = tuple[int, int, int]
_SKY: dict[int, tuple[Color, Color, Color, Color]] = {  # sky top, sky bottom, ground top, bottom
    1: ((90, 170, 245), (185, 225, 255), (95, 195, 80), (55, 140, 45)),
    0: ((178, 175, 168), (150, 148, 142), (122, 114, 106), (100, 95, 90)),
    -1: ((20, 18, 40), (90, 32, 42), (38, 30, 32), (18, 14, 16)),
}


def _jitter(rng: np.random.Generator, color: Color, amount: int = 12) -> Color:
    shifted = np.clip(np.add(color, rng.integers(-amount, amount + 1, 3)), 0, 255)
    return tuple(int(c) for c in shifted)


def _background(mood: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Vertical sky/wall and ground/floor gradients for the mood's palette."""
    sky_top, sky_bottom, ground_top, ground_bottom = (_jitter(rng, c) for c in _SKY[mood])
    horizon = int(size * rng.uniform(0.62, 0.76))
    sky = np.linspace(sky_top, sky_bottom, horizon)
    ground = np.linspace(ground_top, ground_bottom, size - horizon)
    column = np.concatenate([sky, ground]).astype(np.uint8)
    return np.repeat(column[:, None, :], size, axis=1)


def _cloud(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, color: Color) -> None:
    cx, cy, r = size * rng.uniform(0.1, 0.9), size * rng.uniform(0.08, 0.3), size * 0.06
    for dx, dy, k in ((-1.2, 0.2, 0.8), (0, 0, 1.1), (1.2, 0.2, 0.85)):
        x, y, rr = cx + dx * r, cy + dy * r, r * k
        draw.ellipse((x - rr, y - rr, x + rr, y + rr), fill=color)


def _sunny(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    cx, cy = size * rng.uniform(0.15, 0.85), size * rng.uniform(0.1, 0.28)
    r = size * rng.uniform(0.08, 0.11)
    for angle in np.linspace(0, 2 * np.pi, 10, endpoint=False):
        dx, dy = np.cos(angle), np.sin(angle)
        draw.line(
            (cx + dx * r * 1.2, cy + dy * r * 1.2, cx + dx * r * 1.7, cy + dy * r * 1.7),
            fill=(255, 200, 40),
            width=max(2, size // 80),
        )
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 215, 50))
    for _ in range(int(rng.integers(1, 3))):
        _cloud(draw, rng, size, (250, 250, 252))


def _office(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    x0, y0 = size * rng.uniform(0.08, 0.55), size * rng.uniform(0.1, 0.2)
    w, h = size * 0.35, size * 0.25
    draw.rectangle((x0, y0, x0 + w, y0 + h), fill=(192, 200, 208), outline=(125, 125, 125), width=max(2, size // 64))
    draw.line((x0 + w / 2, y0, x0 + w / 2, y0 + h), fill=(125, 125, 125), width=max(1, size // 128))
    desk_y = size * rng.uniform(0.62, 0.7)
    draw.rectangle((size * 0.05, desk_y, size * 0.95, desk_y + size * 0.05), fill=(112, 102, 92))
    mx = size * rng.uniform(0.15, 0.65)
    draw.rectangle((mx, desk_y - size * 0.16, mx + size * 0.22, desk_y - size * 0.02), fill=(60, 60, 65))
    draw.rectangle(
        (mx + size * 0.015, desk_y - size * 0.145, mx + size * 0.205, desk_y - size * 0.035), fill=(100, 112, 126)
    )


def _storm(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    for _ in range(int(rng.integers(2, 4))):
        _cloud(draw, rng, size, (58, 56, 68))
    x, y = size * rng.uniform(0.2, 0.8), size * 0.2
    s = size * 0.05
    bolt = [
        (x, y),
        (x - s, y + 2 * s),
        (x, y + 2 * s),
        (x - 1.2 * s, y + 4.5 * s),
        (x + 1.2 * s, y + 1.6 * s),
        (x + 0.2 * s, y + 1.6 * s),
        (x + s, y),
    ]
    draw.polygon(bolt, fill=(250, 240, 150))
    for _ in range(25):
        rx, ry = size * rng.uniform(0, 1), size * rng.uniform(0.25, 1)
        draw.line((rx, ry, rx - size * 0.02, ry + size * 0.06), fill=(110, 120, 150), width=1)


_SCENE_PAINTERS = {1: _sunny, 0: _office, -1: _storm}


def _slots(rng: np.random.Generator, size: int, free_top: float, free_bottom: float) -> list[tuple[float, float]]:
    """Eight object centres: first a shuffled row of four across the band between the captions,
    then a row above or below it (partly under a caption when the band is narrow)."""
    middle = float(np.clip((free_top + free_bottom) / 2, 0.3 * size, 0.7 * size))
    second = middle + (0.24 if free_bottom - middle > middle - free_top else -0.24) * size
    return [
        (size * ((0.15, 0.38, 0.62, 0.85)[i] + rng.uniform(-0.03, 0.03)), y + size * rng.uniform(-0.03, 0.03))
        for y in (middle, float(np.clip(second, 0.15 * size, 0.85 * size)))
        for i in rng.permutation(4)
    ]


def _outline(size: int) -> int:
    return max(2, size // 110)


def _funny_face(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int, rng: np.random.Generator) -> None:
    r, w = size * 0.13, _outline(size)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 210, 60), outline="black", width=w)
    for side, er in ((-1, 0.045), (1, 0.035)):  # googly eyes of unequal size
        ex, ey, e = cx + side * 0.05 * size, cy - 0.04 * size, er * size
        draw.ellipse((ex - e, ey - e, ex + e, ey + e), fill="white", outline="black", width=w // 2)
        px, py, p = ex + rng.uniform(-0.4, 0.4) * e, ey + rng.uniform(-0.4, 0.4) * e, 0.45 * e
        draw.ellipse((px - p, py - p, px + p, py + p), fill="black")
    mouth = (cx - 0.08 * size, cy - 0.02 * size, cx + 0.08 * size, cy + 0.1 * size)
    draw.pieslice(mouth, 0, 180, fill=(120, 20, 30), outline="black", width=w // 2)
    draw.ellipse((cx - 0.03 * size, cy + 0.05 * size, cx + 0.03 * size, cy + 0.095 * size), fill=(240, 110, 130))


def _angry_symbol(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int) -> None:
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    radii = np.where(np.arange(24) % 2 == 0, 0.11 * size, 0.06 * size)
    points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles)]
    draw.polygon(points, fill=(230, 25, 25), outline="black", width=_outline(size))


def _badge(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int, polarity: int) -> None:
    r, w = 0.08 * size, _outline(size)
    fill = {1: (70, 200, 90), 0: (205, 205, 205), -1: (70, 110, 220)}[polarity]
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline="black", width=w)
    for side in (-1, 1):
        ex, ey, e = cx + side * 0.3 * r, cy - 0.25 * r, 0.1 * r
        draw.ellipse((ex - e, ey - e, ex + e, ey + e), fill="black")
    if polarity == 0:
        draw.line((cx - 0.4 * r, cy + 0.35 * r, cx + 0.4 * r, cy + 0.35 * r), fill="black", width=w)
    else:  # smile or frown
        my = cy + (0.0 if polarity > 0 else 0.6) * r
        box = (cx - 0.5 * r, my - 0.5 * r, cx + 0.5 * r, my + 0.5 * r)
        start, end = (20, 160) if polarity > 0 else (200, 340)
        draw.arc(box, start, end, fill="black", width=w)


def _spiral(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int) -> None:
    theta = np.linspace(0, 4 * np.pi, 60)
    radius = 0.09 * size * theta / theta[-1]
    points = list(zip(cx + radius * np.cos(theta), cy + radius * np.sin(theta)))
    draw.line(points, fill=(160, 60, 210), width=max(3, size // 50))


def _star(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int) -> None:
    angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 10, endpoint=False)
    radii = np.where(np.arange(10) % 2 == 0, 0.05 * size, 0.022 * size)
    points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles)]
    draw.polygon(points, fill=(255, 170, 0), outline="black", width=max(1, size // 200))


def _bomb(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int) -> None:
    r = 0.042 * size
    fuse = (cx, cy - r, cx + 0.5 * r, cy - 1.6 * r)
    draw.line(fuse, fill=(130, 90, 50), width=max(2, size // 100))
    draw.ellipse((cx + 0.3 * r, cy - 1.9 * r, cx + 0.8 * r, cy - 1.4 * r), fill=(255, 140, 0))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(20, 20, 20))


def _row(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int, count: int, painter) -> None:
    step = 0.1 * size
    for k in range(count):
        painter(draw, cx + (k - (count - 1) / 2) * step, cy, size)


def _trophy(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int) -> None:
    s, gold, w = 0.07 * size, (230, 180, 40), max(1, size // 150)
    draw.polygon(
        [(cx - s, cy - s), (cx + s, cy - s), (cx + 0.5 * s, cy + 0.4 * s), (cx - 0.5 * s, cy + 0.4 * s)],
        fill=gold,
        outline="black",
        width=w,
    )
    draw.rectangle((cx - 0.15 * s, cy + 0.4 * s, cx + 0.15 * s, cy + 0.9 * s), fill=gold)
    draw.rectangle((cx - 0.6 * s, cy + 0.9 * s, cx + 0.6 * s, cy + 1.15 * s), fill=gold, outline="black", width=w)


def _stick_figure(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int, rng: np.random.Generator) -> None:
    s, w = 0.05 * size, max(2, size // 90)
    draw.ellipse((cx - 0.6 * s, cy - 2.2 * s, cx + 0.6 * s, cy - s), outline="black", width=w)
    draw.line((cx, cy - s, cx, cy + s), fill="black", width=w)
    draw.line((cx - s, cy - 0.3 * s, cx + s, cy - 0.3 * s), fill="black", width=w)
    legs = (cx - 0.8 * s, cy + 2 * s, cx, cy + s, cx + 0.8 * s, cy + 2 * s)
    draw.line(legs, fill="black", width=w)


def _house(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int, rng: np.random.Generator) -> None:
    s = 0.07 * size
    draw.rectangle((cx - s, cy - 0.2 * s, cx + s, cy + s), fill=_jitter(rng, (200, 170, 130), 30))
    draw.polygon(
        [(cx - 1.2 * s, cy - 0.2 * s), (cx, cy - 1.2 * s), (cx + 1.2 * s, cy - 0.2 * s)],
        fill=_jitter(rng, (120, 80, 60), 20),
    )


def _tree(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int, rng: np.random.Generator) -> None:
    s = 0.06 * size
    draw.rectangle((cx - 0.2 * s, cy, cx + 0.2 * s, cy + 1.5 * s), fill=(110, 75, 45))
    draw.ellipse((cx - s, cy - 1.6 * s, cx + s, cy + 0.3 * s), fill=_jitter(rng, (60, 140, 60), 25))


def _ball(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: int, rng: np.random.Generator) -> None:
    r = 0.045 * size
    fill = ((240, 240, 240), (90, 160, 220), (150, 110, 200), (240, 150, 60))[int(rng.integers(4))]
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline="black", width=1)


_DECOYS = (_stick_figure, _house, _tree, _ball)


@lru_cache(maxsize=32)
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if FONT_PATH.exists():
        return ImageFont.truetype(str(FONT_PATH), pixels)
    return ImageFont.load_default(size=pixels)


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


@dataclass(frozen=True)
class _CaptionLayout:
    """Wrapped top/bottom lines with their font, positions and the free band between them."""

    size: int
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    stroke: int
    lines: tuple[tuple[str, float], ...]  # (text, y of the line's top)
    free_top: float
    free_bottom: float

    def draw(self, draw: ImageDraw.ImageDraw) -> None:
        for text, y in self.lines:
            x = (self.size - self.font.getlength(text)) / 2
            draw.text((x, y), text, font=self.font, fill="white", stroke_width=self.stroke, stroke_fill="black")


def _layout_caption(caption: str, size: int) -> _CaptionLayout:
    """Uppercase bold caption, one font size for top and bottom: the largest from 11% down to 8%
    of the image that wraps each part into at most three lines."""
    top, _, bottom = caption.upper().rpartition("\n")
    margin = 0.04 * size
    for pixels in range(round(0.11 * size), round(0.08 * size) - 1, -1):
        font, stroke = _font(pixels), max(2, pixels // 9)
        top_lines, bottom_lines = (_wrap(part, font, size - 2 * margin - 2 * stroke) for part in (top, bottom))
        if max(len(top_lines), len(bottom_lines)) <= 3:
            break
    step = round(pixels * 1.15)
    free_top = margin / 2 + len(top_lines) * step
    free_bottom = size - margin / 2 - len(bottom_lines) * step - stroke
    lines = [(text, margin / 2 + k * step) for k, text in enumerate(top_lines)]
    lines += [(text, free_bottom + k * step) for k, text in enumerate(bottom_lines)]
    return _CaptionLayout(size, font, stroke, tuple(lines), free_top, free_bottom)
