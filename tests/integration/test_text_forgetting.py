"""Real behaviour on the shipped text-to-image model: ESD, UCE and EraseDiff lower the judge's forget
accuracy on the erase phrasings of digit 0, finetune does not. Skipped (with the reason) while the base
model is still being trained by its resumable recipe and is not in the zoo."""

from __future__ import annotations

import pytest
import torch

from benchmark import zoo
from benchmark.scenarios import load_scenario
from benchmark.scenarios.setup import setup_for

pytestmark = pytest.mark.skipif(zoo.locate("mnist-text-unet-base") is None,
                                reason="mnist-text-unet-base is not shipped yet (train: unlearnbench zoo train "
                                       "mnist-text-unet-base --out benchmark/zoo)")


def _forget_accuracy(model, judge, n=24, steps=10):
    prompts = [f"{w} in {c}" for w in ("zero", "the digit 0") for c in ("red", "green", "blue", "yellow")] * (n // 8)
    x = model.sample(prompts, seed=3, steps=steps, guidance=5.0)
    return float((judge.predict_heads(x)["digit"] == 0).float().mean())


def test_concept_erasers_forget_where_finetune_does_not():
    from methods.erasediff import EraseDiff
    from methods.esd import ESD
    from methods.finetune import Finetune
    from methods.uce import UCE

    torch.manual_seed(0)
    setup = setup_for(load_scenario("mnist-text-object"), log=lambda *_: None)
    base, judge = setup.base, setup.judge
    request = setup.request(seed=0, device="cpu")
    assert _forget_accuracy(base, judge) >= 0.8
    assert _forget_accuracy(UCE().unlearn(base, request).model, judge) <= 0.3
    assert _forget_accuracy(ESD(steps=100, ddim_steps=20).unlearn(base, request).model, judge) <= 0.5
    assert _forget_accuracy(EraseDiff(steps=60, batch_size=32).unlearn(base, request).model, judge) <= 0.5
    assert _forget_accuracy(Finetune(steps=60, batch_size=32).unlearn(base, request).model, judge) >= 0.7
