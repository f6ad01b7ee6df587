"""Seeded, batched class-conditional sampling with classifier-free guidance, cached on disk.

A sample set is fully determined by (model fingerprint, spec): the same weights and spec always
give the same images, so they are computed once and reused across runs (e.g. the original model's
samples, shared by every leaderboard that includes it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmark import UnlearnbenchError
from benchmark.api import DiffusionModel, LabeledImages
from benchmark.atomic import atomic_path


@dataclass(frozen=True)
class SampleSpec:
    """``n_per_class`` images for each class in ``classes``, DDIM ``steps``, CFG weight ``guidance``."""

    classes: tuple[int, ...]
    n_per_class: int
    steps: int
    guidance: float
    seed: int

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def labels(self) -> torch.Tensor:
        return torch.tensor(self.classes, dtype=torch.long).repeat_interleave(self.n_per_class)


def sample_classes(model: DiffusionModel, spec: SampleSpec, cache_dir: Path | None = None,
                   batch_size: int = 500, show_progress: bool = True, desc: str = "sampling",
                   fingerprint: str | None = None) -> LabeledImages:
    """Samples for ``spec`` (images in [−1, 1], labels = requested class), from cache when possible."""
    labels = spec.labels()
    x = _cached_samples(model, labels, spec.key(), spec.steps, spec.guidance, spec.seed, cache_dir, batch_size,
                        show_progress, desc, fingerprint)
    return LabeledImages(x, labels)


def _cached_samples(model: DiffusionModel, conditions: Any, key: str, steps: int, guidance: float, seed: int,
                    cache_dir: Path | None, batch_size: int, show_progress: bool, desc: str,
                    fingerprint: str | None) -> torch.Tensor:
    """``model.sample(conditions, …)`` through the on-disk cache ``<cache>/samples/<fingerprint>/<key>.pt``."""
    n = len(conditions)
    path = None
    if cache_dir is not None:
        fp = fingerprint or model.fingerprint()
        path = Path(cache_dir) / "samples" / fp[:24] / f"{key}.pt"
        if path.is_file():
            x = torch.load(path, weights_only=True)
            if x.shape[0] == n:
                return x
    with tqdm(total=n, desc=desc, unit="img", disable=not show_progress, leave=False) as bar:
        x = model.sample(conditions, seed=seed, steps=steps, guidance=guidance, batch_size=batch_size,
                         progress=bar.update)
    bad = int((~torch.isfinite(x.flatten(1))).any(dim=1).sum()) if x.numel() else 0
    if bad:  # a judge reads NaN images as anything (NudeNet: no detection, "clean"): never score them
        raise UnlearnbenchError(f"{desc}: the model drew non-finite pixels (NaN or inf) in {bad} of {n} images "
                                f"(guidance {guidance:g}, {steps} steps); they cannot be judged")
    if path is not None:
        atomic_torch_save(x, path)
    return x


def sample_prompts(model: DiffusionModel, prompts: list[str], steps: int, guidance: float, seed: int,
                   cache_dir: Path | None = None, batch_size: int = 500, show_progress: bool = True,
                   desc: str = "sampling", fingerprint: str | None = None) -> torch.Tensor:
    """One seeded CFG sample per prompt (images in [−1, 1]), cached by (fingerprint, prompts, steps,
    guidance, seed). Noise of item i depends only on (seed, i)."""
    return _cached_samples(model, list(prompts), prompts_cache_key(prompts, steps, guidance, seed), steps, guidance,
                           seed, cache_dir, batch_size, show_progress, desc, fingerprint)


def prompts_cache_key(prompts: list[str], steps: int, guidance: float, seed: int) -> str:
    """The file stem ``sample_prompts`` caches these samples under (in ``<cache>/samples/<fingerprint>/``)."""
    key = hashlib.sha256(json.dumps({"prompts": list(prompts), "steps": steps, "guidance": guidance,
                                     "seed": seed}).encode()).hexdigest()[:16]
    return f"prompts-{key}"


def atomic_torch_save(obj: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_grid(samples: LabeledImages, path: Path, per_class: int = 8, upscale: int = 3) -> Path:
    """A PNG grid: one row per class, the first ``per_class`` samples of each (nearest-upscaled)."""
    rows = [samples.x[samples.y == c][:per_class] for c in torch.unique(samples.y).tolist()]
    return save_image_rows(rows, path, per_class, upscale)


def save_image_rows(rows: list[torch.Tensor], path: Path, per_row: int = 8, upscale: int = 3) -> Path:
    """A PNG of image rows (each padded to ``per_row`` with black), nearest-upscaled."""
    import torch.nn.functional as F
    from torchvision.utils import save_image

    rows = [torch.cat([r, -torch.ones(per_row - len(r), *r.shape[1:])]) for r in rows if len(r)]
    grid = F.interpolate(torch.cat(rows), scale_factor=upscale, mode="nearest")
    with atomic_path(path) as tmp:
        save_image((grid + 1) / 2, tmp, nrow=per_row, padding=2, pad_value=0.5, format="png")
    return path
