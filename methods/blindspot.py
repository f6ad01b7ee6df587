"""BlindSpot — Tarun, Chundawat, Mandal, Kankanhalli, "Deep Regression Unlearning", ICML 2023.

Stage 1: a *proxy* ("blindspot") model of the same architecture is trained from fresh weights on
part of D_r only for a few steps, so it has never seen D_f. Stage 2: the original is fine-tuned on
mixed batches drawn in proportion to |D_f| : |D_r|; retain samples get the ordinary denoising loss,
forget samples are regressed (MSE) onto the proxy's noise predictions for the same (x_t, t, c_f); the
two terms are weighted by their share of the batch; label dropout 0.1 in stage 2 as in the released
baseline code (a dropped forget row is regressed onto the proxy's unconditional prediction). (The paper also matches intermediate activations
of the proxy — not used here, as in the SalUn / EraseDiff diffusion baselines.)

The diffusion baseline code released with SalUn / EraseDiff trained the proxy but then never used its
predictions; this implements the paper: the forget term really targets the proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchmark import cost
from benchmark.api import DiffusionModel, LabeledImages, UnlearnRequest
from methods.base import Batch, FineTuneConfig, FineTuningMethod, dropout_mask, encode_masked


@dataclass
class BlindSpotConfig(FineTuneConfig):
    steps: int = 288
    batch_size: int = 128  # mixed batch: forget share = |D_f| / (|D_f| + |D_r|)
    lr: float = 1e-4
    ema_decay: float | None = 0.99
    label_dropout: float = 0.1
    proxy_steps: int = 500
    proxy_lr: float = 1e-3
    proxy_retain_fraction: float = 0.3


class BlindSpot(FineTuningMethod):
    name = "blindspot"
    paper = "Tarun, Chundawat, Mandal, Kankanhalli. Deep Regression Unlearning. ICML 2023"
    supports = frozenset({"class"})
    Config = BlindSpotConfig
    config: BlindSpotConfig

    def batch_sizes(self, forget: LabeledImages, retain: LabeledImages) -> tuple[int, int]:
        total = self.config.batch_size
        n_f = max(1, round(total * len(forget) / (len(forget) + len(retain))))
        return n_f, max(1, total - n_f)

    def setup(self, model: DiffusionModel, request: UnlearnRequest, gen: torch.Generator) -> dict[str, Any]:
        from benchmark.zoo.recipes import UNetRecipe, train_unet

        cfg = self.config
        keep = torch.randperm(len(request.retain), generator=gen)[: max(1, int(len(request.retain)
                                                                             * cfg.proxy_retain_fraction))]
        subset = LabeledImages(request.retain.x[keep], request.retain.y[keep])
        recipe = UNetRecipe(steps=cfg.proxy_steps, batch_size=cfg.batch_size, lr=cfg.proxy_lr,
                            warmup_steps=min(50, cfg.proxy_steps), seed=request.seed + 7)
        with cost.phase("proxy"):
            proxy = train_unet(recipe, show_progress=False, data=subset, init=model.fresh(recipe.seed))
        proxy.eval().requires_grad_(False)
        return {"proxy": proxy, "stats": {"proxy_steps": cfg.proxy_steps, "proxy_images": len(subset)}}

    def loss(self, model, batch: Batch, state, gen):
        f, r = batch.forget, batch.retain
        p = self.config.label_dropout
        loss_r = model.loss(r.x, self.encode(model, r.conditions, gen), generator=gen)
        t = torch.randint(0, model.num_train_timesteps, (len(f),), generator=gen).to(f.x.device)
        noise = torch.randn(f.x.shape, generator=gen).to(f.x.device)
        x_t = model.add_noise(f.x, noise, t)
        proxy: DiffusionModel = state["proxy"]
        drop = dropout_mask(len(f), p, gen)
        with torch.no_grad():
            target = proxy.eps(x_t, t, encode_masked(proxy, f.conditions, drop))
        loss_f = (model.eps(x_t, t, encode_masked(model, f.conditions, drop)) - target).pow(2).flatten(1).mean(1)
        n = len(f) + len(r)
        loss = (loss_r.sum() + loss_f.sum()) / n  # each term weighted by its share of the mixed batch
        return loss, {"loss_r": float(loss_r.mean().detach()), "loss_f_proxy": float(loss_f.mean().detach())}
