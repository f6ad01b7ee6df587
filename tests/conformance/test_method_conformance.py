"""Run the shared contract checks (benchmark.conformance) over every registered method adapter."""

from __future__ import annotations

import pytest

from benchmark.conformance import check_method, smoke_overrides
from benchmark.registry import METHODS


@pytest.mark.parametrize("name", METHODS.names())
def test_method_meets_the_contract(name):
    results = check_method(METHODS.get(name), smoke_overrides(name))
    failed = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    cls = METHODS.get(name)
    assert len(results) == (9 if {"class", "text"} <= set(cls.supports) else 8)


def test_a_broken_adapter_is_reported_not_raised():
    from methods.finetune import Finetune

    class Mutating(Finetune):
        paper = "test"

        def unlearn(self, model, request):
            out = super().unlearn(model, request)
            with __import__("torch").no_grad():
                model.parameters()[0].add_(1.0)  # violates "never mutate the input"
            return out

    results = {r.name: r for r in check_method(Mutating, {"steps": 2, "batch_size": 8})}
    assert not results["leaves the input model untouched"].passed
    assert "input model's weights changed" in results["leaves the input model untouched"].detail
    assert results["changes the weights"].passed
