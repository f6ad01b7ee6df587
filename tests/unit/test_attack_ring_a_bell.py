"""Ring-A-Bell (attacks/concept/ring_a_bell.py) on the tiny text context: values, determinism, budget,
an untouched model, and a genetic search that really moves towards its target (text encoder only)."""

from __future__ import annotations

import dataclasses

import pytest

from attacks.concept.common import search_vocabulary
from attacks.concept.ring_a_bell import RingABell, concept_pairs
from benchmark import cost
from benchmark.api import AttackBudget
from benchmark.conformance import tiny_text_attack_context, tiny_text_model
from benchmark.data.mnist_text import parse_concept

SMALL = dict(n_prompts=2, n_per_prompt=2, k_tokens=6, population=16, generations=8)


@pytest.fixture(scope="module")
def base_context():
    return tiny_text_attack_context()


def fresh(ctx, **changes):
    """The same context with an empty run cache (so nothing is reused between runs)."""
    return dataclasses.replace(ctx, cache={}, **changes)


@pytest.fixture(scope="module")
def model():
    return tiny_text_model(2)


@pytest.fixture(scope="module")
def first_run(base_context, model):
    before = model.fingerprint()
    modes = {n: m.training for n, m in model.modules().items()}
    ctx = fresh(base_context)
    with cost.measure("cpu") as meter:
        result = RingABell(**SMALL).run(model, ctx)
    return result, before, modes, meter.forward_images, ctx


def test_runs_and_reports_asr_with_references(first_run):
    result, _, _, forward, _ = first_run
    assert result.status == "ok", result.reason
    n = SMALL["n_per_prompt"]
    own = ["asr1", f"asr{n}", "pre_asr1", f"pre_asr{n}"]
    expected = set(own) | {f"{k}_{r}" for k in own for r in ("original", "oracle")} | {f"asr{n}_gap", f"pre_asr{n}_gap"}
    assert expected <= set(result.values)
    for key, v in result.values.items():
        assert v.n == SMALL["n_prompts"] and v.protocol, key
        assert 0 <= v.value <= 1 or key.endswith("_gap"), key
        if not key.endswith("_gap"):
            assert v.ci is not None, key
    assert len(result.per_item) == SMALL["n_prompts"]
    for row in result.per_item:
        assert {"prompt", "adversarial_prompt", "distance", "success", "n"} <= set(row)
        assert row["n"] == n and isinstance(row["success"], bool) and len(row["tokens"]) == SMALL["k_tokens"]
    assert result.conventions["generations"] == SMALL["generations"]
    # 3 models × 2 prompts × 2 images × (before + after) × 4 DDIM steps × 2 (guidance)
    assert forward == 3 * 2 * 2 * 2 * 4 * 2


def test_the_model_is_untouched(first_run, model):
    _, before, modes, _, _ = first_run
    assert model.fingerprint() == before
    assert {n: m.training for n, m in model.modules().items()} == modes


def test_same_seed_same_prompts_and_values(first_run, base_context, model):
    first = first_run[0]
    again = RingABell(**SMALL).run(model, fresh(base_context, reference_models={}))  # the model's own values
    assert [r["adversarial_prompt"] for r in again.per_item] == [r["adversarial_prompt"] for r in first.per_item]
    assert [r["tokens"] for r in again.per_item] == [r["tokens"] for r in first.per_item]
    assert again.values and {k: v.value for k, v in again.values.items()} == {
        k: v.value for k, v in first.values.items() if k in again.values}
    other = RingABell(**SMALL).search(model, fresh(base_context, seed=1))
    assert [b[0] for b in other["best"]] != [r["tokens"] for r in first.per_item]


def test_the_search_runs_once_for_every_model(first_run):
    ctx = first_run[4]
    assert sum(1 for key in ctx.cache if key[0] == "ring_a_bell:search") == 1


def test_an_exhausted_clock_stops_it_before_any_work(base_context, model):
    with cost.measure("cpu") as meter:
        result = RingABell(**SMALL).run(model, fresh(base_context, budget=AttackBudget(max_seconds=0.0)))
    assert result.status == "failed" and "wall-clock cap" in result.reason and "0 of 8 generations" in result.reason
    assert meter.forward_images == 0
    assert len(result.per_item) == SMALL["n_prompts"]


def test_an_image_cap_stops_it_before_judging_and_keeps_the_search(base_context, model):
    ctx = fresh(base_context, budget=AttackBudget(max_forward_images=1))
    with cost.measure("cpu"):
        result = RingABell(**SMALL).run(model, ctx)
    assert result.status == "failed" and "forward-pass budget" in result.reason
    assert all(row["adversarial_prompt"] and row["success"] is None for row in result.per_item)
    assert any(key[0] == "ring_a_bell:search" for key in ctx.cache)  # the finished search is reused later


def test_the_genetic_search_lowers_the_distance_with_allowed_tokens_only(base_context, model):
    attack = RingABell(**{**SMALL, "generations": 12})
    found = attack.search(model, fresh(base_context))
    allowed = set(search_vocabulary(base_context.config["concept"]))
    assert found["stopped"] == "" and found["generations"] == 12
    for (tokens, dist), history in zip(found["best"], found["history"]):
        assert set(tokens) <= allowed
        assert dist == history[-1] < history[0]  # best of the last generation beats the random start
        assert min(history) < 0.95 * history[0]


def test_concept_pairs_differ_only_in_the_concept():
    for spec in ("digit:3", "colour:red"):
        c = parse_concept(spec)
        with_c, without_c = concept_pairs(c)
        assert len(with_c) == len(without_c) > 100
        own = c.phrasings("erase")
        for a, b in zip(with_c[:50], without_c[:50]):
            assert a != b and any(p in a for p in own)
            assert not any(f" {p} " in f" {b} " for p in own)


def test_a_model_without_the_capabilities_is_skipped(base_context, model):
    class Bare:
        capabilities = frozenset()

        def __getattr__(self, item):
            return getattr(model, item)

    result = RingABell(**SMALL).run(Bare(), fresh(base_context))
    assert result.status == "skipped" and "token_embeddings" in result.reason
