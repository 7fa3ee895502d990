"""What a training run will cost on this machine, said before it starts: peak memory and time per
epoch, from the CLIP towers' sizes, the data and the machine's measured matmul rate.

Memory (bytes): the data tensors (pixels 3*S*S*4 + ids L*8 per meme), both CLIPs kept while the
members train (4 bytes per parameter each), the largest member in training (weights, gradients,
AdamW's two moments: 16 bytes per parameter) and its activations (per meme and layer about
``ACTIVATION_FLOATS_PER_TOKEN`` floats per token and unit of width, kept for the backward pass),
plus the interpreter and libraries (``BASE_BYTES``). Time: forward + backward is about 3 forward
passes; a transformer's forward is about 2 FLOPs per parameter per token (Kaplan et al. 2020); at
the measured FP32 matmul rate this is a lower bound (small batches on a CPU reach a fraction of it).
When the estimate passes the memory this machine has free, ``fit_batch_size`` halves the batch
until it fits (and says so), or refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Per layer and width unit: attention in/out, MLP (4x), norms, GELU; set so the estimate meets the
# 8.8 GB measured for three ViT-B-32 members at batch 32 on 128 memes (issue 21).
ACTIVATION_FLOATS_PER_TOKEN = 32
BASE_BYTES = 3 << 29  # Python, torch, open_clip and the allocator's slack (1.5 GiB, measured)
MEMORY_HEADROOM = 0.9  # use at most this share of the memory available when training starts


@dataclass(frozen=True)
class Tower:
    parameters: int
    layers: int
    width: int
    tokens: int

    def forward_flops(self) -> float:
        return 2.0 * self.parameters * self.tokens

    def activation_bytes(self) -> float:
        return 4.0 * self.layers * self.tokens * self.width * ACTIVATION_FLOATS_PER_TOKEN


@dataclass(frozen=True)
class TrainingCost:
    peak_bytes: float
    seconds_per_epoch: float  # lower bound at the measured matmul rate
    available_bytes: float | None
    batch_size: int

    def fits(self) -> bool:
        return self.available_bytes is None or self.peak_bytes <= MEMORY_HEADROOM * self.available_bytes

    def describe(self, members: tuple[str, ...], memes: int) -> str:
        free = f"{self.available_bytes / 2**30:.1f} GiB available" if self.available_bytes else "free memory unknown"
        return (
            f"estimated cost of training {', '.join(members)} on {memes} memes at batch {self.batch_size}: "
            f"peak memory ~{self.peak_bytes / 2**30:.1f} GiB ({free}), "
            f"about {self.seconds_per_epoch / 60:.1f} min per epoch at this CPU's matmul rate (more on a busy CPU)"
        )


def clip_towers(clip: object) -> dict[str, Tower]:
    """The text and image towers of an open_clip CLIP: parameters, layers, width, tokens."""
    visual = clip.visual  # type: ignore[attr-defined]
    text_modules = [clip.token_embedding, clip.transformer, clip.ln_final]  # type: ignore[attr-defined]
    text_params = sum(p.numel() for m in text_modules for p in m.parameters())
    patches = int(visual.positional_embedding.shape[0])
    text = clip.transformer  # type: ignore[attr-defined]
    return {
        "text": Tower(text_params, len(text.resblocks), text.width, clip.context_length),  # type: ignore[attr-defined]
        "image": Tower(
            sum(p.numel() for p in visual.parameters()),
            len(visual.transformer.resblocks),
            visual.transformer.width,
            patches,
        ),
    }


# The towers each kind trains; bert_text its own encoder ("bert": ``encoder_tower``), tfidf_lr and
# tfidf_char none (scikit-learn, no torch); any other kind counts as CLIP-multi (both CLIP towers).
MEMBER_TOWERS = {
    "clip_text": ("text",),
    "clip_image": ("image",),
    "clip_multi": ("text", "image"),
    "bert_text": ("bert",),
    "tfidf_lr": (),
    "tfidf_char": (),
}


def bert_tower(config: dict, tokens: int) -> Tower:
    """A BERT encoder from its HuggingFace ``config.json``: embeddings, then per layer attention
    (4 h^2) and MLP (2 h i) weights; ``tokens`` per text."""
    width, inner = int(config["hidden_size"]), int(config["intermediate_size"])
    embeddings = (config["vocab_size"] + config["max_position_embeddings"] + config.get("type_vocab_size", 2)) * width
    layers = int(config["num_hidden_layers"])
    return Tower(int(embeddings + layers * (4 * width * width + 2 * width * inner)), layers, width, tokens)


def encoder_tower(options: object) -> Tower:
    """The ``bert_text`` encoder of a ``TextEncoderConfig`` (its folder's config.json, nothing loaded)."""
    import json

    from training.pretrained_text.encoder import encoder_folder

    folder, _ = encoder_folder(options.encoder)  # type: ignore[attr-defined]
    return bert_tower(json.loads((folder / "config.json").read_text()), options.max_length)  # type: ignore[attr-defined]


def available_memory_bytes() -> float | None:
    """MemAvailable of /proc/meminfo (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def training_cost(
    towers: dict[str, Tower],
    members: tuple[str, ...],
    memes: tuple[int, int],
    data_bytes_per_meme: float,
    batch_size: int,
    matmul_flops: float,
    available: float | None,
) -> TrainingCost:
    """The estimate for the members' towers (``MEMBER_TOWERS``; other kinds count as CLIP-multi)."""
    clip_params = sum(towers[name].parameters for name in ("text", "image") if name in towers)
    member_towers = [[towers[n] for n in MEMBER_TOWERS.get(m, ("text", "image"))] for m in members]
    training_bytes = max(
        16.0 * sum(t.parameters for t in group) + batch_size * sum(t.activation_bytes() for t in group)
        for group in member_towers
    )
    peak = BASE_BYTES + sum(memes) * data_bytes_per_meme + 2 * 4.0 * clip_params + training_bytes
    flops = sum(sum(t.forward_flops() for t in group) for group in member_towers)
    seconds = (3 * memes[0] + memes[1]) * flops / matmul_flops
    return TrainingCost(peak, seconds, available, batch_size)


def fit_batch_size(estimate: TrainingCost, recompute) -> TrainingCost:
    """Halve the batch until the estimate fits the available memory; MemoryError if batch 1 does not."""
    while not estimate.fits() and estimate.batch_size > 1:
        estimate = recompute(estimate.batch_size // 2)
    if not estimate.fits():
        raise MemoryError(
            f"training needs about {estimate.peak_bytes / 2**30:.1f} GiB even at batch 1, more than the "
            f"{MEMORY_HEADROOM:.0%} of {estimate.available_bytes / 2**30:.1f} GiB this machine has available"  # type: ignore[operator]
        )
    return estimate
