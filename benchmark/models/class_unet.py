"""Class-conditional DDPM: a diffusers ``UNet2DModel`` with a class-embedding table + a null class.

Classifier-free guidance (Ho & Salimans, 2022) uses the extra "null" class (index ``num_classes``)
for the unconditional branch; at sampling ε̃ = (1 + w)·ε_c − w·ε_u, Ho & Salimans' convention and the
one of the SA / SalUn / EraseDiff DDPM code, where "guidance 2.0" means w = 2 (= diffusers scale 3).
Sampling is deterministic DDIM (η = 0, no x̂0 clipping) from seeded initial noise.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel
from torch import Tensor, nn

from benchmark import UnlearnbenchError
from benchmark.api import DiffusionModel, ParamSubset
from benchmark.models.fingerprint import verify_sha256
from benchmark.models.guided_ddim import (
    ScheduledUNet,
    check_epsilon,
    guided_ddim,
    starting_noise,
    unet_parameters,
)


class EmbeddingOrVector(nn.Embedding):
    """An ``nn.Embedding`` that passes float inputs through unchanged.

    The UNet adds ``class_embedding(class_labels)`` to its time embedding; with this table in place a
    caller can hand it either class ids or ready-made embedding vectors (what ``encode`` returns, or
    a vector an inversion attack optimises). The state-dict key stays ``class_embedding.weight``.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - nn.Embedding's signature
        return input if input.is_floating_point() else super().forward(input)


def tiny_unet_config(block_out_channels: tuple[int, ...] = (16, 32, 64), num_classes: int = 10,
                     sample_size: int = 16) -> dict[str, Any]:
    n = len(block_out_channels)
    return dict(
        sample_size=sample_size, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=tuple(block_out_channels), down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n, norm_num_groups=8, num_class_embeds=num_classes + 1,
    )


def default_scheduler_config() -> dict[str, Any]:
    return dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                prediction_type="epsilon", clip_sample=True)


class ClassConditionalUNet(ScheduledUNet, DiffusionModel):
    capabilities = frozenset({"class_cond", "grad", "eps", "cond_vector"})

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler, num_classes: int):
        check_epsilon(scheduler, "class-conditional UNet")
        if unet.config.num_class_embeds != num_classes + 1:
            raise UnlearnbenchError(
                f"UNet has {unet.config.num_class_embeds} class embeddings; expected {num_classes} classes + 1 null")
        if not isinstance(unet.class_embedding, EmbeddingOrVector):
            table = EmbeddingOrVector(*unet.class_embedding.weight.shape)
            table.load_state_dict(unet.class_embedding.state_dict())
            table.to(unet.class_embedding.weight.device)
            unet.class_embedding = table
        self.unet = unet
        self.scheduler = scheduler
        self.num_classes = num_classes
        self.num_train_timesteps = scheduler.config.num_train_timesteps
        self._acp = scheduler.alphas_cumprod.to(torch.float32)

    # construction / persistence -------------------------------------------------------------
    @classmethod
    def from_config(cls, unet_config: dict[str, Any], scheduler_config: dict[str, Any] | None = None,
                    seed: int = 0) -> ClassConditionalUNet:
        torch.manual_seed(seed)
        unet = UNet2DModel.from_config(dict(unet_config))
        sched = DDPMScheduler.from_config(dict(scheduler_config or default_scheduler_config()))
        return cls(unet, sched, unet.config.num_class_embeds - 1)

    @classmethod
    def from_pretrained(cls, path: str | Path, sha256: str | None = None) -> ClassConditionalUNet:
        """Load a folder written by ``save_pretrained``; verify the weights' sha256 when given."""
        path = Path(path)
        weights = path / "unet" / "diffusion_pytorch_model.safetensors"
        verify_sha256(weights, sha256)
        from benchmark.models.loading import LOAD_ERRORS, strict_from_pretrained

        unet = strict_from_pretrained(UNet2DModel, path / "unet", "class-conditional UNet",
                                      use_safetensors=True, low_cpu_mem_usage=False)
        try:
            sched = DDPMScheduler.from_pretrained(path / "scheduler")
            meta = json.loads((path / "unlearnbench.json").read_text()) if (path / "unlearnbench.json").exists() else {}
            num_classes = int(meta.get("num_classes", unet.config.num_class_embeds - 1))
        except LOAD_ERRORS as exc:
            raise UnlearnbenchError(f"cannot load a class-conditional UNet from {path}: {exc}") from exc
        return cls(unet, sched, num_classes)

    def fingerprint(self) -> str:
        """sha256 over the UNet's weights, and its noise schedule where that is not the default."""
        return self.with_schedule(super().fingerprint())

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        self.unet.save_pretrained(path / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(path / "scheduler")
        (path / "unlearnbench.json").write_text(json.dumps({"kind": "class_unet", "num_classes": self.num_classes}))

    # contract ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def null_class(self) -> int:
        return self.num_classes

    def to(self, device: str | torch.device) -> ClassConditionalUNet:
        self.unet.to(device)
        self._acp = self._acp.to(device)
        return self

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def clone(self) -> ClassConditionalUNet:
        return ClassConditionalUNet(copy.deepcopy(self.unet), copy.deepcopy(self.scheduler), self.num_classes)

    def fresh(self, seed: int = 0) -> ClassConditionalUNet:
        return ClassConditionalUNet.from_config(dict(self.unet.config), dict(self.scheduler.config),
                                                seed=seed).to(self.device)

    def parameters(self, subset: ParamSubset = "all") -> list[nn.Parameter]:
        return unet_parameters(self.unet, subset)

    def encode(self, conditions: Any) -> Tensor:
        if torch.is_tensor(conditions) and conditions.is_floating_point():
            return conditions.to(self.device)  # already an embedding vector
        ids = torch.as_tensor(conditions, dtype=torch.long, device=self.device).reshape(-1)
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) > self.num_classes):
            raise ValueError(f"class ids must be in 0..{self.num_classes} ({self.num_classes} = null)")
        return self.unet.class_embedding(ids)

    def null_condition(self, n: int) -> Tensor:
        return self.encode([self.null_class] * n)

    def _unet_kwargs(self, cond: Tensor) -> dict[str, Tensor]:
        return {"class_labels": cond}

    @torch.no_grad()
    def sample(self, conditions: Any, seed: int, steps: int, guidance: float, batch_size: int = 256,
               progress: Any = None, noise: Tensor | None = None) -> Tensor:
        """DDIM (η=0) samples with CFG. Noise for item i depends only on (seed, i): batch-size independent;
        ``noise`` (N × C × H × W) replaces the seed's.

        ``conditions``: class ids, or a float N×D tensor of ready-made class-embedding vectors (e.g. an
        inverted embedding)."""
        if torch.is_tensor(conditions) and conditions.is_floating_point():
            ids = conditions.detach()
        else:
            ids = torch.as_tensor(conditions, dtype=torch.long).reshape(-1)
        shape = (self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        noise = starting_noise(noise, len(ids), shape, seed)
        was_training = self.unet.training
        self.unet.eval()
        out = []
        for start in range(0, len(ids), batch_size):
            x = noise[start:start + batch_size].to(self.device)
            chunk = ids[start:start + batch_size]
            cond = chunk.to(self.device) if chunk.is_floating_point() else self.encode(chunk)
            out.append(guided_ddim(self, x, cond, self.null_condition(len(x)), self.scheduler.config, steps,
                                   lambda e_u, e_c: (1 + guidance) * e_c - guidance * e_u).cpu())
            if progress is not None:
                progress(len(x))
        self.unet.train(was_training)
        return torch.cat(out) if out else torch.empty((0, *shape))
