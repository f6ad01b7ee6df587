"""Finetune (FT): continue training on the retain set D_r with the ordinary denoising loss.

The weakest baseline of the unlearning literature (e.g. Fan et al., SalUn, ICLR 2024; Wu et al.,
EraseDiff, arXiv 2401.05779): it relies on catastrophic forgetting and barely forgets. Trained like
EraseDiff's DDPM runs (Adam, clip 1.0, EMA 0.99 sampled from), so the two differ only in their loss;
label dropout 0.1 on D_r as in the released baseline code (the unconditional path keeps training).
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import FineTuneConfig, FineTuningMethod


@dataclass
class FinetuneConfig(FineTuneConfig):
    steps: int = 288  # same outer-step budget as EraseDiff's DDPM default
    batch_size: int = 128
    lr: float = 1e-4
    ema_decay: float | None = 0.99
    label_dropout: float = 0.1


class Finetune(FineTuningMethod):
    name = "finetune"
    paper = "Finetune baseline, as evaluated in Fan et al., SalUn (ICLR 2024) and Wu et al., EraseDiff (arXiv 2401.05779)"
    supports = frozenset({"class", "text"})
    Config = FinetuneConfig

    def loss(self, model, batch, state, gen):
        r = batch.retain
        return model.loss(r.x, self.encode(model, r.conditions, gen), generator=gen).mean(), {}
