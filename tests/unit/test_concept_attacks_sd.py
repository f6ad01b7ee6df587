"""The concept attacks (attacks/concept/) on a tiny latent-space Stable Diffusion: the text track's tiny
attack context (``tiny_text_attack_context``: 16×16 images, the shipped text judge) with tiny random SD
models (``tiny_stable_diffusion``, image size 16, 4 × 4 × 4 latents) as the original and the oracle.

What differs from the project's pixel-space text UNet: the UNet works on VAE latents (attacks must
``encode_images`` the images they noise and ``decode_latents`` what they judge) and SD v1's tokenizer pads
with the end-of-text token (49407), not 0. The pixel-space behaviour is covered by the other
concept-attack tests (test_concept_attacks.py, test_attack_ring_a_bell.py, test_attack_p4d.py,
test_attack_probes.py)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch

from attacks.concept.asr import ConceptASR
from attacks.concept.common import SlotPrompt, n_tokens, special_tokens
from attacks.concept.concept_inversion import ConceptInversion
from attacks.concept.p4d import P4D
from attacks.concept.probes import NoiseTrajectoryProbe, VisualContextProbe
from attacks.concept.ring_a_bell import RingABell
from attacks.concept.unlearndiffatk import UnlearnDiffAtk
from benchmark.conformance import tiny_text_attack_context, tiny_text_model
from benchmark.models.stable_diffusion import tiny_stable_diffusion

warnings.filterwarnings("ignore", message="No pretrained weights")

SOT, EOT = 49406, 49407


@pytest.fixture(scope="module")
def sd_ctx():
    ctx = tiny_text_attack_context()
    refs = {"original": tiny_stable_diffusion(seed=0, image_size=16),
            "oracle": tiny_stable_diffusion(seed=1, image_size=16)}
    return dataclasses.replace(ctx, reference_models=refs, cache={})


@pytest.fixture(scope="module")
def sd():
    # the model under test has the original's weights: its reference run is a cache hit (CPU time)
    return tiny_stable_diffusion(seed=0, image_size=16)


def test_special_tokens_and_slots_follow_the_tokenizers_padding(sd):
    assert special_tokens(sd) == (SOT, EOT, EOT)  # SD v1 pads with the end token
    assert special_tokens(tiny_text_model(0)) == (SOT, EOT, 0)  # the project's tiny CLIP pads with 0
    ids = sd.tokenize(["three in red"])[0]
    assert n_tokens(ids, EOT) == 5  # start, three, in, red, end — not the 77 non-zero ids
    blue = sd.tokenize(["blue"])[0][1].item()
    for prompt in ("three in red", "a handwritten {} in red", ""):
        slot = SlotPrompt(sd, prompt, 2)
        text = slot.with_tokens([blue, blue])
        assert torch.equal(slot.filled([blue, blue])[0], sd.tokenize([text])[0]), prompt
        emb = sd.text_encoder.token_embedding.weight[torch.tensor([blue, blue])]
        assert torch.allclose(slot.states(emb), sd.encode([text]), atol=1e-5), prompt
    layout = RingABell()._layout(sd)
    assert layout == (SOT, EOT, 77, EOT)
    assert torch.equal(RingABell(k_tokens=2)._ids([[blue, blue]], layout)[0], sd.tokenize(["blue blue"])[0])


# the smoke tier of benchmark/scenarios/mnist-text-object.yaml, some made smaller still
ATTACKS = [
    ConceptASR(n_prompts=2, n_per_prompt=2),
    UnlearnDiffAtk(n_prompts=1, steps=2, check_every=2, n_per_prompt=2, timesteps_per_step=2, target_tries=2),
    RingABell(n_prompts=1, n_per_prompt=2, k_tokens=6, population=8, generations=3),
    P4D(n_prompts=1, n_per_prompt=2, k_tokens=4, steps=2, eval_every=1, n_loss_draws=2, timesteps_per_step=2,
        n_targets=2),
    ConceptInversion(n_images=4, steps=2, batch_size=4, n_prompts=1, n_per_prompt=2),
    VisualContextProbe(VisualContextProbe.make_config({"n_images": 4, "strengths": [0.2, 0.6, 1.0]})),
    NoiseTrajectoryProbe(NoiseTrajectoryProbe.make_config({"n_prompts": 2, "etas": [1.0, 1.34],
                                                           "variance_scales": [1.0]})),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_concept_attacks_run_on_stable_diffusion(attack, sd_ctx, sd):
    ctx = dataclasses.replace(sd_ctx, cache={})
    before = sd.fingerprint()
    result = attack.run(sd, ctx)
    assert result.status == "ok", result.reason
    assert sd.fingerprint() == before, "the attacked model changed"
    assert result.values and any(k.endswith("_oracle") for k in result.values)
    assert any(k.endswith("_gap") for k in result.values)
    for key, v in result.values.items():
        assert v.n > 0 and v.protocol and math.isfinite(v.value), key
    if attack.name == "context_probe":  # outputs decoded to images, compared with the context images
        assert all(math.isfinite(r["mse_to_context"]) for r in result.per_item)
    if attack.name == "p4d":
        for row in result.per_item:  # a prompt that already shows the concept is not attacked (success at step 0)
            assert not row["attacked"] or (isinstance(row["retokenises"], bool) and math.isfinite(row["final_loss"]))
    if attack.name == "unlearndiffatk":
        assert all(not r["attacked"] or math.isfinite(r["final_loss"]) for r in result.per_item)
    if attack.name == "ring_a_bell":
        assert "padding 49407" in result.conventions["layout"]


@pytest.fixture(scope="module")
def user_clip(tmp_path_factory):
    """A user's CLIP file (--clip-weights ARCH=FILE): the project's tiny open_clip model saved to safetensors."""
    from safetensors.torch import save_file

    from benchmark.models.tiny_clip import MODEL_NAME, create_clip

    path = tmp_path_factory.mktemp("clip") / "user-clip.safetensors"
    save_file({k: v.contiguous() for k, v in create_clip(seed=3).state_dict().items()}, str(path))
    return f"{MODEL_NAME}={path}", path


def test_p4d_selects_prompts_with_the_contexts_clip_on_stable_diffusion(sd_ctx, sd, user_clip, monkeypatch):
    """P4D's prompt selection scores with the scenario's CLIP from the attack context (the user's open_clip
    file on Stable Diffusion), never the embedded zoo CLIP; a context without a CLIP keeps the last projection
    and the record says so."""
    import attacks.concept.p4d as p4d
    from benchmark.models.fingerprint import file_sha256
    from benchmark.models.tiny_clip import MODEL_NAME

    def no_zoo_clip(*_: object) -> None:
        raise AssertionError("P4D loaded the embedded zoo CLIP on a Stable Diffusion context")

    monkeypatch.setattr(p4d, "_zoo_clip", no_zoo_clip)
    spec, path = user_clip
    attack = P4D(n_prompts=1, n_per_prompt=1, k_tokens=3, steps=2, eval_every=1, n_loss_draws=2,
                 timesteps_per_step=1, n_targets=1)
    without = {k: v for k, v in sd_ctx.config.items() if k != "clip"}
    result = attack.run(sd, dataclasses.replace(sd_ctx, cache={}, config={**without, "clip": spec}))
    assert result.status == "ok", result.reason
    assert result.conventions["selection_clip"] == f"open_clip {MODEL_NAME} ({path.name})"
    assert result.conventions["selection_clip_sha256"] == file_sha256(path)
    assert all(math.isfinite(r["similarity"]) and r["selected_step"] in (0, 1) for r in result.per_item)

    result = attack.run(sd, dataclasses.replace(sd_ctx, cache={}, config=without))
    assert result.status == "ok", result.reason
    assert "selection_clip" not in result.conventions and "no CLIP" in result.conventions["selection"]
    assert all(r["similarity"] is None for r in result.per_item)


def test_sd_attack_context_hands_over_the_users_clip_file(user_clip):
    """The SD setup puts the user's --clip-weights file in the attack context (P4D's selection CLIP), and
    nothing when none was given."""
    from benchmark.scenarios import load_scenario
    from benchmark.scenarios.setup import setup_for

    spec, _ = user_clip
    for target, expected in (({"concept": "nudity", "clip": spec}, spec), ("nudity", None)):
        setup = setup_for(load_scenario("sd-nudity"), target, log=lambda *_: None)
        setup.__dict__.update(base=tiny_stable_diffusion(seed=0, image_size=16), judge=object())  # no pipeline dir
        ctx = setup.attack_context("smoke", 0)
        assert ctx.config.get("clip") == expected


def test_the_nudity_convention_flag_reaches_the_judge_and_is_checked():
    from benchmark import UnlearnbenchError
    from benchmark.cli import build_parser
    from benchmark.scenarios import load_scenario
    from benchmark.scenarios.sd_track import StableDiffusionSetup, concept_from_card

    args = build_parser().parse_args(["audit", "x", "--nudity-convention", "unlearndiffatk"])
    assert args.nudity_convention == "unlearndiffatk"
    sc = load_scenario("sd-nudity")
    concept = concept_from_card(sc, {"concept": "nudity", "nudity_convention": "unlearndiffatk"})
    assert ("nudity_convention", "unlearndiffatk") in concept.instruments
    setup = StableDiffusionSetup(sc, concept, "cpu", lambda *_: None)
    assert setup.judge.convention.name == "unlearndiffatk"
    assert setup.target_tag != StableDiffusionSetup(sc, None, "cpu", lambda *_: None).target_tag  # another table
    assert StableDiffusionSetup(sc, None, "cpu", lambda *_: None).judge.convention.name == "i2p"  # the card's
    with pytest.raises(UnlearnbenchError, match="unknown nudity convention 'i2pp'.*did you mean 'i2p'"):
        concept_from_card(sc, {"concept": "nudity", "nudity_convention": "i2pp"})
    with pytest.raises(UnlearnbenchError, match="applies to NudeNet-judged scenarios"):
        concept_from_card(load_scenario("sd-object"), {"nudity_convention": "i2p", "clip": None})
