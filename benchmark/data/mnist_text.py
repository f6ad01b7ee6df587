"""``mnist-text``: the embedded text-to-image data set (MNIST-5k in colour, with templated captions).

Images. The same seeded members / held-out split as the class track (400 + 100 per digit, 16×16), each
digit rendered as RGB ink on a black background. The *style* axis is the ink colour (red, green, blue,
yellow). Colour is the one style a person can still see reliably at 16×16 px: stroke weight and slant
change a handful of pixels and MNIST's own writers already vary them widely, so neither a person nor a
judge could tell them apart from the handwriting. Every member gets one colour (seeded, balanced: 100
images per digit × colour; 25 per cell held out) and a small per-image jitter of ink brightness and hue,
so a colour is a family of looks, not one RGB value — as a painter's style is. An image is a fixed
object, as in a real data set: members are (image, colour) pairs, which membership inference needs.

Captions. ``template.format(digit=…, colour=…)`` with a digit phrasing and a colour phrasing. Every concept
has *erase phrasings* (the only words an unlearning request ever hands a method: "zero", "the digit 0",
"red", "red ink") and *paraphrases* (other words for the same concept, never shown to any method:
"cero", "nought", "crimson", "scarlet") — what a user who was never told the erased word would type.
The model and its CLIP learn all phrasings, as Stable Diffusion's CLIP knows synonyms from the web.
Some templates are held out of every training run, to measure prompt following on unseen wording.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from benchmark import UnlearnbenchError
from benchmark.api import LabeledImages
from benchmark.data.mnist import NUM_CLASSES, mnist_splits

DATASET_VERSION = 1

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")
NUM_COLOURS = len(COLOURS)
# Base ink RGB per colour (in [0, 1]); each image jitters around it.
COLOUR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (0.95, 0.15, 0.12),
    "green": (0.15, 0.85, 0.2),
    "blue": (0.2, 0.35, 1.0),
    "yellow": (0.95, 0.85, 0.1),
}

# (erase phrasings, paraphrases) per digit. Paraphrases share no token with the erase phrasings.
DIGIT_PHRASINGS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    0: (("zero", "the digit 0"), ("cero", "nought")),
    1: (("one", "the digit 1"), ("uno", "eins")),
    2: (("two", "the digit 2"), ("dos", "deux")),
    3: (("three", "the digit 3"), ("tres", "trois")),
    4: (("four", "the digit 4"), ("cuatro", "vier")),
    5: (("five", "the digit 5"), ("cinco", "cinq")),
    6: (("six", "the digit 6"), ("seis", "sechs")),
    7: (("seven", "the digit 7"), ("siete", "sept")),
    8: (("eight", "the digit 8"), ("ocho", "huit")),
    9: (("nine", "the digit 9"), ("nueve", "neuf")),
}
COLOUR_PHRASINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "red": (("red", "red ink"), ("crimson", "scarlet")),
    "green": (("green", "green ink"), ("emerald", "verdant")),
    "blue": (("blue", "blue ink"), ("azure", "cobalt")),
    "yellow": (("yellow", "yellow ink"), ("golden", "amber")),
}

TRAIN_TEMPLATES: tuple[str, ...] = (
    "{digit} in {colour}",
    "a handwritten {digit} in {colour}",
    "{colour} {digit}",
    "a drawing of {digit}, {colour}",
    "{digit} written with {colour}",
    "a photo of {digit} in {colour}",
)
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "an image showing {digit} coloured {colour}",
    "{colour}: {digit}",
)
NEUTRAL_PROMPT = "a handwritten digit"  # no digit, no colour: the un-erasing probes' neutral prompt


@dataclass(frozen=True)
class TextImages:
    """RGB images in [−1, 1] with their digit, colour index and member index (captions are drawn later)."""

    x: torch.Tensor
    digit: torch.Tensor
    colour: torch.Tensor

    def __len__(self) -> int:
        return len(self.digit)

    def where(self, mask: torch.Tensor) -> TextImages:
        return TextImages(self.x[mask], self.digit[mask], self.colour[mask])

    def as_labeled(self, axis: str = "digit") -> LabeledImages:
        return LabeledImages(self.x, self.digit if axis == "digit" else self.colour)


@dataclass(frozen=True)
class MnistTextSplits:
    members: TextImages
    heldout: TextImages
    seed: int


def _colour_assignment(digits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Balanced colours: within each digit, a seeded permutation cycles through the colours."""
    colour = torch.empty_like(digits)
    for d in range(NUM_CLASSES):
        idx = torch.nonzero(digits == d).flatten()
        perm = idx[torch.randperm(len(idx), generator=gen)]
        colour[perm] = torch.arange(len(perm)) % NUM_COLOURS
    return colour


def render(gray: torch.Tensor, colour: torch.Tensor, gen: torch.Generator, jitter: float = 0.08) -> torch.Tensor:
    """Grey digits in [−1, 1] (N×1×H×W) → RGB ink of each image's colour on black, in [−1, 1]."""
    ink = (gray + 1) / 2
    base = torch.tensor([COLOUR_RGB[c] for c in COLOURS])[colour]  # N×3
    brightness = 0.8 + 0.2 * torch.rand(len(gray), 1, generator=gen)
    rgb = (base + jitter * (torch.rand(len(gray), 3, generator=gen) * 2 - 1)).clamp(0, 1) * brightness
    return (ink * rgb[:, :, None, None] * 2 - 1).contiguous()


@functools.lru_cache(maxsize=2)
def mnist_text_splits(seed: int = 0) -> MnistTextSplits:
    """The class track's split (same seed → same member images), rendered in colour."""
    grey = mnist_splits(seed)
    gen = torch.Generator().manual_seed(10_000 + seed)
    parts = []
    for data in (grey.members, grey.heldout):
        colour = _colour_assignment(data.y, gen)
        parts.append(TextImages(render(data.x, colour, gen), data.y.clone(), colour))
    return MnistTextSplits(parts[0], parts[1], seed)


# concepts ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Concept:
    """An erasable concept: ``axis`` 'digit' or 'colour' and its value (a digit or a colour name)."""

    axis: str
    value: int | str

    @property
    def index(self) -> int:
        return int(self.value) if self.axis == "digit" else COLOURS.index(str(self.value))

    @property
    def name(self) -> str:
        return f"digit {self.value}" if self.axis == "digit" else f"{self.value} ink"

    def phrasings(self, kind: str = "erase") -> tuple[str, ...]:
        table = DIGIT_PHRASINGS[int(self.value)] if self.axis == "digit" else COLOUR_PHRASINGS[str(self.value)]
        return table[0] if kind == "erase" else table[1]

    def mask(self, data: TextImages) -> torch.Tensor:
        return (data.digit if self.axis == "digit" else data.colour) == self.index


def parse_concept(spec: str | int | Concept) -> Concept:
    """'digit:0', '0', 'zero', 'colour:red', 'red' → a Concept; anything else is refused with the options."""
    if isinstance(spec, Concept):
        return spec
    s = str(spec).strip().lower()
    axis, _, value = s.partition(":") if ":" in s else ("", "", s)
    if axis in ("", "digit") and value.isdigit() and int(value) < NUM_CLASSES:
        return Concept("digit", int(value))
    if axis in ("", "colour", "color", "style") and value in COLOURS:
        return Concept("colour", value)
    if axis == "":
        for d, (erase, para) in DIGIT_PHRASINGS.items():
            if value in erase + para:
                return Concept("digit", d)
        for c, (erase, para) in COLOUR_PHRASINGS.items():
            if value in erase + para:
                return Concept("colour", c)
    raise UnlearnbenchError(f"unknown concept {spec!r} for mnist-text; use digit:0..9 or colour:"
                            f"{'|'.join(COLOURS)}")


def all_phrasings_digit(d: int) -> tuple[str, ...]:
    erase, para = DIGIT_PHRASINGS[d]
    return erase + para


def all_phrasings_colour(c: int) -> tuple[str, ...]:
    erase, para = COLOUR_PHRASINGS[COLOURS[c]]
    return erase + para


def caption(digit: int, colour: int, template: str, digit_phrase: str | None = None,
            colour_phrase: str | None = None) -> str:
    return template.format(digit=digit_phrase or DIGIT_PHRASINGS[digit][0][0],
                           colour=colour_phrase or COLOUR_PHRASINGS[COLOURS[colour]][0][0])


def training_captions(digit: int, colour: int) -> list[str]:
    """Every caption the model and its CLIP may see for one (digit, colour): all phrasings × training
    templates (erase phrasings *and* paraphrases; never a held-out template)."""
    return [caption(digit, colour, t, dp, cp) for t in TRAIN_TEMPLATES
            for dp in all_phrasings_digit(digit) for cp in all_phrasings_colour(colour)]


@functools.lru_cache(maxsize=1)
def caption_table() -> tuple[tuple[str, ...], torch.Tensor]:
    """All training captions (sorted, unique) and, per (digit, colour) cell, the ids of its captions
    (a 10×4×K long tensor): what the training loops draw from."""
    per_cell = [[training_captions(d, c) for c in range(NUM_COLOURS)] for d in range(NUM_CLASSES)]
    vocab = tuple(sorted({s for row in per_cell for cell in row for s in cell}))
    index = {s: i for i, s in enumerate(vocab)}
    ids = torch.tensor([[[index[s] for s in cell] for cell in row] for row in per_cell])
    return vocab, ids


def draw_caption_ids(digit: torch.Tensor, colour: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random training caption id per image (uniform over its cell's phrasings × templates)."""
    _, ids = caption_table()
    pick = torch.randint(0, ids.shape[-1], (len(digit),), generator=gen)
    return ids[digit, colour, pick]


def prompts_for(digits: Sequence[int], colours: Sequence[int], templates: Sequence[str] = HELDOUT_TEMPLATES,
                digit_kind: str = "all", colour_kind: str = "all", seed: int = 0) -> list[str]:
    """One prompt per (digit, colour) pair: a seeded choice of template and of phrasings of each
    axis's kind ('erase', 'paraphrase' or 'all')."""
    rng = random.Random(seed)
    out = []
    for d, c in zip(digits, colours):
        de, dp = DIGIT_PHRASINGS[int(d)]
        ce, cp = COLOUR_PHRASINGS[COLOURS[int(c)]]
        dpool = {"erase": de, "paraphrase": dp}.get(digit_kind, de + dp)
        cpool = {"erase": ce, "paraphrase": cp}.get(colour_kind, ce + cp)
        out.append(rng.choice(list(templates)).format(digit=rng.choice(dpool), colour=rng.choice(cpool)))
    return out
