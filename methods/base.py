"""The fine-tuning loop every gradient-based method shares; a method writes only its loss.

``FineTuningMethod.unlearn`` clones the input model (never mutating it), draws seeded minibatches
from D_f and D_r, and runs Adam with optional gradient clipping and EMA, reporting progress.

EMA follows the released DDPM unlearning code (EraseDiff, SA): a fixed decay μ applied from the first
step to a shadow copy that *starts at the pretrained weights* (no warm-up; diffusers' ``EMAModel``
warms its decay up from 0 and so discards the pretrained weights at the first step). μ is given for the
method's default (paper) step budget; when a tier runs fewer or more steps, μ is rescaled so that the
EMA horizon 1/(1−μ) keeps the same ratio to the number of steps (the pretrained weights keep the same
share μ^steps of the final average). The effective μ is recorded in the result's stats.

The released codes start the trained weights from the raw pretrained checkpoint and the EMA shadow
from the pretrained EMA; the zoo ships one set of (EMA) weights, so both start there — a departure.

Label dropout (classifier-free guidance's condition dropout) is a per-method setting because the
released codes differ in which passes drop the condition; ``encode_dropped`` applies it, and each
method's docstring says which passes use it.
A subclass implements ``loss`` (OpenUnlearning's "implement, register, configure"); one that must
combine several gradients (EraseDiff) overrides ``compute_gradients`` instead.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from benchmark import cost
from benchmark.api import (
    DiffusionModel,
    LabeledImages,
    ParamSubset,
    UnlearningMethod,
    UnlearnOutcome,
    UnlearnRequest,
)


@dataclass
class Batch:
    forget: LabeledImages
    retain: LabeledImages


class BatchStream:
    """Endless seeded minibatches from one set: a fresh permutation per epoch, last partial batch dropped."""

    def __init__(self, data: LabeledImages, batch_size: int, gen: torch.Generator):
        if len(data) == 0:
            raise ValueError("cannot draw batches from an empty set")
        self.data, self.batch_size, self.gen = data, min(batch_size, len(data)), gen
        self._order, self._pos = torch.randperm(len(data), generator=gen), 0

    def next(self, device: torch.device) -> LabeledImages:
        if self._pos + self.batch_size > len(self._order):
            self._order, self._pos = torch.randperm(len(self.data), generator=self.gen), 0
        idx = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return self.data.take(idx).to(device)


@dataclass
class FineTuneConfig:
    """Shared knobs; a method's Config subclasses this and sets the paper's defaults."""

    steps: int = 100
    batch_size: int = 128
    lr: float = 1e-4
    grad_clip: float | None = 1.0
    ema_decay: float | None = None
    ema_reference_steps: int | None = None  # steps μ is stated for; None = the Config's default steps
    label_dropout: float = 0.0  # p(condition → null) in the passes the method's released code drops
    params: ParamSubset = "all"


def effective_ema_decay(decay: float, reference_steps: int, steps: int) -> float:
    """μ' with 1/(1−μ') : steps = 1/(1−μ) : reference_steps, i.e. μ'^steps ≈ μ^reference_steps."""
    if not 0 < decay < 1:
        raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
    if steps <= 0 or reference_steps <= 0:
        return decay
    return max(0.0, 1.0 - (1.0 - decay) * reference_steps / steps)


class FixedDecayEMA:
    """θ̄ ← μ·θ̄ + (1−μ)·θ after every optimiser step, θ̄ starting at the weights it is built from."""

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float):
        self.decay = decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def step(self, params: Sequence[torch.nn.Parameter]) -> None:
        for s, p in zip(self.shadow, params):
            s.lerp_(p.detach(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, params: Sequence[torch.nn.Parameter]) -> None:
        for s, p in zip(self.shadow, params):
            p.copy_(s)


def dropout_mask(n: int, p: float, gen: torch.Generator) -> Tensor | None:
    """Rows whose condition is dropped (probability p each), or None when p = 0."""
    return (torch.rand(n, generator=gen) < p) if p > 0 else None


def encode_masked(model: DiffusionModel, conditions: Any, mask: Tensor | None) -> Tensor:
    """``model.encode(conditions)`` with the rows in ``mask`` replaced by the null condition."""
    cond = model.encode(conditions)
    if mask is None or not bool(mask.any()):
        return cond
    null = model.null_condition(cond.shape[0]).to(cond.dtype)
    return torch.where(mask.to(cond.device).view(-1, *([1] * (cond.dim() - 1))), null, cond)


def encode_dropped(model: DiffusionModel, conditions: Any, p: float, gen: torch.Generator) -> Tensor:
    """``model.encode(conditions)`` with each row replaced by the null condition with probability p
    (condition dropout as in classifier-free guidance training; the empty prompt on the text track)."""
    n = len(conditions)
    return encode_masked(model, conditions, dropout_mask(n, p, gen))


def track_of(model: DiffusionModel) -> str:
    return "text" if "text_cond" in model.capabilities else "class"


def replace_concept(prompts: Sequence[str], erase: Sequence[str], replacements: Sequence[str]) -> list[str]:
    """Each caption with its erase phrasing (longest match first, whole words) replaced by the
    replacement at the same position: how the text track remaps a forget caption to another concept."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(erase, key=len, reverse=True)) + r")\b")
    out = []
    for prompt, new in zip(prompts, replacements):
        remapped, n = pattern.subn(new, prompt, count=1)
        if n == 0:
            raise ValueError(f"caption {prompt!r} names the concept by none of its erase phrasings {list(erase)}")
        out.append(remapped)
    return out


def remap_conditions(f: LabeledImages, request: UnlearnRequest, choice: Tensor) -> Tensor | list[str]:
    """The forget batch's conditions remapped to ``request.remap_targets[choice[i]]``: class ids on the
    class track, the caption with the concept's phrase replaced on the text track."""
    targets = list(request.remap_targets)
    if f.prompts is None:
        return torch.as_tensor(targets, dtype=torch.long)[choice.cpu()].to(f.y.device)
    return replace_concept(f.conditions, list(request.forget_target), [targets[int(i)] for i in choice])


class FineTuningMethod(UnlearningMethod):
    Config = FineTuneConfig
    config: FineTuneConfig

    # -- what a subclass writes -----------------------------------------------------------------
    def loss(self, model: DiffusionModel, batch: Batch, state: dict[str, Any],
             gen: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss to minimise, plus scalars to log."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss() or compute_gradients()")

    def setup(self, model: DiffusionModel, request: UnlearnRequest, gen: torch.Generator) -> dict[str, Any]:
        """Anything computed once before the loop (frozen copies, masks, replay sets); returned as
        ``state``. ``gen`` is a generator of its own, so setup never shifts the loop's batches.
        ``state["stats"]``, if set, is merged into the run's statistics."""
        return {}

    def training_sets(self, request: UnlearnRequest, state: dict[str, Any]) -> tuple[LabeledImages, LabeledImages]:
        """The sets the loop draws its forget and retain batches from (default: D_f and D_r)."""
        return request.forget, request.retain

    def batch_sizes(self, forget: LabeledImages, retain: LabeledImages) -> tuple[int, int]:
        """(forget batch, retain batch) per step; default ``batch_size`` for each."""
        return self.config.batch_size, self.config.batch_size

    def compute_gradients(self, model: DiffusionModel, params: list[torch.nn.Parameter], batch: Batch,
                          state: dict[str, Any], gen: torch.Generator) -> dict[str, float]:
        """Fill ``p.grad`` for every trainable parameter; return scalars to log."""
        loss, logs = self.loss(model, batch, state, gen)
        loss.backward()
        return {"loss": float(loss.detach()), **logs}

    def finalize_stats(self, logs: list[dict[str, float]]) -> dict[str, Any]:
        """Summary of the per-step logs stored in the result (mean / max / last of every scalar)."""
        keys = sorted({k for row in logs for k in row})
        out: dict[str, Any] = {}
        for k in keys:
            vals = [row[k] for row in logs if k in row and math.isfinite(row[k])]
            if vals:
                out[k] = {"mean": sum(vals) / len(vals), "max": max(vals), "min": min(vals), "last": vals[-1]}
        return out

    # -- the loop ---------------------------------------------------------------------------------
    def encode(self, model: DiffusionModel, conditions: Any, gen: torch.Generator) -> Tensor:
        """Conditions of a training pass, with the method's ``label_dropout``."""
        return encode_dropped(model, conditions, self.config.label_dropout, gen)

    def ema_decay(self, steps: int) -> float | None:
        """The decay actually used at this step budget (see the module docstring), or None."""
        cfg = self.config
        if not cfg.ema_decay:
            return None
        ref = cfg.ema_reference_steps
        if ref is None:
            ref = next(f.default for f in dataclasses.fields(type(cfg)) if f.name == "steps")
        return effective_ema_decay(cfg.ema_decay, int(ref), steps)  # type: ignore[arg-type]

    def unlearn(self, model: DiffusionModel, request: UnlearnRequest) -> UnlearnOutcome:
        self.check_track(track_of(model))
        cfg = self.config
        steps = cfg.steps if request.max_steps is None else min(cfg.steps, request.max_steps)
        torch.manual_seed(request.seed)
        gen = torch.Generator().manual_seed(request.seed)
        student = model.clone().to(request.device)
        student.train().requires_grad_(False)
        params = student.parameters(cfg.params)
        for p in params:
            p.requires_grad_(True)
        with cost.phase("setup"):
            state = self.setup(student, request, torch.Generator().manual_seed(request.seed + 1))
        forget_data, retain_data = self.training_sets(request, state)
        forget_bs, retain_bs = self.batch_sizes(forget_data, retain_data)
        forget = BatchStream(forget_data, forget_bs, gen)
        retain = BatchStream(retain_data, retain_bs, gen)
        opt = torch.optim.Adam(params, lr=cfg.lr)
        decay = self.ema_decay(steps)
        ema = FixedDecayEMA(params, decay) if decay is not None else None
        logs: list[dict[str, float]] = []
        t0 = time.time()
        with cost.phase("train"):
            self._loop(student, params, opt, ema, forget, retain, state, gen, steps, request, logs)
        if ema is not None:
            ema.copy_to(params)
        student.eval().requires_grad_(False)
        stats = self.finalize_stats(logs)
        stats["loop_seconds"] = round(time.time() - t0, 3)
        if decay is not None:
            stats["ema_decay_effective"] = round(decay, 6)
            stats["ema_pretrained_share"] = round(decay ** steps, 6)
        stats.update(state.get("stats", {}))
        return UnlearnOutcome(student, steps, stats)

    def _loop(self, student: DiffusionModel, params: list[torch.nn.Parameter], opt: torch.optim.Optimizer,
              ema: Any, forget: BatchStream, retain: BatchStream, state: dict[str, Any], gen: torch.Generator,
              steps: int, request: UnlearnRequest, logs: list[dict[str, float]]) -> None:
        cfg = self.config
        device = student.device
        for step in range(steps):
            batch = Batch(forget.next(device), retain.next(device))
            opt.zero_grad(set_to_none=True)
            row = self.compute_gradients(student, params, batch, state, gen)
            if cfg.grad_clip:
                row["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            cost.add(optimizer_steps=1)
            if ema is not None:
                ema.step(params)
            logs.append(row)
            if request.progress is not None:
                request.progress(step + 1, steps, row)
