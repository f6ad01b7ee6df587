"""EraseDiff specifics: the forget targets, the λ rules and the separated inner optimiser."""

import torch

from benchmark.api import LabeledImages
from methods.base import Batch
from methods.erasediff import EraseDiff, EraseDiffFixed


def _setup(model, request, **cfg):
    method = EraseDiff(**cfg)
    student = model.clone().train()
    params = student.parameters()
    gen = torch.Generator().manual_seed(0)
    state = method.setup(student, request, gen)
    f = LabeledImages(request.forget.x[:8], request.forget.y[:8])
    r = LabeledImages(request.retain.x[:8], request.retain.y[:8])
    return method, student, params, gen, state, Batch(f, r)


def test_noise_target_is_uniform_and_remap_avoids_any_forget_class(tiny_model, tiny_request):
    method, student, _, gen, state, batch = _setup(tiny_model, tiny_request)
    d = method.draw(batch.forget, state, student, gen)
    assert d.noise.min() >= 0 and d.noise.max() < 1 and d.remap is None
    method, student, _, gen, state, batch = _setup(tiny_model, tiny_request, forget_target="remap")
    picks = torch.cat([method.draw(batch.forget, state, student, gen).remap for _ in range(50)])
    assert 3 not in picks.tolist() and set(picks.tolist()) == set(range(10)) - {3}


def _grads(model, params, loss):
    return torch.autograd.grad(loss, params)


def test_adaptive_lambda_matches_paper_rule(tiny_model, tiny_request):
    method, student, params, gen, state, batch = _setup(tiny_model, tiny_request, inner_steps=0, eta=0.1)
    state_before = gen.get_state()
    logs = method.compute_gradients(student, params, batch, state, gen)
    got = [p.grad.clone() for p in params]
    # Recompute g_r, g_f with the same random draws and check grad = g_r + λ g_f with the paper's λ.
    gen.set_state(state_before)
    d = method.draw(batch.forget, state, student, gen)
    r = batch.retain
    g_r = _grads(student, params, student.loss(r.x, student.encode(r.y), generator=gen).mean())
    g_f = _grads(student, params, method.forget_loss(student, batch.forget, d))
    dot = sum((a * b).sum() for a, b in zip(g_f, g_r))
    lam = max(0.0, 0.1 - float(dot) / float(sum((b * b).sum() for b in g_f)))
    assert abs(logs["lambda"] - lam) < 1e-5
    for p_grad, a, b in zip(got, g_r, g_f):
        assert torch.allclose(p_grad, a + lam * b, atol=1e-6)


def test_fixed_lambda_variant(tiny_model, tiny_request):
    method = EraseDiffFixed()
    assert method.config.lambda_mode == "fixed" and method.config.lam == 0.1
    student = tiny_model.clone().train()
    params = student.parameters()
    gen = torch.Generator().manual_seed(0)
    state = method.setup(student, tiny_request, gen)
    batch = Batch(LabeledImages(tiny_request.forget.x[:4], tiny_request.forget.y[:4]),
                  LabeledImages(tiny_request.retain.x[:4], tiny_request.retain.y[:4]))
    assert method.compute_gradients(student, params, batch, state, gen)["lambda"] == 0.1


def test_inner_loop_never_touches_the_model_or_outer_optimiser(tiny_model, tiny_request):
    method, student, params, gen, state, batch = _setup(tiny_model, tiny_request, inner_steps=2)
    opt = torch.optim.Adam(params, lr=1e-4)
    before = student.fingerprint()
    logs = method.compute_gradients(student, params, batch, state, gen)
    assert student.fingerprint() == before
    assert len(opt.state) == 0
    assert state["phi"].fingerprint() != before  # the copy did move
    assert logs["constraint_g"] > 0  # K inner steps lowered L_f on the copy


def test_measuring_the_constraint_every_n_steps_leaves_the_weights_bitwise_unchanged(tiny_model, tiny_request):
    """``constraint_every`` only thins the logged g in "value" mode: the inner loop draws nothing, so the
    unlearned weights are bitwise those of measuring it every step (class and text track, both targets)."""
    from benchmark.conformance import tiny_text_model, tiny_text_request

    cases = [(tiny_model, tiny_request, "noise"), (tiny_text_model(), tiny_text_request(max_steps=3), "remap")]
    for model, request, target in cases:
        every = {n: EraseDiff(inner_steps=1, batch_size=4, forget_target=target, constraint_every=n).unlearn(
                     model, request) for n in (1, 2)}
        assert every[1].model.fingerprint() == every[2].model.fingerprint()
        assert every[1].stats["constraint_g"]["mean"] != every[2].stats["constraint_g"]["mean"] or \
            every[1].stats["constraint_g"]["last"] != every[2].stats["constraint_g"]["last"]


def test_steps_that_skip_the_constraint_log_no_value_the_runner_would_stop_on(tiny_model, tiny_request):
    """The runner stops a method on any non-finite logged value; a step that does not measure g logs no g
    (it once logged NaN, and every EraseDiff cell of the text cards failed at step 2)."""
    import dataclasses

    from benchmark.runner import _Bar

    seen: list[dict] = []

    def progress(step: int, total: int, stats: dict) -> None:
        _Bar("erasediff", enabled=False)(step, total, stats)
        seen.append(stats)

    request = dataclasses.replace(tiny_request, progress=progress)
    out = EraseDiff(inner_steps=1, batch_size=4, constraint_every=2).unlearn(tiny_model, request)
    assert len(seen) == out.steps > 2
    assert ["constraint_g" in row for row in seen[:3]] == [True, False, True]


def test_constraint_every_is_refused_where_the_inner_solution_shapes_the_update(tiny_model, tiny_request):
    import pytest

    with pytest.raises(ValueError, match="constraint_every"):
        EraseDiff(constraint_gradient="difference", constraint_every=2).unlearn(tiny_model, tiny_request)
    with pytest.raises(ValueError, match="constraint_every"):
        EraseDiff(constraint_every=0).unlearn(tiny_model, tiny_request)
