"""Budgets: every model an attack touches gets its own clock, and runs cut short are never cached."""

from __future__ import annotations

import torch

from benchmark import cost
from benchmark.api import AttackBudget
from benchmark.conformance import tiny_attack_context, tiny_model
from benchmark.registry import ATTACKS


def _inversion(**config):
    cls = ATTACKS.get("class_inversion")
    return cls(cls.make_config({"steps": 5, "n_samples": 4, **config}))


def test_references_get_their_own_budget():
    # 12 forget images per step → 60 backward images per model and image source (members, held-out); a
    # shared budget of 70 would starve the references, per-model clocks do not
    ctx = tiny_attack_context(budget=AttackBudget(max_backward_images=70))
    with cost.measure("cpu") as meter:
        result = _inversion().run(tiny_model(2), ctx)
    assert result.status == "ok", result.reason
    assert {"recovery_rate_original", "recovery_rate_oracle", "recovery_gap", "recovery_rate_heldout",
            "recovery_rate_heldout_oracle", "recovery_gap_heldout"} <= set(result.values)
    assert meter.backward_images == 2 * 3 * 60


def test_a_reference_cut_short_is_reported_and_retried_not_cached():
    ctx = tiny_attack_context(budget=AttackBudget(max_backward_images=30))
    attack = _inversion(steps=2)  # 24 backward images: the model under test fits, ...
    model = tiny_model(2)
    with cost.measure("cpu"):
        first = attack.run(model, ctx)
    assert first.status == "ok"
    ctx.budget = AttackBudget(max_backward_images=10)  # ... and with a smaller cap the references do not
    ctx.reference_models = {"oracle": tiny_model(5)}
    with cost.measure("cpu"):
        starved = attack.run(model, ctx)  # the model's own result comes from the cache
    assert starved.status == "ok" and "recovery_rate_oracle" not in starved.values
    assert "stopped by the backward-pass budget" in starved.conventions["reference_notes"]["oracle"]
    ctx.budget = AttackBudget()
    with cost.measure("cpu"):
        retried = attack.run(model, ctx)
    assert "recovery_rate_oracle" in retried.values


def test_membership_scores_stop_between_batches_and_restore_the_model_mode():
    cls = ATTACKS.get("pia")
    model = tiny_model(2).train()
    ctx = tiny_attack_context(budget=AttackBudget(max_forward_images=1))
    with cost.measure("cpu"):
        result = cls(cls.make_config({"include_all_classes": False, "batch_size": 4})).run(model, ctx)
    assert result.status == "failed" and "forward-pass budget" in result.reason
    assert all(m.training for m in model.modules().values())


def test_membership_max_per_split_scores_the_same_seeded_subset_for_every_model():
    cls = ATTACKS.get("loss_threshold")
    ctx = tiny_attack_context()
    n_members = int(ctx.forget_mask("members").sum())
    cap = max(2, n_members // 2)
    attack = cls(cls.make_config({"include_all_classes": False, "max_per_split": cap}))
    with cost.measure("cpu"):
        first = attack.run(tiny_model(2), ctx)
        other = attack.run(tiny_model(3), ctx)
    assert first.status == "ok", first.reason
    rows = [r for r in first.per_item if r["split"] == "members"]
    assert len(rows) == min(cap, n_members) < n_members
    assert first.values["auc_forget"].n <= 2 * cap and f"at most {cap}" in first.values["auc_forget"].protocol
    assert {r["label"] for r in rows} == {ctx.forget_class}  # a subset of the forget members
    picks = [attack._split(ctx, "members", 1)[0].x for _ in range(2)]
    assert torch.equal(picks[0], picks[1])  # seeded: the same images for every model
    assert len(other.per_item) == len(first.per_item)
