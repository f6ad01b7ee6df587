"""What the UNet wrappers share: the DDIM loop with classifier-free guidance, the noise schedule /
ε-prediction plumbing (``ScheduledUNet``) and, for the text-to-image wrappers, prompt conditioning through
a frozen text encoder (``PromptConditioned``), and the parameter subsets methods train (``unet_parameters``).

Deterministic DDIM (η = 0) without x̂0 clipping (DDIM's clip_sample clamps x̂0 but keeps the unclamped ε;
under strong guidance that mismatch wrecks samples), final images clamped to [−1, 1]. The guidance
convention is the wrapper's (``combine(ε_u, ε_c)``): the class UNet uses Ho & Salimans' (1+w)·ε_c − w·ε_u,
the text UNet diffusers' ε_u + s·(ε_c − ε_u).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DDIMScheduler
from torch import Tensor, nn

from benchmark import UnlearnbenchError


def starting_noise(noise: Tensor | None, n: int, shape: Any, seed: int) -> Tensor:
    """The noise a wrapper's ``sample`` starts from: the caller's ``noise`` (checked to be n × shape), else
    ``n`` draws from ``seed``."""
    if noise is None:
        return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
    if tuple(noise.shape) != (n, *shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(n, *tuple(shape))}")
    return noise.detach().float().cpu()


@torch.no_grad()
def guided_ddim(model: Any, x: Tensor, cond: Tensor, null: Tensor, scheduler_config: Any, steps: int,
                combine: Callable[[Tensor, Tensor], Tensor], clamp: bool = True) -> Tensor:
    """Denoise the batch ``x`` (pure noise) in ``steps`` DDIM steps under ``cond`` with CFG; ``clamp``
    clamps the result to [−1, 1] (pixel space; a latent-space model decodes first and clamps images)."""
    ddim = DDIMScheduler.from_config(scheduler_config, clip_sample=False)
    ddim.set_timesteps(steps)
    both = torch.cat([null, cond])
    for t in ddim.timesteps:
        e_u, e_c = model.eps(torch.cat([x, x]), t.to(x.device), both).chunk(2)
        x = ddim.step(combine(e_u, e_c), t, x).prev_sample
    return x.clamp(-1, 1) if clamp else x


class ScheduledUNet:
    """Mixin of the diffusers-UNet wrappers: ``add_noise``, ``alphas_cumprod`` and ``eps`` (bf16 autocast on
    CUDA, float32 out, counted by the cost meter). A wrapper sets ``self.unet`` and ``self._acp`` and says
    how its conditioning enters the UNet in ``_unet_kwargs``."""

    unet: Any
    _acp: Tensor

    def _unet_kwargs(self, cond: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        from benchmark.cost import count_eps

        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x_t.device.type == "cuda"):
            out = self.unet(x_t, t, **self._unet_kwargs(cond)).sample
        out = out.float()
        count_eps(out)
        return out

    def alphas_cumprod(self) -> Tensor:
        return self._acp

    def with_schedule(self, fingerprint: str) -> str:
        """``fingerprint`` (of the weights) extended by the noise schedule when it is not the project's
        default: the same weights under another schedule draw other images, so they are another model (no
        shared cached samples). Every zoo model has the default schedule, so its fingerprint is unchanged."""
        import hashlib

        scheduler = self.scheduler  # type: ignore[attr-defined]
        mine = schedule_state(scheduler.config)
        if mine == _default_schedule_state(type(scheduler)):
            return fingerprint
        return hashlib.sha256((fingerprint + mine).encode()).hexdigest()

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        a = self._acp.to(x0.device)[t].view(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


def schedule_state(config: Any) -> str:
    """A scheduler config as sorted JSON, without diffusers' bookkeeping keys (``_class_name``, versions):
    what a fingerprint covers of the noise schedule."""
    import json

    return json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}, sort_keys=True, default=str)


@functools.cache
def _default_schedule_state(scheduler_type: type) -> str:
    from benchmark.models.class_unet import default_scheduler_config

    return schedule_state(scheduler_type.from_config(default_scheduler_config()).config)


def check_epsilon(scheduler: Any, what: str) -> None:
    """The methods and the attacks read the UNet's output as ε: refuse a v- or x0-prediction model."""
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind != "epsilon":
        raise UnlearnbenchError(f"{what}: the scheduler predicts {kind!r}; only ε-prediction models are supported "
                                "(the methods and attacks read the UNet's output as the noise)")


class PromptConditioned:
    """Mixin of the text-to-image wrappers (the embedded text UNet, Stable Diffusion): prompts enter the UNet
    as the frozen text encoder's token states through cross-attention, cached per prompt. A wrapper sets
    ``self.text_encoder`` (``width``, ``context_length``, ``from_embeddings``), ``self._cache`` (cleared by
    its ``to``) and ``self.device``, implements ``tokenize`` and names itself in ``conditioned_name``."""

    text_encoder: Any
    _cache: dict[str, Tensor]
    device: torch.device
    conditioned_name = "a text-to-image model"

    @property
    def context_length(self) -> int:
        return int(self.text_encoder.context_length)

    def tokenize(self, prompts: Sequence[str]) -> Tensor:
        raise NotImplementedError

    def encode(self, conditions: Any) -> Tensor:
        """Prompts → N × L × D text states, float32 (cached per prompt: the encoder is frozen). A float
        tensor is taken as ready-made states."""
        if torch.is_tensor(conditions):
            if conditions.is_floating_point():
                return conditions.to(self.device)
            raise UnlearnbenchError(f"{self.conditioned_name} is conditioned on prompts (strings), not class ids")
        prompts = [conditions] if isinstance(conditions, str) else list(conditions)
        missing = sorted({p for p in prompts if p not in self._cache})
        if missing:
            with torch.no_grad():
                states = self.text_encoder(self.tokenize(missing).to(self.device)).float()
            self._cache.update(zip(missing, states))
        if not prompts:
            return torch.empty(0, self.context_length, self.text_encoder.width, device=self.device)
        return torch.stack([self._cache[p] for p in prompts])

    def encode_embeddings(self, token_embeds: Tensor) -> Tensor:
        """Token embeddings (N × L × D, differentiable) → text states: for soft-prompt attacks."""
        return self.text_encoder.from_embeddings(token_embeds.to(self.device)).float()

    def null_condition(self, n: int) -> Tensor:
        return self.encode([""] * n)  # the empty prompt (Stable Diffusion's null condition), cached

    def _unet_kwargs(self, cond: Tensor) -> dict[str, Tensor]:
        return {"encoder_hidden_states": cond}


NOXATTN_EXCLUDED_PREFIXES = ("time_embedding", "time_proj", "conv_out", "conv_norm_out")


def unet_parameters(unet: nn.Module, subset: str = "all") -> list[nn.Parameter]:
    """A diffusers UNet's parameters: all, the cross-attention layers (``attn2``), or ``noxattn`` —
    the released ESD / EraseDiff selection: every weight except cross-attention, the time embedding and
    the output layer (CompVis ``time_embed`` / ``out.``; diffusers ``time_embedding`` / ``conv_norm_out``,
    ``conv_out``). A class-conditional UNet has no cross-attention: ``xattn`` is empty and ``noxattn`` is
    every weight but the time embedding and the output layer, as for the others."""
    named = list(unet.named_parameters())
    if subset == "all":
        return [p for _, p in named]
    if subset == "xattn":
        return [p for n, p in named if "attn2" in n]
    if subset == "noxattn":
        return [p for n, p in named if "attn2" not in n and not n.startswith(NOXATTN_EXCLUDED_PREFIXES)]
    raise ValueError(f"unknown parameter subset {subset!r}; use all, xattn or noxattn")
