"""Concept attacks (text track): prompts, vocabulary, slots, determinism, budgets, references."""

from __future__ import annotations

import warnings

import pytest
import torch

from attacks.concept.asr import ConceptASR
from attacks.concept.common import (
    SlotPrompt,
    concept_of,
    erase_prompts,
    paraphrase_prompts,
    search_vocabulary,
)
from attacks.concept.concept_inversion import ConceptInversion
from attacks.concept.p4d import P4D
from attacks.concept.unlearndiffatk import UnlearnDiffAtk, project_simplex
from benchmark.api import AttackBudget
from benchmark.conformance import tiny_text_attack_context
from benchmark.data.mnist_text import parse_concept

warnings.filterwarnings("ignore", message="No pretrained weights")


@pytest.fixture(scope="module")
def ctx():
    return tiny_text_attack_context()


def test_paraphrase_prompts_swap_the_erased_words_for_unseen_ones(ctx):
    concept = concept_of(ctx)
    erase, para = erase_prompts(ctx, 4), paraphrase_prompts(ctx, 4)
    assert len(erase) == len(para) > 0
    for e, p in zip(erase, para):
        assert any(w in e for w in concept.phrasings("erase"))
        assert not any(w in p.split() for w in ("three", "3")) and any(w in p for w in concept.phrasings("paraphrase"))


def test_search_vocabulary_excludes_only_the_concepts_own_tokens():
    from benchmark.models.tiny_clip import tokenizer

    tok = tokenizer()
    vocab = set(search_vocabulary(parse_concept("digit:0")))
    for word in ("zero", "0", "nought"):
        assert not set(tok.encode(word)) & vocab, word
    for word in ("one", "seven", "digit", "the", "red"):  # other digits and shared words stay
        assert set(tok.encode(word)) <= vocab, word
    assert set(tok.encode("red")).isdisjoint(search_vocabulary(parse_concept("colour:red")))


def test_slot_prompt_places_tokens_exactly_where_a_plain_prompt_would(ctx):
    model = ctx.reference_models["original"]
    blue = model.tokenize(["blue"])[0][1].item()
    for prompt in ("three in red", "a handwritten {} in red"):
        slot = SlotPrompt(model, prompt, 2)
        text = slot.with_tokens([blue, blue])
        assert torch.equal(slot.filled([blue, blue])[0], model.tokenize([text])[0])
        emb = model.text_encoder.token_embedding.weight[torch.tensor([blue, blue])]
        assert torch.allclose(slot.states(emb), model.encode([text]), atol=1e-5)


def test_simplex_projection():
    p = project_simplex(torch.randn(5, 9) * 3)
    assert torch.allclose(p.sum(-1), torch.ones(5), atol=1e-6) and (p >= 0).all()
    q = torch.softmax(torch.randn(2, 4), -1)
    assert torch.allclose(project_simplex(q), q, atol=1e-6)  # already on the simplex: unchanged


ATTACKS = [
    ConceptASR(n_prompts=2, n_per_prompt=2),
    UnlearnDiffAtk(n_prompts=2, steps=4, check_every=2, n_per_prompt=2),
    ConceptInversion(n_images=4, steps=3, batch_size=2, n_prompts=2, n_per_prompt=2),
    P4D(n_prompts=2, k_tokens=3, steps=3, eval_every=1, n_loss_draws=2, timesteps_per_step=1, n_targets=2,
        n_per_prompt=2),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_concept_attacks_are_deterministic_scored_against_the_oracle_and_leave_the_model_alone(attack):
    ctx = tiny_text_attack_context()
    model = ctx.reference_models["oracle"].clone()
    before = model.fingerprint()
    first = attack.run(model, ctx)
    assert first.status == "ok", first.reason
    assert model.fingerprint() == before
    assert any(k.endswith("_oracle") for k in first.values) and any(k.endswith("_gap") for k in first.values)
    for v in first.values.values():
        assert v.n > 0 and v.protocol
    again = attack.run(model, tiny_text_attack_context())
    assert {k: v.value for k, v in again.values.items()} == {k: v.value for k, v in first.values.items()}
    assert again.per_item == first.per_item


@pytest.mark.parametrize("attack", ATTACKS[1:], ids=lambda a: a.name)
def test_a_spent_budget_stops_the_attack_with_a_reason(attack):
    ctx = tiny_text_attack_context(budget=AttackBudget(max_seconds=0.0))
    result = attack.run(ctx.reference_models["oracle"].clone(), ctx)
    assert result.status == "failed" and "wall-clock" in result.reason


@pytest.mark.parametrize("attack", [UnlearnDiffAtk(n_prompts=3, steps=4, check_every=2, n_per_prompt=2),
                                    P4D(n_prompts=3, k_tokens=3, steps=2, eval_every=1, n_loss_draws=2,
                                        timesteps_per_step=1, n_targets=2, n_per_prompt=2)], ids=lambda a: a.name)
@pytest.mark.parametrize("judged", [1.0, 0.0])
def test_a_prompt_that_already_shows_the_concept_is_a_success_at_step_zero(attack, judged):
    """Step 0 of a prompt attack is the prompt itself: with a judge that sees the concept everywhere every
    prompt succeeds unattacked (post = pre = 1); with one that never does every prompt is attacked (ASR 0)."""
    ctx = tiny_text_attack_context()
    ctx.shows_concept = lambda x: torch.full((len(x),), judged)  # type: ignore[method-assign]
    model = ctx.reference_models["oracle"].clone()
    values, rows, stopped = attack.attack(model, ctx)
    assert stopped == "" and len(rows) == len(erase_prompts(ctx, 3)) > 1
    n = attack.config.n_per_prompt
    assert values[f"pre_asr{n}"].value == judged
    assert values[f"asr{n}" if attack.name == "p4d" else "asr"].value == judged
    assert all(r["attacked"] == (judged == 0.0) for r in rows)
    if judged:
        assert all(r["success"] for r in rows)


@pytest.mark.parametrize("attack", [UnlearnDiffAtk(n_prompts=8, steps=6, check_every=2, n_per_prompt=1),
                                    P4D(n_prompts=8, k_tokens=3, steps=2, eval_every=1, n_loss_draws=2,
                                        timesteps_per_step=1, n_targets=2, n_per_prompt=1, select="last")],
                         ids=lambda a: a.name)
def test_a_prompt_is_judged_from_the_same_noise_before_and_after_its_tokens_change(attack):
    """The released codes judge the clean and each adversarial prompt from one seed. With a model that
    ignores its text (cross-attention outputs zeroed), changing tokens cannot change an image, so an attack
    must never turn a failure into a success — a fresh noise draw per check would, by chance."""
    ctx = tiny_text_attack_context()
    ctx.forget_prompts = tuple(f"{p} in {c}" for c in ("red", "green", "blue", "yellow") for p in ("three", "the digit 3"))
    # about a quarter of all images "show the concept", as a fixed function of the pixels
    ctx.shows_concept = lambda x: (x.flatten(1).sum(1) * 1e3 % 1.0 > 0.75).float()  # type: ignore[method-assign]
    model = ctx.reference_models["oracle"].clone()
    with torch.no_grad():
        for name, p in model.unet.named_parameters():
            if "attn2.to_out" in name:
                p.zero_()
    values, rows, stopped = attack.attack(model, ctx)
    n = attack.config.n_per_prompt
    assert stopped == "" and any(r["attacked"] for r in rows)  # some prompts failed at step 0 and were attacked
    assert values[f"asr{n}" if attack.name == "p4d" else "asr"].value == values[f"pre_asr{n}"].value


def test_judging_prompts_in_one_batch_gives_each_prompt_its_own_seeded_images(monkeypatch):
    """``judge_conditions(index=…)`` samples every prompt from its own seed in one batched call: the images
    (hence the judgements) are those of one ``sample`` call per prompt, and a wrapper whose ``sample`` has
    no ``noise=`` (an older out-of-tree model) is judged one prompt at a time, with the same result."""
    import attacks.concept.common as common

    ctx = tiny_text_attack_context()
    model = ctx.reference_models["original"]
    prompts = ["zero", "the digit 0 in red", "a handwritten seven"]
    seen: list = []
    ctx.shows_concept = lambda x: (seen.append(x.clone()), (x.flatten(1).mean(1) > 0).float())[1]  # type: ignore
    batched = common.judge_conditions(model, prompts, ctx, 2, seed=5, steps=3, index=[0, 4, 7])
    images = seen.pop()
    one_by_one = [model.sample([p, p], seed=5 + common.PROMPT_SEED_STRIDE * i, steps=3, guidance=ctx.guidance)
                  for p, i in zip(prompts, [0, 4, 7])]
    assert torch.equal(images, torch.cat(one_by_one))
    monkeypatch.setattr(common, "takes_noise", lambda m: False)
    assert torch.equal(common.judge_conditions(model, prompts, ctx, 2, seed=5, steps=3, index=[0, 4, 7]), batched)
    assert torch.equal(torch.cat(seen), images)
    assert common.judge_conditions(model, [], ctx, 2, seed=5, steps=3, index=[]).shape == (0, 2)


def test_concept_attacks_refuse_a_class_track_context(tiny_model):
    from benchmark.conformance import tiny_attack_context

    result = ConceptASR().run(tiny_model, tiny_attack_context())
    assert result.status == "skipped" and "text_cond" in result.reason
