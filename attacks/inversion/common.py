"""Helpers shared by the recovery attacks: a few forget-class images, judging samples, caching by weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from attacks.result_cache import cached
from benchmark.api import AttackContext, DiffusionModel, LabeledImages


def attack_images(context: AttackContext, n: int, split: str = "members") -> LabeledImages:
    """``n`` forget-class images of ``split`` ("members": the unlearned training images; "heldout": real
    images no model trained on), the same ones for every model (chosen by the attack seed)."""
    data = context.members if split == "members" else context.heldout
    f = data.where(context.forget_mask(split))
    pick = torch.randperm(len(f), generator=torch.Generator().manual_seed(context.seed + 17))[:n]
    return f.take(pick)


def judged_recovery(model: DiffusionModel, conditions: Any, context: AttackContext, seed: int,
                    steps: int | None = None) -> torch.Tensor:
    """1.0 for each sample (one per condition) the judge reads as the forgotten concept, else 0.0.
    Sampling uses the scenario's guidance and ``steps`` DDIM steps (default: the tier's)."""
    x = model.sample(conditions, seed=seed, steps=steps or context.sample_steps, guidance=context.guidance)
    return context.shows_concept(x)


def cached_per_model(context: AttackContext, attack: Any, model: DiffusionModel, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per (attack, config, seed, forget class, model weights), in the run's memory and in
    the on-disk attack cache (``attacks.result_cache``): a model identical to a reference (the original;
    retrain = the oracle) is attacked only once, and a restarted run does not attack a reference again.
    ``compute`` returns a tuple whose last item is the stop reason ('' = finished within budget); a run
    cut short by its budget is returned but not cached, so a later cell retries with its own budget."""
    if isinstance(attack, tuple):  # (attack, variant): one attack caching several computations
        attack, variant = attack
    else:
        variant = ""
    fp = model.fingerprint()
    key = (attack.name, variant, repr(attack.config), context.seed, context.concept_name, fp)
    return cached(context, key, fp, compute, finished=lambda result: not result[-1])
