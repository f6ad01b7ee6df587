"""The text track's data, tokenizer, model wrapper and closed-form / gradient methods on tiny models."""

from __future__ import annotations

import re

import pytest
import torch

from benchmark import UnlearnbenchError
from benchmark.conformance import tiny_text_model, tiny_text_request
from benchmark.data.mnist_text import (
    COLOUR_PHRASINGS,
    DIGIT_PHRASINGS,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    caption_table,
    mnist_text_splits,
    parse_concept,
)


def _words(phrases):
    return {w for p in phrases for w in re.findall(r"\w+", p)}


def test_paraphrases_share_no_word_with_erase_phrasings():
    for table in (DIGIT_PHRASINGS, COLOUR_PHRASINGS):
        for erase, para in table.values():
            assert not (_words(erase) & _words(para)), (erase, para)


def test_held_out_templates_never_reach_training_captions():
    vocab, ids = caption_table()
    assert ids.shape == (10, 4, len(TRAIN_TEMPLATES) * 16)
    heldout_stems = [t.split("{")[0] + "|" + t.split("}")[-1] for t in HELDOUT_TEMPLATES]
    for caption in vocab:
        assert not caption.startswith("an image showing"), caption
        assert ": " not in caption, caption
    assert heldout_stems  # the two held-out templates have a distinctive shape checked above


@pytest.mark.parametrize("concept", ["digit:0", "colour:red"])
def test_paraphrases_never_reach_a_method(concept):
    c = parse_concept(concept)
    request = tiny_text_request(concept, n_forget=200, n_retain=400)
    pattern = re.compile(r"\b(" + "|".join(c.phrasings("paraphrase")) + r")\b")
    for data in (request.forget, request.retain):
        for caption in data.conditions:
            assert not pattern.search(caption), caption
    assert all(any(p in cap for p in c.phrasings("erase")) for cap in request.forget.conditions)
    assert not set(request.forget_target) & set(c.phrasings("paraphrase"))


def test_rendered_members_keep_the_class_split_and_balance_colours():
    from benchmark.data.mnist import mnist_splits

    text, grey = mnist_text_splits(0), mnist_splits(0)
    assert torch.equal(text.members.digit, grey.members.y)
    assert text.members.x.shape == (4000, 3, 16, 16)
    counts = torch.bincount(text.members.digit * 4 + text.members.colour, minlength=40)
    assert counts.min() == counts.max() == 100
    ink = (text.members.x + 1).sum(dim=(2, 3))  # per-channel ink mass
    red, blue = text.members.colour == 0, text.members.colour == 2
    assert (ink[red, 0] > ink[red, 2]).all() and (ink[blue, 2] > ink[blue, 0]).all()


@pytest.mark.parametrize("bad", ["digit:12", "purple", "colour:", ""])
def test_unknown_concepts_are_refused(bad):
    with pytest.raises(UnlearnbenchError, match="unknown concept"):
        parse_concept(bad)


def test_concepts_parse_from_any_phrasing():
    assert parse_concept("nought").value == 0 and parse_concept("crimson").value == "red"
    assert parse_concept("digit:7").axis == "digit" and parse_concept("blue").axis == "colour"


def test_text_states_match_open_clip_encode_text():
    from benchmark.models.tiny_clip import TextStates, create_clip, pooled_from_states, tokenize

    clip = create_clip(seed=3)
    ids = tokenize(["zero in red", "a drawing of nueve, azure", ""])
    states = TextStates(clip)(ids)
    assert states.shape == (3, 32, 64)
    assert torch.allclose(pooled_from_states(clip, states, ids), clip.encode_text(ids), atol=1e-5)


def test_too_long_prompts_are_refused_not_truncated():
    from benchmark.models.tiny_clip import tokenize

    with pytest.raises(UnlearnbenchError, match="context is 32 tokens"):
        tokenize(["zero " * 40])


def test_text_model_saves_and_reloads_bit_identically(tmp_path):
    from benchmark.models.text_unet import TextConditionalUNet

    model = tiny_text_model()
    model.save_pretrained(tmp_path / "m")
    again = TextConditionalUNet.from_pretrained(tmp_path / "m", text_encoder=model.text_encoder)
    assert again.fingerprint() == model.fingerprint()
    a = model.sample(["zero in red", "nine in blue"], seed=1, steps=3, guidance=5.0)
    b = again.sample(["zero in red", "nine in blue"], seed=1, steps=3, guidance=5.0)
    assert torch.equal(a, b) and a.shape == (2, 3, 16, 16)


def test_sampling_is_batch_size_independent():
    model = tiny_text_model()
    prompts = ["zero in red", "one in green", "two in blue"]
    a = model.sample(prompts, seed=4, steps=3, guidance=3.0, batch_size=3)
    b = model.sample(prompts, seed=4, steps=3, guidance=3.0, batch_size=1)
    assert torch.allclose(a, b, atol=1e-4)  # float reductions differ by batch shape


def test_xattn_subsets_are_the_released_esd_selection():
    """xattn + noxattn + (time embedding, output layer) partition the UNet, as ESD's / EraseDiff's code."""
    model = tiny_text_model()
    x, nx = model.parameters("xattn"), model.parameters("noxattn")
    named = dict(model.modules()["unet"].named_parameters())
    ids = {id(p) for p in x + nx}
    rest = sorted({n.split(".")[0] for n, p in named.items() if id(p) not in ids})
    assert x and nx and len(x) + len(nx) < len(named) and rest == ["conv_norm_out", "conv_out", "time_embedding"]


def test_replace_concept_replaces_whole_words_only():
    from methods.base import replace_concept

    out = replace_concept(["zero written with red ink", "the digit 0 in blue"], ["zero", "the digit 0"],
                          ["one", "seven"])
    assert out == ["one written with red ink", "seven in blue"]
    with pytest.raises(ValueError, match="none of its erase phrasings"):
        replace_concept(["nought in red"], ["zero"], ["one"])


def test_uce_maps_the_concept_to_the_guide_and_keeps_preserved_concepts():
    from methods.uce import UCE, cross_attention_projections

    model, request = tiny_text_model(), tiny_text_request("digit:3")
    out = UCE().unlearn(model, request)
    before = dict(model.unet.named_parameters())
    changed = {n for n, p in out.model.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(("attn2.to_k" in n or "attn2.to_v" in n) for n in changed)
    old_layer = cross_attention_projections(model)[0]
    new_layer = cross_attention_projections(out.model)[0]
    concept = UCE().states_from_last_word(model, ["three"])[0]
    guide = UCE().states_from_last_word(model, [" "])[0][: len(concept)]
    with torch.no_grad():
        target = old_layer(guide)
        assert (new_layer(concept) - target).norm() < 0.5 * (old_layer(concept) - target).norm()
        kept = model.encode(["seven"])[0]
        assert (new_layer(kept) - old_layer(kept)).norm() < 0.5 * (old_layer(concept) - target).norm()


def test_uce_always_preserves_the_empty_prompt_at_the_released_scale():
    """As the paper's script (unified-concept-editing bd5fb51): "" (classifier-free guidance's unconditional
    branch) is preserved beside the given concepts, at max(0.1, 1/number of preserved prompts)."""
    from methods.uce import UCE, cross_attention_projections

    model, request = tiny_text_model(), tiny_text_request("digit:3")
    out = UCE().unlearn(model, request)
    kept = out.stats["preserve_prompts"]
    assert kept[0] == "" and len(kept) == 1 + len(request.remap_targets)
    assert out.stats["preserve_scale"] == max(0.1, 1 / len(kept))
    # with "" left out (the July 2023 script), the unconditional states move more
    without = UCE(UCE.make_config({"preserve": "none", "preserve_scale": 1e-6})).unlearn(model, request).model
    null = model.encode([""])[0]
    old, new, loose = (cross_attention_projections(m)[0] for m in (model, out.model, without))
    with torch.no_grad():
        assert (new(null) - old(null)).norm() < (loose(null) - old(null)).norm()


def test_esd_trains_only_its_parameter_subset():
    from methods.esd import ESD, ESDX

    model = tiny_text_model()
    before = dict(model.unet.named_parameters())
    for cls, must in ((ESDX, "attn2"), (ESD, None)):
        out = cls(steps=2, ddim_steps=4).unlearn(model, tiny_text_request())
        changed = [n for n, p in out.model.unet.named_parameters() if not torch.equal(p, before[n])]
        assert changed
        if must:
            assert all(must in n for n in changed)
        else:
            assert not any("attn2" in n or n.startswith(("time_embedding", "conv_out")) for n in changed)


def test_clip_score_of_matching_captions_beats_mismatched_on_real_images():
    from benchmark import zoo
    from benchmark.data.mnist_text import caption
    from benchmark.metrics.clip_score import clip_scores

    clip = zoo.load_clip()
    held = mnist_text_splits(0).heldout
    idx = torch.arange(0, len(held), 5)  # 200 held-out images
    x, d, c = held.x[idx], held.digit[idx], held.colour[idx]
    template = HELDOUT_TEMPLATES[0]
    match = clip_scores(clip, x, [caption(int(a), int(b), template) for a, b in zip(d, c)])
    wrong_digit = clip_scores(clip, x, [caption((int(a) + 1) % 10, int(b), template) for a, b in zip(d, c)])
    wrong_colour = clip_scores(clip, x, [caption(int(a), (int(b) + 1) % 4, template) for a, b in zip(d, c)])
    assert match.mean() > wrong_digit.mean() + 5 and match.mean() > wrong_colour.mean() + 5
    assert (match > wrong_digit).float().mean() > 0.9 and (match > wrong_colour).float().mean() > 0.9


def test_tokenizer_and_text_models_load_without_network(tmp_path):
    """Load the tokenizer, the shipped CLIP, judge and a text UNet with every socket refused."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import socket
        def refuse(*a, **k):
            raise OSError("network disabled by the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from benchmark import zoo
        from benchmark.conformance import tiny_text_model
        from benchmark.models.text_unet import TextConditionalUNet
        from benchmark.models.tiny_clip import tokenize
        assert tokenize(["zero in red"]).shape == (1, 32)
        zoo.load_clip(); zoo.load_judge("mnist-text-judge")
        m = tiny_text_model()
        m.save_pretrained(r"FOLDER")
        TextConditionalUNet.from_pretrained(r"FOLDER", text_encoder=m.text_encoder)
        print("ok")
    """).replace("FOLDER", str(tmp_path / "m"))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]


@pytest.mark.parametrize("name", ["loss_threshold", "secmi", "pia", "relearning"])
def test_membership_and_relearning_attacks_run_on_the_text_track(name):
    from benchmark.conformance import attack_smoke_overrides, tiny_text_attack_context
    from benchmark.registry import ATTACKS

    cls = ATTACKS.get(name)
    assert "text" in cls.tracks
    ctx = tiny_text_attack_context()
    model = tiny_text_model(2)
    before = model.fingerprint()
    result = cls(cls.make_config(attack_smoke_overrides(name))).run(model, ctx)
    assert result.status == "ok", result.reason
    assert model.fingerprint() == before
    for value in result.values.values():
        assert value.n > 0 and value.protocol
    if name != "relearning":
        auc = result.values["auc_forget"]
        assert auc.extra["n_members"] == 8 and auc.extra["n_nonmembers"] == 8  # digit 3 × 4 colours × 2
        assert "digit 3" in auc.protocol and "auc_forget_gap" in result.values
    else:
        v = {k: m.value for k, m in result.values.items()}
        assert {"relearn_steps_original", "relearn_steps_oracle", "relearn_steps_gap"} <= set(v)
        assert v["relearn_steps_gap"] == v["relearn_steps"] - v["relearn_steps_oracle"]
        runs = result.values["relearn_steps_oracle"].extra["runs"]
        cfg = cls.make_config(attack_smoke_overrides(name))
        k = cfg.oracle_runs
        assert [r["run"] for r in runs] == list(range(1, k + 1))
        crossed = sorted(cfg.max_steps if r["step"] is None else r["step"] for r in runs)
        assert v["relearn_steps_oracle"] == crossed[k // 2]  # the median of the oracle's runs
        assert len({r["curve"][0]["forget_accuracy"] for r in runs}) == 1  # the untouched oracle, judged once
        rank = result.values["relearn_steps"].extra["oracle_rank"]
        assert rank["oracle_runs"] == k and rank["p_value"] == (1 + rank["oracle_runs_as_fast"]) / (k + 1)


def test_text_unet_training_resumes_exactly_from_its_checkpoint(tmp_path):
    """An interrupted recipe continues from its last checkpoint and ends with the weights an uninterrupted
    run gets (same data order, optimiser state, schedule and EMA)."""
    from benchmark.zoo.text_recipes import TextUNetRecipe, train_text_unet

    recipe = TextUNetRecipe(steps=4, batch_size=8, warmup_steps=1, block_out_channels=(8, 16), attention_heads=2)

    def fresh():
        from benchmark.models.text_unet import TextConditionalUNet, tiny_text_unet_config

        text = tiny_text_model().text_encoder
        return TextConditionalUNet.from_config(tiny_text_unet_config((8, 16), text.width, heads=2), text, seed=0)

    whole = train_text_unet(recipe, fresh(), tmp_path / "a", checkpoint_every=2, show_progress=False)

    class Stop(Exception):
        pass

    def stop_after_2(step, total, stats):
        if step == 3:
            raise Stop

    (tmp_path / "b").mkdir()
    with pytest.raises(Stop):
        train_text_unet(recipe, fresh(), tmp_path / "b", checkpoint_every=2, show_progress=False,
                        progress=stop_after_2)
    assert torch.load(tmp_path / "b" / "train_state.pt", weights_only=False)["step"] == 2
    resumed = train_text_unet(recipe, fresh(), tmp_path / "b", checkpoint_every=2, show_progress=False)
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_black_sample_is_not_read_as_red_under_the_cards_judge_rule():
    """The real judge's colour head has no "no ink" class: it reads a black image as red. Under the text cards'
    ``judging.concept_needs_digit`` rule (v3) a colour counts only where the digit head accepts a digit."""
    from benchmark import zoo
    from benchmark.api import AttackContext, LabeledImages
    from benchmark.data.mnist_text import COLOURS
    from benchmark.scenarios import load_scenario
    from benchmark.scenarios.text_track import TextTrackSetup

    judge = zoo.load_judge("mnist-text-judge")
    red = COLOURS.index("red")
    black = (-1 + 0.1 * torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    heads = judge.predict_heads(black)
    assert (heads["digit"] == judge.reject_class).all() and (heads["colour"] == red).any()  # the artefact
    empty = LabeledImages(black[:0], torch.zeros(0, dtype=torch.long))
    ctx = AttackContext(scenario=None, tier="smoke", forget_class=red, members=empty, heldout=empty, judge=judge,
                        reference_models={}, judge_head="colour")
    assert ctx.shows_concept(black).sum() > 0 and ctx.judge_rule == ""
    ctx.concept_needs_digit = True
    assert ctx.shows_concept(black).sum() == 0 and ctx.judge_rule
    assert float(ctx.concept_probability(black).max()) < 0.05
    heldout = mnist_text_splits().heldout
    real_red = heldout.x[heldout.colour == red][:64]
    assert ctx.shows_concept(real_red).mean() > 0.9  # real red digits still count
    for card in ("mnist-text-style", "mnist-text-object"):
        assert TextTrackSetup.concept_needs_digit.fget(type("S", (), {"scenario": load_scenario(card)})())
