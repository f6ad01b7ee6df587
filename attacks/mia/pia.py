"""PIA — Kong, Li, Wang, Duan, Xu, "An Efficient Membership Inference Attack for the Diffusion Model by
Proximal Initialization", ICLR 2024.

ε_0 = ε_θ(x_0, 0, c) is reused as the noise: x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε_0 and
score = −‖ε_0 − ε_θ(x_t, t, c)‖₄⁴ (sum of fourth powers), two queries per image, t = 200 of 1,000.
Timestep convention: t = 200 is the paper's DDPM setting (its CIFAR-10 / TinyImageNet runs), taken as is;
it was not selected on this benchmark's models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.mia.base import MembershipAttack
from benchmark.api import DiffusionModel, LabeledImages


@dataclass
class PIAConfig(MembershipAttack.Config):
    t: int = 200


class PIA(MembershipAttack):
    name = "pia"
    paper = ("Kong et al., An Efficient Membership Inference Attack for the Diffusion Model by Proximal "
             "Initialization, ICLR 2024")
    Config = PIAConfig
    config: PIAConfig

    def conventions(self) -> dict:
        return {"t": self.config.t, "norm": "L4 (sum of 4th powers)", "queries_per_image": 2}

    def score(self, model: DiffusionModel, data: LabeledImages, index: torch.Tensor, seed: int) -> torch.Tensor:
        cond = model.encode(data.conditions)
        n = len(data)
        eps0 = model.eps(data.x, torch.zeros(n, dtype=torch.long, device=data.x.device), cond)
        t = torch.full((n,), self.config.t, device=data.x.device)
        x_t = model.add_noise(data.x, eps0, t)
        return -(eps0 - model.eps(x_t, t, cond)).pow(4).flatten(1).sum(1)
