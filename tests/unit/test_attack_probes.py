"""The un-erasing probes of Lu et al. 2025 (attacks/concept/probes.py) on the tiny text-track context."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacks.concept.probes import (
    NoiseTrajectoryProbe,
    VisualContextProbe,
    context_probe_images,
    ddim_scheduler,
    image_noise,
    noise_probe_images,
    noisy_ddim_step,
    sample_shape,
    start_index,
)
from benchmark import cost
from benchmark.api import AttackBudget
from benchmark.conformance import tiny_text_attack_context

CONTEXT_CFG = {"n_images": 4, "strengths": (0.2, 0.6, 1.0), "headline_strength": 0.6}
NOISE_CFG = {"n_prompts": 4, "etas": (1.0, 1.85), "variance_scales": (1.0,)}
PROBES = [(VisualContextProbe, CONTEXT_CFG), (NoiseTrajectoryProbe, NOISE_CFG)]


@pytest.fixture(scope="module")
def base_ctx():
    return tiny_text_attack_context()


def fresh(ctx, **changes):
    """The same context with an empty run cache (and any field changed)."""
    return dataclasses.replace(ctx, cache={}, **changes)


@pytest.fixture(scope="module")
def model(base_ctx):
    return base_ctx.reference_models["original"].fresh(seed=7)


@pytest.mark.parametrize("cls,cfg", PROBES, ids=["context", "noise"])
def test_runs_with_curve_n_and_ci_and_leaves_the_model_alone(cls, cfg, base_ctx, model):
    before, modes = model.fingerprint(), {k: m.training for k, m in model.modules().items()}
    attack = cls(cls.make_config(cfg))
    with cost.measure("cpu") as meter:
        result = attack.run(model, fresh(base_ctx))
    assert result.status == "ok", result.reason
    assert meter.forward_images > 0
    if cls is VisualContextProbe:
        curve = [f"recovery_s{s:g}_{k}" for s in cfg["strengths"] for k in ("erased", "neutral")]
        headline = ["recovery", "recovery_auc", "recovery_neutral"]
        assert len(result.per_item) == 2 * len(cfg["strengths"])
        assert result.values["recovery"].value == result.values["recovery_s0.6_erased"].value
    else:
        curve = ["recovery_eta0", "recovery_eta1_v1", "recovery_eta1.85_v1"]
        headline = ["recovery"]
        assert len(result.per_item) == 3 and result.per_item[0]["baseline"]
    for key in curve + headline:
        v = result.values[key]
        assert v.n == 4 and v.ci is not None and v.protocol and 0 <= v.value <= 1, key
        for ref in ("original", "oracle"):
            assert f"{key}_{ref}" in result.values
    for key in headline:
        assert f"{key}_gap" in result.values
    for key, v in result.values.items():  # what the conformance kit asks of every value
        assert v.n > 0 and v.protocol and v.value == v.value, key
    assert all(row["n"] == 4 for row in result.per_item)
    assert result.conventions["departures"] and "2505.17013" in result.conventions["paper"]
    assert cls.requires == {"text_cond", "eps"} and cls.tracks == {"text"} and cls.family == "probe"
    # (d) not mutated: weights, train/eval flags
    assert model.fingerprint() == before
    assert {k: m.training for k, m in model.modules().items()} == modes


@pytest.mark.parametrize("cls,cfg", PROBES, ids=["context", "noise"])
def test_deterministic_under_the_seed(cls, cfg, base_ctx, model):
    first = cls(cls.make_config(cfg)).run(model, fresh(base_ctx))
    again = cls(cls.make_config(cfg)).run(model, fresh(base_ctx))
    assert {k: v.value for k, v in first.values.items()} == {k: v.value for k, v in again.values.items()}
    assert first.per_item == again.per_item


@pytest.mark.parametrize("cls,cfg", PROBES, ids=["context", "noise"])
def test_budget_stops_cleanly(cls, cfg, base_ctx, model):
    with cost.measure("cpu") as meter:
        result = cls(cls.make_config(cfg)).run(model, fresh(base_ctx, budget=AttackBudget(max_seconds=0)))
    assert result.status == "failed" and "cap" in result.reason and result.per_item == []
    assert meter.forward_images == 0
    with cost.measure("cpu"):  # one grid point's worth, then stop: the partial rows come back
        partial = cls(cls.make_config(cfg)).run(model, fresh(base_ctx, budget=AttackBudget(max_forward_images=1)))
    assert partial.status == "failed" and "forward-pass budget" in partial.reason
    assert len(partial.per_item) == 1 and "after 1 of" in partial.reason


def test_small_strength_stays_near_the_context_image(base_ctx, model):
    """(e) Partial denoising really starts from the noised image: at s = 0.1 the output stays close to the
    context image, at s = 1 (pure noise) it does not; and s = 1 is plain ``model.sample``."""
    x0 = base_ctx.heldout.where(base_ctx.forget_mask("heldout")).x[:4]
    prompts = ["three in red"] * 4
    noise = image_noise(4, sample_shape(model), 3)
    steps = 10
    near = context_probe_images(model, x0, prompts, noise, 0.1, steps, 5.0)
    far = context_probe_images(model, x0, prompts, noise, 1.0, steps, 5.0)
    mse_near = float((near - x0).pow(2).mean())
    mse_far = float((far - x0).pow(2).mean())
    assert mse_near < 0.2 * mse_far, (mse_near, mse_far)
    assert torch.allclose(far, model.sample(prompts, seed=3, steps=steps, guidance=5.0), atol=1e-5)
    ddim = ddim_scheduler(model, steps)
    assert int(ddim.timesteps[start_index(ddim.timesteps, 0.1, 1000)]) == 100  # first timestep ≤ 0.1·T
    # the diffusion-completion variant (the paper's): the original's trajectory handed over mid-way
    other = base_ctx.reference_models["oracle"]
    done = context_probe_images(model, x0, prompts, noise, 0.5, steps, 5.0, source=other)
    assert done.shape == x0.shape and done.abs().max() <= 1


def test_noisy_step_is_ddim_at_eta_zero_and_the_baseline_is_plain_sampling(model):
    ddim = ddim_scheduler(model, 4)
    gen = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 3, 16, 16, generator=gen), torch.randn(2, 3, 16, 16, generator=gen)
    for t in ddim.timesteps:
        ours = noisy_ddim_step(ddim, eps, t, x, 0.0, 1.0, torch.zeros_like(x))
        assert torch.allclose(ours, ddim.step(eps, t, x).prev_sample, atol=1e-5)
    prompts = ["three in red", "the digit 3 in red"]
    noise = image_noise(2, sample_shape(model), 11)
    plain = noise_probe_images(model, prompts, noise, 4, 5.0, 0.0, 1.0, seed=0)
    assert torch.allclose(plain, model.sample(prompts, seed=11, steps=4, guidance=5.0), atol=1e-5)
    noisy = noise_probe_images(model, prompts, noise, 4, 5.0, 1.85, 1.0, seed=0)
    assert not torch.allclose(noisy, plain) and torch.isfinite(noisy).all()


def test_configs_refuse_bad_grids():
    with pytest.raises(ValueError, match="headline_strength"):
        VisualContextProbe.make_config({"strengths": [0.2, 1.0], "headline_strength": 0.6})
    with pytest.raises(ValueError, match="strengths"):
        VisualContextProbe.make_config({"strengths": [0.0, 1.0], "headline_strength": 1.0})
    with pytest.raises(ValueError, match="context"):
        VisualContextProbe.make_config({"context": "inpainting"})
    with pytest.raises(ValueError, match="etas"):
        NoiseTrajectoryProbe.make_config({"etas": [-1.0]})
    assert NoiseTrajectoryProbe.make_config({"etas": [1, 2]}).etas == (1.0, 2.0)
    assert len(NoiseTrajectoryProbe.Config().grid) == 24  # the released 6 η × 4 variance scales


def test_skips_a_model_without_text_conditioning(base_ctx):
    from benchmark.conformance import tiny_model

    for cls, cfg in PROBES:
        result = cls(cls.make_config(cfg)).run(tiny_model(), fresh(base_ctx))
        assert result.status == "skipped" and "text_cond" in result.reason
