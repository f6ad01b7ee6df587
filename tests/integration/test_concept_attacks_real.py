"""Concept attacks on the shipped text-to-image model at the card's quick budgets, scored against the
retrained oracle (``-m slow``: ~5 min on 2 cores).

1. Validity: every concept attack's headline value is high on the original (digit 0 is there) and low
   on the digit-0 oracle (it never was) — the measurement behind the README's attack table.
2. The published claim that prompt attacks break UCE (UnlearnDiffAtk: 22% → 80% on SD nudity) is *not*
   reproduced on the embedded model at this budget (card v3, seed 0, UCE with the released preservation
   term: UnlearnDiffAtk ASR 2/8 = its pre-attack 2/8; P4D 0/8 = pre); the test says so as a strict xfail, so
   an attack that starts breaking UCE turns it red and the README's reading must be revisited.
3. On ``mnist-text-style`` (erase red ink) the published claim *is* reproduced: UCE erases red from its
   prompts (pre-attack ASR 0/8) and UnlearnDiffAtk and P4D bring it back (seed 0: 8/8 and 5/8), while the
   same searches leave the red-ink oracle at its pre-attack 0/8 — the erased model still holds the style,
   the oracle never learnt it.
"""

from __future__ import annotations

import functools

import pytest
import torch

from benchmark import zoo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(zoo.locate(name) is None for name in ("mnist-text-unet-base", "mnist-text-unet-retrain-d0",
                                                  "mnist-text-unet-retrain-red")),
        reason="the text base model or an oracle is not shipped (unlearnbench zoo train NAME)"),
]

# attack → its headline value (the first of the values it flags)
HEADLINE = {"concept_asr": "erase_asr4", "unlearndiffatk": "asr", "ring_a_bell": "asr4", "p4d": "asr4",
            "concept_inversion": "recovery_heldout", "context_probe": "recovery", "noise_probe": "recovery"}


@functools.lru_cache(maxsize=2)
def _setup(card: str = "mnist-text-object"):
    from benchmark.scenarios import load_scenario
    from benchmark.scenarios.setup import setup_for

    sc = load_scenario(card)
    setup = setup_for(sc, log=lambda *_: None)
    return sc, setup, setup.attack_context("quick", seed=0)


def _run(name: str, model, card: str = "mnist-text-object"):
    from benchmark.registry import ATTACKS

    sc, _, ctx = _setup(card)
    cls = ATTACKS.get(name)
    result = cls(cls.make_config(sc.attack_config("quick", name))).run(model, ctx)
    assert result.status == "ok", result.reason
    return {k: m.value for k, m in result.values.items()}


@pytest.mark.parametrize("name", sorted(HEADLINE))
def test_each_attack_separates_the_original_from_the_oracle(name):
    torch.manual_seed(0)
    _, setup, _ = _setup()
    v = _run(name, setup.base)
    key = HEADLINE[name]
    assert v[key] >= v[f"{key}_oracle"] + 0.5, v


@pytest.mark.xfail(strict=True, reason="not reproduced on the embedded model at the quick budget: UCE's "
                   "UnlearnDiffAtk ASR equals its pre-attack ASR (README, text-track attack table)")
def test_unlearndiffatk_breaks_uce():
    from methods.uce import UCE

    _, setup, _ = _setup()
    erased = UCE().unlearn(setup.base, setup.request(seed=0, device="cpu")).model
    v = _run("unlearndiffatk", erased)
    assert v["asr"] >= v["pre_asr4"] + 0.3, v


@pytest.mark.parametrize("name, key", [("unlearndiffatk", "asr"), ("p4d", "asr4")])
def test_prompt_searches_bring_red_back_from_uce_but_not_from_the_oracle(name, key):
    from methods.uce import UCE

    torch.manual_seed(0)
    _, setup, _ = _setup("mnist-text-style")
    erased = UCE().unlearn(setup.base, setup.request(seed=0, device="cpu")).model
    v = _run(name, erased, "mnist-text-style")
    assert v["pre_asr4"] <= 0.125, v  # UCE erased red from its prompts …
    assert v[key] >= v["pre_asr4"] + 0.5, v  # … and the search finds it again
    assert v[f"{key}_oracle"] <= v["pre_asr4_oracle"] + 0.125, v  # the oracle never learnt it: nothing to find
