"""Real behaviour on the shipped models at the quick tier's scaling (the card's budgets, read from the
card): unlearning lowers the judge's forget accuracy, and the literature's orderings hold — finetune
barely forgets, NegGrad hurts utility most, SalUn and EraseDiff forget. Selective Amnesia is not asserted
to forget here: with its Fisher at the released (full-schedule) scale, its EWC anchor holds the weights
through the quick tier's 100 steps at every lr of the selection grid (docs/budget_selection.md); its
paper budget is 20k steps."""

from __future__ import annotations

import pytest
import torch

from benchmark.api import UnlearnRequest
from benchmark.data.mnist import mnist_splits
from benchmark.registry import METHODS
from benchmark.scenarios import load_scenario
from benchmark.zoo import load_judge, load_unet


def _judged(model, judge, classes, n_per=12, steps=10):
    y = torch.tensor(classes).repeat_interleave(n_per)
    x = model.sample(y, seed=3, steps=steps, guidance=2.0)
    return (judge.predict_proba(x).argmax(1) == y).float()


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    base, judge = load_unet("mnist-unet-base"), load_judge()
    forget, retain = mnist_splits().forget_retain(0)
    return base, judge, UnlearnRequest(forget, retain, 0, list(range(1, 10)), 10, seed=0)


@pytest.fixture(scope="module")
def outcomes(setting):
    base, judge, request = setting
    sc = load_scenario("mnist-class")
    out = {"original": base}
    for name in ("finetune", "neggrad", "salun", "erasediff"):
        cls = METHODS.get(name)
        out[name] = cls(cls.make_config(sc.method_config("quick", name))).unlearn(base, request).model
    return {name: (float(_judged(m, judge, [0]).mean()), float(_judged(m, judge, [1, 4, 7], n_per=8).mean()))
            for name, m in out.items()}


def test_the_literatures_orderings_hold_at_the_quick_scaling(outcomes):
    forget = {k: v[0] for k, v in outcomes.items()}
    retain = {k: v[1] for k, v in outcomes.items()}
    assert forget["original"] >= 0.9
    assert forget["finetune"] >= 0.7  # barely forgets
    for name in ("salun", "erasediff"):
        assert forget[name] <= 0.3, (name, forget)
    assert retain["neggrad"] == min(retain.values()) and retain["neggrad"] < 0.8  # hurts utility most
    for name in ("finetune", "salun", "erasediff"):
        assert retain[name] >= 0.85, (name, retain)
