"""Real behaviour on the shipped models: unlearning lowers the judge's forget accuracy."""

from __future__ import annotations

import torch

from benchmark.api import UnlearnRequest
from benchmark.data.mnist import mnist_splits
from benchmark.zoo import load_judge, load_unet
from methods.erasediff import EraseDiff
from methods.finetune import Finetune


def _forget_accuracy(model, judge, n=24, steps=10):
    x = model.sample([0] * n, seed=3, steps=steps, guidance=2.0)
    return float((judge.predict_proba(x).argmax(1) == 0).float().mean())


def test_erasediff_forgets_where_finetune_does_not():
    torch.manual_seed(0)
    base, judge = load_unet("mnist-unet-base"), load_judge()
    forget, retain = mnist_splits().forget_retain(0)
    request = UnlearnRequest(forget, retain, 0, list(range(1, 10)), 10, seed=0)
    before = _forget_accuracy(base, judge)
    # the quick tier's scaling (lr 1e-3, batch 64), fewer steps
    erased = EraseDiff(steps=60, batch_size=64, lr=1e-3, inner_steps=1).unlearn(base, request).model
    tuned = Finetune(steps=60, batch_size=64, lr=1e-3).unlearn(base, request).model
    assert before >= 0.9
    assert _forget_accuracy(erased, judge) <= 0.3
    assert _forget_accuracy(tuned, judge) >= 0.7
