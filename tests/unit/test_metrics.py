import torch

from benchmark.api import EvalContext, LabeledImages
from benchmark.data.mnist import mnist_splits
from benchmark.metrics.classifier import ClassifierMetrics
from benchmark.metrics.fid import FidelityMetrics, ImageDataset, extract_features, fidelity_from_features
from benchmark.scenarios import load_scenario
from benchmark.zoo import ZOO_DIR, load_judge

WEIGHTS = ZOO_DIR / "mnist-judge" / "model.safetensors"


def _ctx(samples, tmp_path):
    s = mnist_splits()
    return EvalContext(scenario=load_scenario("mnist-class"), tier="smoke", samples=samples, forget_class=0,
                       judge=load_judge(), reference=s.heldout, members=s.members, cache_dir=tmp_path)


def test_classifier_metrics_on_real_and_on_noise(tmp_path):
    real = mnist_splits().heldout
    vals = {v.name: v for v in ClassifierMetrics().compute(_ctx(real, tmp_path))}
    assert vals["forget_accuracy"].value > 0.95 and vals["forget_accuracy"].n == 100
    assert vals["retain_accuracy"].value > 0.95 and vals["retain_accuracy"].n == 900
    lo, hi = vals["forget_accuracy"].ci
    assert lo <= vals["forget_accuracy"].value <= hi
    noise = LabeledImages(torch.rand(200, 1, 16, 16) * 2 - 1, torch.zeros(200, dtype=torch.long))
    noisy = {v.name: v for v in ClassifierMetrics().compute(_ctx(noise, tmp_path))}
    assert noisy["forget_reject_rate"].value > 0.95 and vals["forget_reject_rate"].value < 0.02
    assert noisy["forget_accuracy"].value < 0.02 and noisy["p_forgotten"].value < 0.02


def test_fid_matches_torch_fidelity_front_door():
    import torch_fidelity

    from benchmark.metrics.fid import register_judge_extractor

    s = mnist_splits()
    a, b = s.members.x[::8], s.heldout.x[::2]
    ours = fidelity_from_features(extract_features(a, WEIGHTS), extract_features(b, WEIGHTS), n_boot=5)
    theirs = torch_fidelity.calculate_metrics(
        input1=ImageDataset(a), input2=ImageDataset(b), cuda=False, fid=True, kid=True,
        feature_extractor=register_judge_extractor(), feature_extractor_weights_path=str(WEIGHTS),
        kid_subset_size=min(len(a), len(b)) // 2, rng_seed=0, verbose=False, save_cpu_ram=True)
    assert abs(ours["fid"] - theirs["frechet_inception_distance"]) < 1e-3 * max(1.0, ours["fid"])
    assert abs(ours["kid"] - theirs["kernel_inception_distance_mean"]) < 1e-3 * max(1.0, abs(ours["kid"]))


def test_fid_orders_real_below_noise(tmp_path):
    s = mnist_splits()
    real = s.members.where(s.members.y != 0)
    noise = LabeledImages(torch.rand(len(real), 1, 16, 16) * 2 - 1, real.y)
    fid_real = {v.name: v for v in FidelityMetrics().compute(_ctx(real, tmp_path))}["fid"]
    fid_noise = {v.name: v for v in FidelityMetrics().compute(_ctx(noise, tmp_path))}["fid"]
    assert fid_real.n == 3600 and fid_real.value < fid_noise.value / 10
    assert abs(fid_real.extra["real_floor"] - fid_real.value) < 1e-6  # same images: floor == value
    assert any((tmp_path / "fidelity").iterdir())  # reference features cached
