"""The DDIM loop with classifier-free guidance that every DiffusionModel wrapper samples with.

Deterministic DDIM (η = 0) without x̂0 clipping (DDIM's clip_sample clamps x̂0 but keeps the unclamped ε;
under strong guidance that mismatch wrecks samples), final images clamped to [−1, 1]. The guidance
convention is the wrapper's (``combine(ε_u, ε_c)``): the class UNet uses Ho & Salimans' (1+w)·ε_c − w·ε_u,
the text UNet diffusers' ε_u + s·(ε_c − ε_u).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDIMScheduler
from torch import Tensor


@torch.no_grad()
def guided_ddim(model: Any, x: Tensor, cond: Tensor, null: Tensor, scheduler_config: Any, steps: int,
                combine: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Denoise the batch ``x`` (pure noise) in ``steps`` DDIM steps under ``cond`` with CFG."""
    ddim = DDIMScheduler.from_config(scheduler_config, clip_sample=False)
    ddim.set_timesteps(steps)
    both = torch.cat([null, cond])
    for t in ddim.timesteps:
        e_u, e_c = model.eps(torch.cat([x, x]), t.to(x.device), both).chunk(2)
        x = ddim.step(combine(e_u, e_c), t, x).prev_sample
    return x.clamp(-1, 1)
