"""Every registered method: contract checks, one real cell at the tier, and its declared expectations."""

from __future__ import annotations

import pytest

from benchmark.registry import METHODS

REFERENCE_METHODS = ("original", "retrain")


def _scenario(cls: type) -> str:
    return "mnist-class" if "class" in getattr(cls, "supports", {"class"}) else "mnist-text-object"


def _needs(scenario: str) -> str:
    """'' if the scenario's base model is shipped or cached, else why the cell cannot run here."""
    from benchmark import zoo
    from benchmark.scenarios import load_scenario

    base = load_scenario(scenario).models["base"]["zoo"]
    return "" if zoo.locate(base) else f"{scenario}'s base model {base!r} is not shipped or cached"


@pytest.mark.parametrize("name", METHODS.names())
def test_contract(name: str) -> None:
    from benchmark.conformance import check_method
    from benchmark.submission import _card_or_empty

    cls = METHODS.get(name)
    results = check_method(cls, _card_or_empty(name, cls))
    failed = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    assert not failed, f"{name} ({METHODS.origin(name)}) fails the contract:\n" + "\n".join(failed)


@pytest.mark.parametrize("name", METHODS.names())
def test_tier_cell(name: str, unlearnbench) -> None:
    cls = METHODS.get(name)
    scenario = _scenario(cls)
    missing = _needs(scenario)
    if missing:
        pytest.skip(missing)
    row = unlearnbench.run(name, scenario=scenario, tier="smoke")
    rec = row.records[0]
    cap = rec["compute"].get("max_steps")
    budget = cap if cap is not None else rec["method"]["config"].get("steps")
    if isinstance(budget, int):
        assert all(s <= budget for s in row.steps), f"{name} ran {row.steps} steps, budget {budget}"
    if name not in REFERENCE_METHODS:
        assert rec["model"]["changed"], f"{name} returned the input weights unchanged"
    misses = [miss for metric, rule in (getattr(cls, "expectations", None) or {}).get(row.tier, {}).items()
              if (miss := _check(row, metric, rule))]
    assert not misses, "\n".join(misses)


def _check(row, metric: str, rule: str) -> str:
    from benchmark.expectations import check_expectation

    return check_expectation(row, metric, rule)
