"""SecMI — Duan, Kong, Wang, Shi, Xu, "Are Diffusion Models Vulnerable to Membership Inference
Attacks?", ICML 2023 (the threshold variant, SecMI_stat).

Deterministic DDIM inversion of x_0 up to t_SEC (default 100) in steps of k (default 10), then one more
deterministic inversion step t_SEC → t_SEC + k and one deterministic denoising step back; members are
reconstructed better: score = −‖x̂_{t_SEC} − x_{t_SEC}‖² (pixel mean). Conditioned on the true class,
no guidance. The learned-classifier variant (SecMI_NNs) is not implemented. This follows the paper
(x_{t_SEC} → x_{t_SEC+k} → x̂_{t_SEC}); the authors' released code inverts to
t_SEC − k and steps t_SEC − k → t_SEC → t_SEC − k, so its numbers differ slightly. Timestep convention:
t_SEC = 100, k = 10 are the paper's DDPM defaults, taken as is; they were not selected on this
benchmark's models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.mia.base import MembershipAttack
from benchmark.api import DiffusionModel, LabeledImages


def ddim_move(model: DiffusionModel, x: torch.Tensor, t_from: int, t_to: int, cond: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step (η = 0) from t_from to t_to, either direction."""
    acp = model.alphas_cumprod()
    a_from, a_to = acp[t_from], acp[t_to]
    eps = model.eps(x, torch.full((len(x),), t_from, device=x.device), cond)
    x0 = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
    return a_to.sqrt() * x0 + (1 - a_to).sqrt() * eps


@dataclass
class SecMIConfig(MembershipAttack.Config):
    t_sec: int = 100
    k: int = 10

    def __post_init__(self) -> None:
        if self.k <= 0 or self.t_sec <= 0:
            raise ValueError(f"SecMI needs t_sec > 0 and k > 0 (got t_sec={self.t_sec}, k={self.k})")


class SecMI(MembershipAttack):
    name = "secmi"
    paper = "Duan et al., Are Diffusion Models Vulnerable to Membership Inference Attacks? ICML 2023"
    Config = SecMIConfig
    config: SecMIConfig

    def conventions(self) -> dict:
        return {"t_sec": self.config.t_sec, "k": self.config.k, "variant": "SecMI_stat (threshold)",
                "score": "-||x_hat_t - x_t||^2 (pixel mean)"}

    def score(self, model: DiffusionModel, data: LabeledImages, index: torch.Tensor, seed: int) -> torch.Tensor:
        cfg = self.config
        if cfg.t_sec + cfg.k >= len(model.alphas_cumprod()):
            raise ValueError(f"SecMI needs t_sec + k < {len(model.alphas_cumprod())} timesteps "
                             f"(got {cfg.t_sec} + {cfg.k})")
        cond = model.encode(data.conditions)
        x = data.x
        t = 0
        while t < cfg.t_sec:  # invert x_0 → x_{t_sec} in steps of k
            nxt = min(t + cfg.k, cfg.t_sec)
            x = ddim_move(model, x, t, nxt, cond)
            t = nxt
        x_t = x
        x_up = ddim_move(model, x_t, cfg.t_sec, cfg.t_sec + cfg.k, cond)
        x_back = ddim_move(model, x_up, cfg.t_sec + cfg.k, cfg.t_sec, cond)
        return -(x_back - x_t).pow(2).flatten(1).mean(1)
