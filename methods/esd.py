"""ESD — Gandikota, Materzyńska, Fiotto-Kaufman, Bau, "Erasing Concepts from Diffusion Models", ICCV 2023.

Fine-tune the model so that its conditional prediction for the concept c follows *negative* guidance
of the frozen original θ*:

    ε_θ(x_t, c, t)  ←  ε_θ*(x_t, t) − η · (ε_θ*(x_t, c, t) − ε_θ*(x_t, t))

with x_t drawn from the model being trained itself: start from Gaussian noise and run DDIM (η_DDIM = 0)
with the concept prompt and guidance 3 for a random number of steps t_enc ∈ [0, 50); t is the timestep
reached. Loss: MSE, Adam lr 1e-5, 1,000 iterations of one image, η = 1. No training image is used:
ESD needs only the concept's name (one of the request's erase phrasings per iteration).

Two variants (the paper's): ``esd-x`` trains the cross-attention weights (``attn2``; for a concept
named in prompts, e.g. a style); ``esd-u`` trains every other weight of the UNet except the time
embedding and the output layer, as the released code's "noxattn" (for a concept that should go whatever
the prompt, e.g. an object or nudity).

Timestep of the loss: t is the DDIM timestep reached after the t_enc steps, so the loss is taken at the
noise level of x_t, as in the newest released trainer. The first diffusers port lands within one DDIM
stride of it; the CompVis ``train-esd.py`` does not: its x_t sits 2–3 strides (39–58 DDPM steps) less noisy
than the timestep it trains (a departure kept on purpose: ours is self-consistent). x_t comes from the
model being trained, as in the CompVis script and the first diffusers port (the newest trainer draws it
from the frozen base instead).
Text track only: a class-conditional model has no prompts to negate (the class embedding analogue is
the class track's methods).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from benchmark import cost
from benchmark.api import DiffusionModel, UnlearningMethod, UnlearnOutcome, UnlearnRequest
from methods.base import track_of


@dataclass
class ESDConfig:
    steps: int = 1000
    lr: float = 1e-5
    negative_guidance: float = 1.0
    start_guidance: float = 3.0
    ddim_steps: int = 50
    batch_size: int = 1
    params: Literal["xattn", "noxattn"] = "noxattn"
    grad_clip: float | None = None


def esd_parameters(model: DiffusionModel, which: str) -> list[nn.Parameter]:
    """ESD's parameter sets: ``xattn`` = cross-attention; ``noxattn`` = all but cross-attention, the time
    embedding and the output layer (the released code's selection, which is the models' ``noxattn``)."""
    out = model.parameters(which)  # type: ignore[arg-type]
    if not out:
        raise ValueError(f"esd: the model has no {which} parameters")
    return out


class ESD(UnlearningMethod):
    name = "esd-u"
    paper = "Gandikota, Materzyńska, Fiotto-Kaufman, Bau. Erasing Concepts from Diffusion Models. ICCV 2023"
    supports = frozenset({"text"})
    Config = ESDConfig
    config: ESDConfig

    @torch.no_grad()
    def partial_sample(self, model: DiffusionModel, cond: torch.Tensor, n_steps: int, gen: torch.Generator,
                       scheduler: object, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``n_steps`` DDIM steps with guidance from fresh noise; return (x_t, t of x_t)."""
        x = torch.randn(shape, generator=gen).to(model.device)
        null = model.null_condition(len(x))
        timesteps = scheduler.timesteps  # type: ignore[attr-defined]
        for t in timesteps[:n_steps]:
            e_u, e_c = model.eps(torch.cat([x, x]), t.to(model.device), torch.cat([null, cond])).chunk(2)
            x = scheduler.step(e_u + self.config.start_guidance * (e_c - e_u), t, x).prev_sample  # type: ignore[attr-defined]
        return x, timesteps[n_steps].to(model.device).expand(len(x))

    def unlearn(self, model: DiffusionModel, request: UnlearnRequest) -> UnlearnOutcome:
        from diffusers import DDIMScheduler

        self.check_track(track_of(model))
        cfg = self.config
        if cfg.params not in ("xattn", "noxattn"):
            raise ValueError(f"esd params must be 'xattn' or 'noxattn', got {cfg.params!r}")
        words = [str(w) for w in request.forget_target] if not isinstance(request.forget_target, (int, str)) else [str(request.forget_target)]
        if not words:
            raise ValueError("esd needs the concept's prompt(s) in request.forget_target")
        steps = cfg.steps if request.max_steps is None else min(cfg.steps, request.max_steps)
        torch.manual_seed(request.seed)
        gen = torch.Generator().manual_seed(request.seed)
        pick = random.Random(request.seed)
        frozen = model.clone().to(request.device).eval().requires_grad_(False)
        student = model.clone().to(request.device)
        student.train().requires_grad_(False)
        params = esd_parameters(student, cfg.params)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=cfg.lr)
        ddim = DDIMScheduler.from_config(dict(student.scheduler.config), clip_sample=False)  # type: ignore[attr-defined]
        ddim.set_timesteps(cfg.ddim_steps)
        x0_shape = tuple(request.forget.x.shape[1:])
        logs: list[float] = []
        t0 = time.time()
        with cost.phase("train"):
            for step in range(steps):
                word = pick.choice(words)
                cond = student.encode([word] * cfg.batch_size)
                null = student.encode([""] * cfg.batch_size)
                t_enc = int(torch.randint(0, cfg.ddim_steps, (1,), generator=gen))
                student.eval()
                x_t, t = self.partial_sample(student, cond, t_enc, gen, ddim, (cfg.batch_size, *x0_shape))
                student.train()
                with torch.no_grad():
                    e_0 = frozen.eps(x_t, t, null)
                    e_p = frozen.eps(x_t, t, cond)
                    target = e_0 - cfg.negative_guidance * (e_p - e_0)
                e_n = student.eps(x_t, t, cond)
                loss = (e_n - target).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                cost.add(optimizer_steps=1)
                logs.append(float(loss.detach()))
                if request.progress is not None:
                    request.progress(step + 1, steps, {"loss": logs[-1], "t_enc": float(t_enc)})
        student.eval().requires_grad_(False)
        stats = {"loss": {"mean": sum(logs) / max(1, len(logs)), "last": logs[-1] if logs else float("nan")},
                 "loop_seconds": round(time.time() - t0, 3), "concept_prompts": words,
                 "trained_parameters": int(sum(p.numel() for p in params))}
        return UnlearnOutcome(student, steps, stats)


@dataclass
class ESDXConfig(ESDConfig):
    params: Literal["xattn", "noxattn"] = "xattn"


class ESDX(ESD):
    """ESD-x: only the cross-attention weights are trained (the paper's choice for styles)."""

    name = "esd-x"
    Config = ESDXConfig
