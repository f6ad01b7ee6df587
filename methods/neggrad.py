"""NegGrad: gradient ascent on the forget set D_f (maximise its ordinary denoising loss).

As in the SalUn / EraseDiff baselines. Their released DDPM code ascended on the *retain* batch by
mistake; this is the method as described (ascent on D_f). It collapses utility if run long, so it is
capped by its step budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import FineTuneConfig, FineTuningMethod


@dataclass
class NegGradConfig(FineTuneConfig):
    steps: int = 288
    batch_size: int = 128
    lr: float = 1e-5


class NegGrad(FineTuningMethod):
    name = "neggrad"
    paper = "Gradient ascent baseline (Golatkar et al., CVPR 2020; as evaluated in SalUn, ICLR 2024)"
    supports = frozenset({"class", "text"})
    Config = NegGradConfig

    def loss(self, model, batch, state, gen):
        f = batch.forget
        forget_loss = model.loss(f.x, model.encode(f.conditions), generator=gen).mean()
        return -forget_loss, {"forget_loss": float(forget_loss.detach())}
