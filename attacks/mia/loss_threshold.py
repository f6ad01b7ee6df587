"""Loss-threshold membership inference (Yeom et al., CSF 2018; for diffusion models e.g. Matsumoto et
al. 2023, Carlini et al. 2023): members are fit better, so score = −mean_t ‖ε − ε_θ(x_t, t, c)‖² at a
few fixed timesteps, with noise fixed per image."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from attacks.mia.base import MembershipAttack, noise_for
from benchmark.api import DiffusionModel, LabeledImages


@dataclass
class LossThresholdConfig(MembershipAttack.Config):
    timesteps: tuple[int, ...] = field(default=(20, 50, 100, 200))


class LossThreshold(MembershipAttack):
    name = "loss_threshold"
    paper = "Yeom et al., Privacy Risk in Machine Learning, CSF 2018 (loss attack), applied to ε-prediction"
    Config = LossThresholdConfig
    config: LossThresholdConfig

    def conventions(self) -> dict:
        return {"timesteps": list(self.config.timesteps), "noise": "fixed per image (seed, index)",
                "score": "-mean_t ||eps - eps_theta(x_t, t, c)||^2 (pixel mean)"}

    def score(self, model: DiffusionModel, data: LabeledImages, index: torch.Tensor, seed: int) -> torch.Tensor:
        cond = model.encode(data.conditions)
        total = torch.zeros(len(data), device=model.device)
        for k, t in enumerate(self.config.timesteps):
            noise = noise_for(index, tuple(data.x.shape[1:]), seed, salt=k).to(model.device)
            tt = torch.full((len(data),), int(t), device=model.device)
            total += model.loss(data.x, cond, t=tt, noise=noise)
        return -total / len(self.config.timesteps)
