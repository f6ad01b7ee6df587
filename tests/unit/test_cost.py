import torch

from benchmark import cost
from benchmark.conformance import tiny_model, tiny_request
from methods.erasediff import EraseDiff
from methods.selective_amnesia import SelectiveAmnesia


def test_meter_counts_image_passes_and_phases():
    m = tiny_model()
    x = torch.randn(4, 1, 16, 16)
    with cost.measure() as meter:
        with cost.phase("a"):
            m.loss(x, m.encode([1, 2, 3, 4])).mean().backward()
        with torch.no_grad():
            m.eps(x, torch.tensor(5), m.encode([1, 2, 3, 4]))
    assert (meter.forward_images, meter.backward_images, meter.forward_calls) == (8, 4, 2)
    assert meter.phases["a"]["forward_images"] == 4 and meter.phases["a"]["backward_images"] == 4
    assert meter.seconds > 0 and meter.peak_memory_scope
    m.eps(x, torch.tensor(5), m.encode([1, 2, 3, 4]))  # outside: not counted
    assert meter.forward_images == 8


def test_erasediff_cost_per_step_matches_its_algorithm():
    """Per outer step: K inner fwd+bwd and one L_f(φ_K) forward on the copy, then fwd+bwd of L_r and L_f."""
    req = tiny_request(max_steps=2)
    b = 8
    with cost.measure() as meter:
        EraseDiff(steps=2, batch_size=b, inner_steps=2).unlearn(tiny_model(), req)
    per_step_fwd = 2 * b + b + b + b  # inner K=2, φ_K value, L_r, L_f
    per_step_bwd = 2 * b + b + b
    assert meter.forward_images == 2 * per_step_fwd and meter.backward_images == 2 * per_step_bwd
    assert meter.optimizer_steps == 2


def test_selective_amnesia_counts_generated_images():
    req = tiny_request(max_steps=1)
    with cost.measure() as meter:
        SelectiveAmnesia(steps=1, batch_size=8, fisher_samples_per_class=1, fisher_timesteps=4,
                         replay_samples_per_class=2, sample_steps=3).unlearn(tiny_model(), req)
    assert meter.generated_images == 10 + 9 * 2
    assert {"fisher_sampling", "fisher", "replay", "train"} <= set(meter.phases)
