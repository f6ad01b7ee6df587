"""Metrics measured with files the user brings (real-scale scenarios): CLIP score and Inception FID.

Stable Diffusion scenarios take the measuring instruments the way they take the model, as local files
(``--clip-weights ARCH=FILE``, ``--inception-weights FILE``; nothing is downloaded). They reach the metric
through the scenario's target (``ctx.extra["instruments"]``), so records measured with other files are
other records. Without the file, the metric reports nothing and says which file would add it.

- CLIP score (``benchmark.metrics.clip_zero_shot``): 100·max(cos, 0) of each sample and its own prompt, on
  the retain prompts (utility, higher is better) and on the forget prompts (lower: the concept is less
  present), mean with a bootstrap CI over samples; the architecture and weights' sha256 in the label.
- FID[Inception] (``benchmark.metrics.inception_fid``): the retain-prompt samples against the *original*
  model's retain-prompt samples of the same plan drawn with another seed (FID-to-original: no real image
  set exists for these prompts; SalUn / EraseDiff report COCO FID, which needs the user's COCO images).
"""

from __future__ import annotations

from typing import Any

from benchmark.api import EvalContext, Metric, MetricSpec, MetricValue


def instrument(ctx: EvalContext, name: str) -> str | None:
    return dict(ctx.extra.get("instruments") or ()).get(name)


class CLIPScoreFromFile(Metric):
    provides = (
        MetricSpec("clip_score_retain", "CLIP score (retain prompts)", higher_is_better=True),
        MetricSpec("clip_score_forget", "CLIP score (forget prompts)", higher_is_better=False),
    )

    def compute(self, ctx: EvalContext) -> list[MetricValue]:
        from benchmark.metrics.clip_zero_shot import LocalCLIP, clip_score_value

        spec = instrument(ctx, "clip")
        if spec is None:
            return []
        arch, _, path = spec.partition("=")
        clip = LocalCLIP.from_file(arch, path, device=ctx.device)
        group, groups = ctx.extra["group"], list(ctx.extra["groups"])
        prompts: list[Any] = list(ctx.extra["prompts"])
        out = []
        for key, g, hib in (("clip_score_retain", "retain", True), ("clip_score_forget", "forget_erase", False)):
            idx = [i for i in range(len(prompts)) if int(group[i]) == groups.index(g)]
            out.append(clip_score_value(clip, ctx.samples.x[idx], [prompts[i] for i in idx], key=key,
                                        higher_is_better=hib, what=f"{g.replace('_', ' ')} prompts, image vs its own prompt"))
        return out


class InceptionFIDToOriginal(Metric):
    provides = (MetricSpec("fid_inception", "FID-to-original[Inception] (retain prompts)", higher_is_better=False),
                MetricSpec("kid_inception", "KID-to-original[Inception]", higher_is_better=False),
                MetricSpec("precision_inception", "precision[Inception]", higher_is_better=True),
                MetricSpec("recall_inception", "recall[Inception]", higher_is_better=True))
    needs_original_samples = True

    def compute(self, ctx: EvalContext) -> list[MetricValue]:
        from benchmark.metrics.inception_fid import inception_fidelity

        path = instrument(ctx, "inception")
        original = ctx.retained_original()
        if path is None or original is None:
            return []
        return inception_fidelity(ctx.retained_samples(), original, path, device=ctx.device, cache_dir=ctx.cache_dir,
                                  what="retain-prompt samples vs the original model's (another seed)")
