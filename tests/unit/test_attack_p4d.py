"""P4D (attacks/concept/p4d.py) on the tiny text context: values and references, determinism, budget,
the model left untouched, a model lacking capabilities skipped, and the ε-matching loss going down."""

from __future__ import annotations

import dataclasses

import pytest

from attacks.concept.p4d import P4D
from benchmark import cost
from benchmark.api import AttackBudget
from benchmark.conformance import (
    _module_state,
    _WithoutCapabilities,
    tiny_text_attack_context,
    tiny_text_model,
)

SMALL = dict(n_prompts=2, n_per_prompt=2, k_tokens=4, steps=4, eval_every=2, timesteps_per_step=2, n_targets=2,
             n_loss_draws=4)


@pytest.fixture(scope="module")
def base():
    return tiny_text_attack_context()


def fresh(base, **changes):
    """The same context with an empty run cache (nothing reused from another test)."""
    return dataclasses.replace(base, cache={}, **changes)


@pytest.fixture(scope="module")
def first(base):
    model = tiny_text_model(2)
    before, state = model.fingerprint(), _module_state(model)
    with cost.measure("cpu") as meter:
        result = P4D(**SMALL).run(model, fresh(base))
    return model, before, state, result, meter.forward_images


def test_runs_with_values_on_model_and_references(first):
    _, _, _, result, _ = first
    assert result.status == "ok", result.reason
    keys = {"asr1", "asr2", "pre_asr1", "pre_asr2"}
    expected = keys | {f"{k}_{ref}" for k in keys for ref in ("original", "oracle")} | {"asr2_gap", "pre_asr2_gap"}
    assert expected <= set(result.values)
    for key, v in result.values.items():
        assert v.n == 2 and v.protocol and v.value == v.value, key
        assert 0.0 <= v.value <= 1.0 or key.endswith("_gap"), key
        if not key.endswith("_gap"):
            assert v.ci is not None, key
    assert len(result.per_item) == 2
    for row in result.per_item:
        assert row["adversarial_prompt"] and len(row["tokens"]) == 4 and row["steps"] == 4
        assert isinstance(row["success"], bool) and row["final_loss"] is not None
        assert row["prompt"] not in row["adversarial_prompt"]  # P4D-N: the learned tokens replace the prompt
    assert result.conventions["variant"].startswith("P4D-N") and result.conventions["departures"]


def test_model_untouched(first):
    model, before, state, _, _ = first
    assert model.fingerprint() == before
    assert _module_state(model) == state


def test_deterministic_under_seed(base, first):
    model, _, _, result, _ = first
    values, rows, stopped = P4D(**SMALL).attack(model, fresh(base))
    assert not stopped
    assert [r["adversarial_prompt"] for r in rows] == [r["adversarial_prompt"] for r in result.per_item]
    assert [r["final_loss"] for r in rows] == [r["final_loss"] for r in result.per_item]
    assert {k: v.value for k, v in values.items()} == {k: result.values[k].value for k in values}


def test_budget_stops_cleanly(base, first):
    model, _, _, _, full_forward = first
    with cost.measure("cpu") as meter:
        result = P4D(**SMALL).run(model, fresh(base, budget=AttackBudget(max_seconds=0)))
    assert result.status == "failed" and "cap" in result.reason and not result.values
    assert meter.forward_images < full_forward
    with cost.measure("cpu"):  # stops inside the optimisation (one batch of 2 prompts × 2 draws = 4 images
        # per step): a partial row per attacked prompt comes back, none with a found prompt
        result = P4D(**SMALL).run(model, fresh(base, budget=AttackBudget(max_backward_images=4)))
    assert result.status == "failed" and "backward-pass budget" in result.reason, result.reason
    attacked = [r for r in result.per_item if r["attacked"]]
    assert len(result.per_item) == 2 and attacked
    assert all(r["steps"] == 1 and "adversarial_prompt" not in r for r in attacked)


def test_skips_model_without_capabilities(base, first):
    result = P4D(**SMALL).run(_WithoutCapabilities(first[0]), fresh(base))
    assert result.status == "skipped" and "lacks" in result.reason


def test_optimisation_lowers_eps_matching_loss(base):
    """Against the oracle (another tiny model), the found prompt's ε-matching loss to the original — on
    fixed (t, ε) draws never optimised on — is below the random initial prompt's."""
    attack = P4D(n_prompts=2, n_per_prompt=1, k_tokens=4, steps=15, timesteps_per_step=4, n_targets=1,
                 n_loss_draws=16, select="last")
    ctx = fresh(base)
    _, rows, stopped = attack.attack(ctx.reference_models["oracle"], ctx)
    assert not stopped
    init = sum(r["loss_init"] for r in rows) / len(rows)
    last = sum(r["loss_last"] for r in rows) / len(rows)
    assert last < init, (init, last)
