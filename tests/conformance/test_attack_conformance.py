"""Run the shared attack contract checks (benchmark.conformance.check_attack) over every registered attack."""

from __future__ import annotations

import pytest

from benchmark.conformance import attack_smoke_overrides, check_attack
from benchmark.registry import ATTACKS


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_meets_the_contract(name):
    cls = ATTACKS.get(name)
    scenario = "mnist-class" if "class" in cls.tracks else "mnist-text-object"
    results = check_attack(cls, attack_smoke_overrides(name, scenario))
    failed = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert len(results) == 6


def test_an_attack_that_ignores_its_budget_is_reported():
    from attacks.mia.loss_threshold import LossThreshold

    class Greedy(LossThreshold):
        def _scores(self, model, data, split_id, seed, clock):
            from benchmark.api import AttackBudget

            return super()._scores(model, data, split_id, seed, AttackBudget().start())  # pretends there is no cap

    results = {r.name: r for r in check_attack(Greedy, {"include_all_classes": False})}
    assert not results["stops at an exhausted budget and says so"].passed
    assert results["same seed → same values"].passed


def test_bad_secmi_settings_are_refused_up_front():
    from attacks.mia.secmi import SecMI

    with pytest.raises(ValueError, match="k > 0"):
        SecMI.make_config({"k": 0})
