"""Details the released codes fix and a reviewer checks: EMA semantics, label dropout, SA's Fisher scale."""

from __future__ import annotations

import warnings

import pytest
import torch

from benchmark.api import LabeledImages
from methods.base import FixedDecayEMA, effective_ema_decay, encode_dropped


def test_fixed_decay_ema_starts_at_the_pretrained_weights():
    p = torch.nn.Parameter(torch.zeros(3))
    ema = FixedDecayEMA([p], 0.9)
    for _ in range(10):
        with torch.no_grad():
            p.fill_(1.0)
        ema.step([p])
    # after k steps toward 1 from 0 the pretrained weights keep μ^k of the average (no warm-up)
    assert torch.allclose(ema.shadow[0], torch.full((3,), 1 - 0.9 ** 10))


def test_ema_decay_keeps_the_horizon_to_steps_ratio():
    mu = effective_ema_decay(0.99, 288, 100)
    assert abs(mu ** 100 - 0.99 ** 288) < 0.005  # the pretrained share at the end is kept (~5.5%)
    assert effective_ema_decay(0.99, 288, 288) == pytest.approx(0.99)


def test_finetune_records_the_effective_decay(tiny_model, tiny_request):
    from methods.finetune import Finetune

    out = Finetune(steps=2, batch_size=8).unlearn(tiny_model, tiny_request)
    assert out.stats["ema_decay_effective"] == pytest.approx(effective_ema_decay(0.99, 288, 2), abs=1e-6)


def test_label_dropout_replaces_rows_by_the_null_condition(tiny_model):
    from benchmark.conformance import tiny_text_model as make_text_model

    tiny_text_model = make_text_model()
    gen = torch.Generator().manual_seed(0)
    y = torch.zeros(400, dtype=torch.long)
    cond = encode_dropped(tiny_model, y, 0.1, gen)
    null = tiny_model.null_condition(1)[0]
    dropped = sum(torch.equal(c, null) for c in cond)
    assert 20 < dropped < 70
    assert torch.equal(encode_dropped(tiny_model, y, 0.0, gen), tiny_model.encode(y))
    texts = encode_dropped(tiny_text_model, ["zero in red"] * 50, 1.0, gen)
    assert torch.allclose(texts, tiny_text_model.null_condition(50))


def test_selective_amnesia_fisher_is_unbiased_for_the_full_schedule():
    """E[F̂ at n timesteps] = the released all-T Fisher; summing n timesteps was (T/n)² too small."""
    from benchmark.conformance import tiny_request
    from benchmark.models.class_unet import ClassConditionalUNet, default_scheduler_config, tiny_unet_config
    from methods.selective_amnesia import SelectiveAmnesia

    warnings.filterwarnings("ignore", message="There is a performance drop")
    sched = {**default_scheduler_config(), "num_train_timesteps": 100}
    model = ClassConditionalUNet.from_config(tiny_unet_config((8, 16), num_classes=10), sched, seed=0)
    req = tiny_request()
    data = LabeledImages(req.forget.x[:1], req.forget.y[:1])

    def total(n: int, seed: int) -> float:
        fisher = SelectiveAmnesia(fisher_timesteps=n).diagonal_fisher(model, data, torch.Generator().manual_seed(seed))
        return sum(float(f.sum()) for f in fisher)

    full = sum(total(100, s) for s in range(6)) / 6
    sub = sum(total(10, s) for s in range(60)) / 60
    assert abs(sub / full - 1) < 0.15
    # the earlier estimator (sum over the n timesteps, squared) is off by about (T/n)² = 100×
    assert full / total(100, 0) < 1.5
