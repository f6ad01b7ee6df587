"""Helpers shared by the recovery attacks: a few forget-class images, and judging samples."""

from __future__ import annotations

import torch

from benchmark.api import AttackContext, DiffusionModel, LabeledImages


def attack_images(context: AttackContext, n: int) -> LabeledImages:
    """``n`` forget-class member images, the same ones for every model (chosen by the attack seed)."""
    f = context.members.where(context.members.y == context.forget_class)
    pick = torch.randperm(len(f), generator=torch.Generator().manual_seed(context.seed + 17))[:n]
    return LabeledImages(f.x[pick], f.y[pick])


def judged_recovery(model: DiffusionModel, conditions: torch.Tensor, context: AttackContext, seed: int) -> torch.Tensor:
    """1.0 for each sample (one per condition) the judge assigns to the forget class, else 0.0."""
    x = model.sample(conditions, seed=seed, steps=context.sample_steps, guidance=context.guidance)
    return (context.judge.predict_proba(x).argmax(1) == context.forget_class).float()
