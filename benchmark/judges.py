"""Judges: pinned classifiers that say what a generated image shows.

The class-track judge is a small CNN trained by the project on the member split of MNIST-5k
(recipe ``mnist-judge`` in ``benchmark.zoo.recipes``), with an eleventh output, "not a digit", learnt by
outlier exposure so that noise or blank samples of an unlearned model are not read as some digit. Its penultimate layer is also the offline FID
feature space (``FID[mnist-judge]``). Every result records the sha256 of the judge's weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from benchmark.api import Judge
from benchmark.models.fingerprint import verify_sha256


class DigitCNN(nn.Module):
    """Two conv blocks (16→8→4 px) and a ``feature_dim`` penultimate layer; ``num_classes`` outputs, of
    which ``reject_class`` (if set) means "not a digit"."""

    def __init__(self, num_classes: int = 10, width: int = 32, feature_dim: int = 64, in_channels: int = 1,
                 image_size: int = 16, reject_class: int | None = None,
                 heads: dict[str, list[int]] | None = None):
        super().__init__()
        self.config: dict[str, Any] = dict(num_classes=num_classes, width=width, feature_dim=feature_dim,
                                           in_channels=in_channels, image_size=image_size,
                                           reject_class=reject_class)
        if heads:  # a multi-head judge: name -> [first, end) slice of the outputs, each its own softmax
            self.config["heads"] = {k: list(v) for k, v in heads.items()}
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * w * (image_size // 4) ** 2, feature_dim), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (N × feature_dim) for images in [−1, 1]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


def load_digit_cnn(weights: str | Path, sha256: str | None = None) -> tuple[DigitCNN, str]:
    """Load a judge saved as ``model.safetensors`` + ``config.json`` in one folder; verify the sha256."""
    weights = Path(weights)
    digest = verify_sha256(weights, sha256)
    config: dict[str, Any] = json.loads((weights.parent / "config.json").read_text())
    net = DigitCNN(**config)
    net.load_state_dict(load_file(weights))
    net.eval().requires_grad_(False)
    return net, digest


class ClassifierJudge(Judge):
    """Wraps a ``DigitCNN``: probabilities, predictions and penultimate features, batched, no grad."""

    name = "classifier"

    def __init__(self, net: DigitCNN, sha256: str, label: str = "mnist-judge", device: str = "cpu"):
        self.net = net.to(device).eval()
        self._sha256 = sha256
        self.label = label
        self.device = torch.device(device)
        self.weights_path: Path | None = None

    @classmethod
    def from_file(cls, weights: str | Path, sha256: str | None = None, label: str = "mnist-judge",
                  device: str = "cpu") -> ClassifierJudge:
        net, digest = load_digit_cnn(weights, sha256)
        judge = cls(net, digest, label, device)
        judge.weights_path = Path(weights)
        return judge

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def num_outputs(self) -> int:
        return int(self.net.config["num_classes"])

    @property
    def reject_class(self) -> int | None:
        """Index of the "not a digit" output, if the judge has one (it is the last output)."""
        return self.net.config.get("reject_class")

    @torch.no_grad()
    def _batched(self, fn: Any, x: Tensor, batch_size: int = 1024) -> Tensor:
        out = [fn(x[i:i + batch_size].to(self.device)).float().cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else torch.empty(0)

    @property
    def heads(self) -> dict[str, tuple[int, int]]:
        """Output slices per head; a single-head judge has one head, 'class'."""
        heads = self.net.config.get("heads")
        if not heads:
            return {"class": (0, self.num_outputs)}
        return {k: (int(v[0]), int(v[1])) for k, v in heads.items()}

    def predict_proba(self, x: Tensor, head: str | None = None) -> Tensor:
        """Class probabilities of one head (the first head by default; a single-head judge has one)."""
        a, b = self.heads[head] if head is not None else next(iter(self.heads.values()))
        return self._batched(lambda batch: F.softmax(self.net(batch)[:, a:b], dim=1), x)

    def predict_heads(self, x: Tensor) -> dict[str, Tensor]:
        """Argmax prediction of every head."""
        logits = self._batched(self.net, x)
        return {k: logits[:, a:b].argmax(1) for k, (a, b) in self.heads.items()}

    def features(self, x: Tensor) -> Tensor:
        return self._batched(self.net.features, x)
