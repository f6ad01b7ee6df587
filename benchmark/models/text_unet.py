"""Text-conditioned DDPM: a diffusers ``UNet2DConditionModel`` cross-attending to frozen CLIP text states.

The structure of Stable Diffusion v1 at toy scale (pixel space, 16×16 RGB): prompts → tiny CLIP text
tower (frozen, token-level states after the final LayerNorm) → cross-attention (``attn2``) in the UNet's
8×8 and 4×4 blocks. The null condition of classifier-free guidance is the empty prompt "" (Stable
Diffusion's convention). Guidance follows diffusers' convention, ε̃ = ε_u + s·(ε_c − ε_u), with
``guidance`` = s (s = 1 is no guidance; Stable Diffusion's default is 7.5, the text track's 5.0).
Sampling is deterministic DDIM (η = 0, no x̂0 clipping), noise of item i depending only on (seed, i).

Parameter subsets: ``xattn`` = the cross-attention layers (``attn2``, ESD-x and UCE edit these);
``noxattn`` = every other UNet weight but the time embedding and output layer (the released ESD-u selection, see
``methods/esd.py``). The text encoder is never trained by a method.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import Tensor, nn

from benchmark import UnlearnbenchError
from benchmark.api import DiffusionModel, ParamSubset
from benchmark.models.class_unet import default_scheduler_config
from benchmark.models.fingerprint import verify_sha256
from benchmark.models.guided_ddim import (
    PromptConditioned,
    ScheduledUNet,
    check_epsilon,
    guided_ddim,
    starting_noise,
    unet_parameters,
)


def tiny_text_unet_config(block_out_channels: Sequence[int] = (32, 64, 64), cross_attention_dim: int = 64,
                          heads: int = 4, sample_size: int = 16, channels: int = 3) -> dict[str, Any]:
    n = len(block_out_channels)
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
    up = ("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",)
    # diffusers' `attention_head_dim` is, for this class, the number of heads (a known naming quirk).
    return dict(sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
                block_out_channels=tuple(block_out_channels), down_block_types=down, up_block_types=up,
                cross_attention_dim=cross_attention_dim, attention_head_dim=heads, norm_num_groups=8)


class TextConditionalUNet(PromptConditioned, ScheduledUNet, DiffusionModel):
    capabilities = frozenset({"text_cond", "grad", "eps", "cond_vector", "token_embeddings"})
    conditioned_name = "a text UNet"

    def __init__(self, unet: UNet2DConditionModel, scheduler: DDPMScheduler, text_encoder: nn.Module,
                 text_source: dict[str, Any] | None = None):
        from benchmark.models.tiny_clip import TextStates

        if not isinstance(text_encoder, TextStates):
            raise TypeError("text_encoder must be a benchmark.models.tiny_clip.TextStates")
        check_epsilon(scheduler, "text UNet")
        if unet.config.cross_attention_dim != text_encoder.width:
            raise UnlearnbenchError(f"UNet cross-attends to {unet.config.cross_attention_dim}-d states but the "
                                    f"text encoder gives {text_encoder.width}-d")
        self.unet = unet
        self.scheduler = scheduler
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.text_source = dict(text_source or {})  # how to find the text encoder again (zoo name + sha256)
        self.num_train_timesteps = scheduler.config.num_train_timesteps
        self._acp = scheduler.alphas_cumprod.to(torch.float32)
        self._cache: dict[str, Tensor] = {}

    # construction / persistence ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, unet_config: dict[str, Any], text_encoder: nn.Module,
                    scheduler_config: dict[str, Any] | None = None, seed: int = 0,
                    text_source: dict[str, Any] | None = None) -> TextConditionalUNet:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(dict(unet_config))
        sched = DDPMScheduler.from_config(dict(scheduler_config or default_scheduler_config()))
        return cls(unet, sched, text_encoder, text_source)

    @classmethod
    def from_pretrained(cls, path: str | Path, sha256: str | None = None,
                        text_encoder: nn.Module | None = None) -> TextConditionalUNet:
        """Load a folder written by ``save_pretrained``. The text encoder is the zoo CLIP named in
        ``unlearnbench.json`` (verified by its sha256) unless one is passed."""
        path = Path(path)
        verify_sha256(path / "unet" / "diffusion_pytorch_model.safetensors", sha256)
        meta_file = path / "unlearnbench.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        if meta.get("kind") not in (None, "text_unet"):
            raise UnlearnbenchError(f"{path} holds a {meta.get('kind')!r} model, not a text UNet")
        from benchmark.models.loading import LOAD_ERRORS, strict_from_pretrained

        unet = strict_from_pretrained(UNet2DConditionModel, path / "unet", "text UNet", use_safetensors=True,
                                      low_cpu_mem_usage=False)
        try:
            sched = DDPMScheduler.from_pretrained(path / "scheduler")
        except LOAD_ERRORS as exc:
            raise UnlearnbenchError(f"cannot load a text UNet from {path}: {exc}") from exc
        source = meta.get("text_encoder", {})
        if not isinstance(source, dict):
            raise UnlearnbenchError(f"{path}/unlearnbench.json: text_encoder must be an object naming the zoo CLIP "
                                    f"(zoo, sha256), got {source!r}")
        if text_encoder is None:
            if not source.get("zoo"):
                raise UnlearnbenchError(f"{path}/unlearnbench.json names no text encoder; pass one")
            from benchmark.zoo import load_clip_text_states

            text_encoder = load_clip_text_states(source["zoo"], source.get("sha256"))
        return cls(unet, sched, text_encoder, source)

    def save_pretrained(self, path: str | Path) -> None:
        """diffusers folders ``unet/`` and ``scheduler/``; the text encoder is referenced (zoo name and
        sha256 in ``unlearnbench.json``), not copied: no method ever changes it."""
        path = Path(path)
        self.unet.save_pretrained(path / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(path / "scheduler")
        (path / "unlearnbench.json").write_text(json.dumps({"kind": "text_unet", "text_encoder": self.text_source}))

    # contract -----------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.unet.device

    def to(self, device: str | torch.device) -> TextConditionalUNet:
        self.unet.to(device)
        if self.text_encoder.token_embedding.weight.device != torch.device(device):
            # clones share the frozen encoder; moving a copy keeps the other clones where they are
            self.text_encoder = copy.deepcopy(self.text_encoder).to(device)
        self._acp = self._acp.to(device)
        self._cache.clear()
        return self

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}  # the trainable part; the frozen text encoder enters the fingerprint below

    def fingerprint(self) -> str:
        """sha256 over the UNet's weights and the text encoder's (the same UNet on another CLIP is another model),
        and the noise schedule where it is not the default."""
        import hashlib

        from benchmark.models.fingerprint import fingerprint_modules

        text_fp = getattr(self.text_encoder, "_unlearnbench_fingerprint", None)
        if text_fp is None:
            text_fp = fingerprint_modules({"text_encoder": self.text_encoder})
            self.text_encoder._unlearnbench_fingerprint = text_fp  # frozen: computed once per encoder
        return self.with_schedule(hashlib.sha256((fingerprint_modules(self.modules()) + text_fp).encode()).hexdigest())

    def train(self, mode: bool = True) -> TextConditionalUNet:
        self.unet.train(mode)  # the text encoder stays frozen in eval mode
        return self

    def clone(self) -> TextConditionalUNet:
        # The frozen text encoder is shared between clones (never trained, never mutated).
        return TextConditionalUNet(copy.deepcopy(self.unet), copy.deepcopy(self.scheduler), self.text_encoder,
                                   self.text_source)

    def fresh(self, seed: int = 0) -> TextConditionalUNet:
        return TextConditionalUNet.from_config(dict(self.unet.config), self.text_encoder,
                                               dict(self.scheduler.config), seed, self.text_source).to(self.device)

    def parameters(self, subset: ParamSubset = "all") -> list[nn.Parameter]:
        return unet_parameters(self.unet, subset)

    def tokenize(self, prompts: Sequence[str]) -> Tensor:
        from benchmark.models.tiny_clip import tokenize

        return tokenize(list(prompts), self.text_encoder.context_length)

    @torch.no_grad()
    def sample(self, conditions: Any, seed: int, steps: int, guidance: float, batch_size: int = 256,
               progress: Any = None, noise: Tensor | None = None) -> Tensor:
        """DDIM (η=0) samples with CFG for prompts (or ready-made N × L × D states). ``noise``: the N × C × H × W
        starting noise instead of the seed's (item i's noise from the seed depends only on (seed, i))."""
        if torch.is_tensor(conditions) and conditions.is_floating_point():
            n = len(conditions)
        else:
            conditions = [conditions] if isinstance(conditions, str) else list(conditions)
            n = len(conditions)
        shape = (self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        noise = starting_noise(noise, n, shape, seed)
        was_training = self.unet.training
        self.unet.eval()
        out = []
        for start in range(0, n, batch_size):
            x = noise[start:start + batch_size].to(self.device)
            cond = self.encode(conditions[start:start + batch_size])
            out.append(guided_ddim(self, x, cond, self.null_condition(len(x)), self.scheduler.config, steps,
                                   lambda e_u, e_c: e_u + guidance * (e_c - e_u)).cpu())
            if progress is not None:
                progress(len(x))
        self.unet.train(was_training)
        return torch.cat(out) if out else torch.empty((0, *shape))
