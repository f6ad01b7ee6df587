"""Real behaviour on the shipped text-to-image model: ESD, UCE and EraseDiff lower the judge's forget
accuracy on the erase phrasings of digit 0, finetune does not — each at the card's quick-tier budget
(learning rates chosen on the validation concept, docs/budget_selection.md). Skipped (with the reason) while the base
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


def _at_quick_budget(name: str, **cap):
    """The method as the card's quick tier configures it (steps, batch, validation-selected lr), with
    ``cap`` (fewer steps) on top to keep the test short."""
    from benchmark.registry import METHODS

    cls = METHODS.get(name)
    return cls(cls.make_config({**load_scenario("mnist-text-object").method_config("quick", name), **cap}))


def test_concept_erasers_forget_where_finetune_does_not():
    from methods.uce import UCE

    torch.manual_seed(0)
    setup = setup_for(load_scenario("mnist-text-object"), log=lambda *_: None)
    base, judge = setup.base, setup.judge
    request = setup.request(seed=0, device="cpu")
    before = _forget_accuracy(base, judge)
    assert before >= 0.8
    assert _forget_accuracy(UCE().unlearn(base, request).model, judge) <= 0.3
    assert _forget_accuracy(_at_quick_budget("esd-u").unlearn(base, request).model, judge) <= 0.5
    # EraseDiff with the released code's text-to-image λ = 1.0 at its validation-selected lr (1e-3). The paper's
    # adaptive λ (η = 0.1) is not asserted: at the largest lr that kept retain accuracy >= 0.95 on the
    # validation digit (3e-4) it only took digit 6 from 1.0 to 0.65 and left digit 0 at 0.958 here (measured
    # 2026-11-29) — reported in the README's text tables, not hidden by a test budget chosen to pass.
    assert _forget_accuracy(_at_quick_budget("erasediff-fixed").unlearn(base, request).model, judge) <= 0.5
    assert _forget_accuracy(_at_quick_budget("finetune", steps=60).unlearn(base, request).model, judge) >= 0.7
