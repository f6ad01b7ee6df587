"""FID / KID / precision / recall through torch-fidelity, in the judge's feature space.

The embedded judge's penultimate layer is registered with torch-fidelity as a
``FeatureExtractorBase`` subclass (``unlearnbench-judge``), so the numbers are torch-fidelity's own
(``fid_statistics_to_metric``, ``kid_features_to_metric``, ``prc_features_to_metric``) — the column
is labelled ``FID[mnist-judge]`` because they are not Inception FIDs. Reference features (real
held-out images of the retained classes) are computed once per (scenario, split, extractor) and cached.

FID-to-original: the same retained-condition samples against the *original model's* samples of the same
plan drawn with another seed — the damage unlearning did to what should be kept, without the model's own
distance to real data (FID against real data in the judge's feature space can even fall when a method
weakens an over-sharpened guided distribution). The original's own row shows the two-seed floor.

FID CI: percentile bootstrap over generated samples (reference statistics fixed), shifted by the
bootstrap's own bias estimate. KID: torch-fidelity's unscaled value (not ×10³ as some papers print it)
and its mean ± std over random subsets, reported as mean ± 1.96·std: the spread of the subset estimates
(overlapping subsets of the same images), an interval wider than a confidence interval of the mean.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmark.api import EvalContext, LabeledImages, Metric, MetricSpec, MetricValue
from benchmark.sampling import atomic_torch_save

EXTRACTOR_NAME = "unlearnbench-judge"
FEATURE_LAYER = "penultimate"


def _extractor_class() -> type:
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    from benchmark.judges import load_digit_cnn

    class JudgeFeatureExtractor(FeatureExtractorBase):
        """torch-fidelity feature extractor over the judge CNN; inputs are uint8 N×C×H×W as usual."""

        def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                     **kwargs: object):
            super().__init__(name, features_list)
            if feature_extractor_weights_path is None:
                raise ValueError(f"{name} needs feature_extractor_weights_path= the judge's model.safetensors")
            self.net, _ = load_digit_cnn(feature_extractor_weights_path)

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return (FEATURE_LAYER, "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return FEATURE_LAYER

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> torch.Tensor:
            return torch.zeros(1, 1, 16, 16, dtype=torch.uint8)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = x.float() / 127.5 - 1.0
            wants = int(self.net.config.get("in_channels", 1))
            if x.shape[1] == 3 and wants == 1:  # torch-fidelity may hand grey images over as RGB
                x = x.mean(1, keepdim=True)
            elif x.shape[1] == 1 and wants == 3:
                x = x.expand(-1, 3, -1, -1)
            feats = self.net.features(x)
            by_name = {FEATURE_LAYER: feats, "logits": self.net.head(feats)}
            return tuple(by_name[f] for f in self.features_list)

    return JudgeFeatureExtractor


def register_judge_extractor() -> str:
    """Register the judge extractor with torch-fidelity (idempotent); return its registry name."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(EXTRACTOR_NAME, _extractor_class())
    return EXTRACTOR_NAME


class ImageDataset(Dataset):
    """Images in [−1, 1] → uint8 C×H×W tensors, the input torch-fidelity expects."""

    def __init__(self, x: torch.Tensor):
        self.x = to_uint8(x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def extract_features(images: torch.Tensor, weights_path: Path, device: str = "cpu") -> torch.Tensor:
    """Judge-penultimate features through torch-fidelity's own extraction loop."""
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    name = register_judge_extractor()
    cuda = device.startswith("cuda")
    fe = create_feature_extractor(name, [FEATURE_LAYER], cuda=cuda, feature_extractor_weights_path=str(weights_path),
                                  verbose=False)
    feats = get_featuresdict_from_dataset(ImageDataset(images), fe, batch_size=512, cuda=cuda, save_cpu_ram=True,
                                          verbose=False)
    return feats[FEATURE_LAYER].double()


def reference_features(ref: LabeledImages, weights_path: Path, judge_sha: str, key: str,
                       cache_dir: Path | None, device: str = "cpu") -> torch.Tensor:
    digest = hashlib.sha256(ref.x.numpy().tobytes()).hexdigest()[:12]
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "fidelity" / f"{key}-{digest}-{judge_sha[:12]}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
    feats = extract_features(ref.x, weights_path, device)
    if path is not None:
        atomic_torch_save(feats, path)
    return feats


def fidelity_from_features(gen: torch.Tensor, ref: torch.Tensor, n_boot: int = 200, seed: int = 0) -> dict:
    """FID (with bootstrap CI), KID, precision, recall from two feature sets, by torch-fidelity's functions."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    ref_stats = fid_features_to_statistics(ref)

    def fid_of(g: torch.Tensor) -> float:
        return fid_statistics_to_metric(fid_features_to_statistics(g), ref_stats, verbose=False)[
            "frechet_inception_distance"]

    fid = fid_of(gen)
    rng = np.random.default_rng(seed)
    boots = np.array([fid_of(gen[torch.from_numpy(rng.integers(0, len(gen), len(gen)))]) for _ in range(n_boot)]
                     or [fid])
    # Resampling with replacement duplicates samples, which inflates FID; shift the percentile interval
    # by the estimated bootstrap bias so it is centred on the estimate (FID's small-n bias is not removed).
    bias = float(boots.mean()) - fid
    # Subsets must be smaller than both sets or every subset is the same and the spread is meaningless.
    subset = max(2, min(1000, len(gen) // 2, len(ref) // 2))
    kid = kid_features_to_metric(gen.float(), ref.float(), kid_subsets=100, kid_subset_size=subset, rng_seed=seed,
                                 verbose=False, kid_kernel="poly", kid_kernel_poly_degree=3,
                                 kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    prc = prc_features_to_metric(gen.float(), ref.float(), prc_neighborhood=3, prc_batch_size=10000,
                                 save_cpu_ram=False, verbose=False)
    return {
        "fid": fid, "fid_ci": tuple(float(q) - bias for q in np.quantile(boots, [0.025, 0.975])),
        "kid": kid["kernel_inception_distance_mean"], "kid_std": kid["kernel_inception_distance_std"],
        "kid_subset_size": subset, "precision": prc["precision"], "recall": prc["recall"],
    }


class FidelityMetrics(Metric):
    """FID/KID/precision/recall of retained-condition samples vs real held-out images of those conditions."""

    needs_original_samples = True

    provides = (
        MetricSpec("fid", "FID[mnist-judge]", higher_is_better=False),
        MetricSpec("fid_to_original", "FID-to-original[mnist-judge]", higher_is_better=False),
        MetricSpec("kid", "KID[mnist-judge]", higher_is_better=False),
        MetricSpec("precision", "precision", higher_is_better=True),
        MetricSpec("recall", "recall", higher_is_better=True),
    )

    def compute(self, ctx: EvalContext) -> list[MetricValue]:
        judge = ctx.judge
        weights = getattr(judge, "weights_path", None)
        if weights is None:
            raise ValueError("fidelity metrics need a judge loaded from a weights file")
        gen_x = ctx.retained_samples()
        ref = ctx.retained_reference()
        key = f"{ctx.scenario.name}-v{ctx.scenario.version}-heldout-minus-{ctx.extra.get('target_tag', f'c{ctx.forget_class}')}"
        ref_feats = reference_features(ref, weights, judge.sha256, key, ctx.cache_dir, ctx.device)
        gen_feats = extract_features(gen_x, weights, ctx.device)
        r = fidelity_from_features(gen_feats, ref_feats)
        floor = self.real_floor(ctx, len(gen_x), ref_feats, weights)
        proto = (f"{len(gen_x)} CFG samples of the retained {ctx.extra.get('retained_what', 'classes')} vs {len(ref)} "
                 "real held-out images of them; "
                 f"features: judge penultimate (sha256:{judge.sha256[:12]}) via torch-fidelity")
        kid_half = 1.96 * r["kid_std"]
        proto += f"; real-data floor FID {floor:.2f} at this n"
        to_original = []
        orig_x = ctx.retained_original()
        if orig_x is not None and len(orig_x) >= 2:
            o = fidelity_from_features(gen_feats, extract_features(orig_x, weights, ctx.device))
            to_original.append(MetricValue(
                "fid_to_original", o["fid"], len(gen_x), False, o["fid_ci"],
                f"{len(gen_x)} CFG samples of the retained {ctx.extra.get('retained_what', 'classes')} vs "
                f"{len(orig_x)} samples of the original model for the same conditions (another sampling seed); "
                f"features: judge penultimate (sha256:{judge.sha256[:12]}) via torch-fidelity; "
                "CI: bias-shifted bootstrap over samples"))
        return to_original + [
            MetricValue("fid", r["fid"], len(gen_x), False, r["fid_ci"], proto + "; CI: bias-shifted bootstrap over samples",
                        {"real_floor": floor, "real_floor_protocol": "same n of real member images of the retained "
                         "classes vs the same reference: the FID a perfect model would get at this n"}),
            MetricValue("kid", r["kid"], len(gen_x), False, (r["kid"] - kid_half, r["kid"] + kid_half),
                        proto + f"; unscaled; 100 subsets of {r['kid_subset_size']}, interval mean ± 1.96·std of "
                              "the subset estimates (their spread, not a CI of the mean)"),
            MetricValue("precision", r["precision"], len(gen_x), True, None, proto + "; k=3"),
            MetricValue("recall", r["recall"], len(gen_x), True, None, proto + "; k=3"),
        ]

    @staticmethod
    def real_floor(ctx: EvalContext, n: int, ref_feats: torch.Tensor, weights: Path) -> float | None:
        """FID of ``n`` real *member* images of the retained classes (balanced, seeded) vs the reference."""
        keep = ctx.retained_members()
        if keep is None or n < 2:
            return None
        classes = torch.unique(keep.y)
        per = max(1, n // len(classes))
        gen = torch.Generator().manual_seed(0)
        idx = torch.cat([torch.nonzero(keep.y == c).flatten()[torch.randperm(int((keep.y == c).sum()), generator=gen)[:per]]
                         for c in classes])
        feats = extract_features(keep.x[idx], weights, ctx.device)
        return float(fidelity_from_features(feats, ref_feats, n_boot=0)["fid"])
