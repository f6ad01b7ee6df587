"""CLIP score (Hessel et al., EMNLP 2021) through ``open_clip``, with the text track's own tiny CLIP.

CLIPScore(image, prompt) = 100 · max(cos(E_img(image), E_txt(prompt)), 0): the scale of torchmetrics'
``CLIPScore`` (Hessel et al. use 2.5 · max(cos, 0)); 0 to 100, higher = the image matches its prompt
better. Reported on retained prompts (utility) and on erase-phrasing and paraphrase prompts of the
forgotten concept (lower = the concept is less present), each a mean over samples with n and a 95%
bootstrap CI. The CLIP is the zoo's ``mnist-text-clip`` (the same one whose text tower conditions the
model), pinned by sha256, loaded from its local file — never from a hub.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark.api import EvalContext, Metric, MetricSpec, MetricValue
from benchmark.metrics.concept import _value

SCALE = 100.0


@torch.no_grad()
def clip_scores(clip: torch.nn.Module, images: torch.Tensor, prompts: list[str], batch_size: int = 512) -> torch.Tensor:
    """Per-pair CLIP score of images in [−1, 1] and their prompts (the model's own input convention)."""
    from benchmark.models.tiny_clip import tokenize

    out = []
    for i in range(0, len(prompts), batch_size):
        img = F.normalize(clip.encode_image(images[i:i + batch_size]), dim=-1)
        txt = F.normalize(clip.encode_text(tokenize(prompts[i:i + batch_size])), dim=-1)
        out.append(SCALE * (img * txt).sum(-1).clamp_min(0))
    return torch.cat(out) if out else torch.empty(0)


class CLIPScoreMetrics(Metric):
    provides = (
        MetricSpec("clip_score_retain", "CLIP score (retained)", higher_is_better=True),
        MetricSpec("clip_score_forget", "CLIP score (forget, erase)", higher_is_better=False),
        MetricSpec("clip_score_forget_paraphrase", "CLIP score (forget, paraphrase)", higher_is_better=False),
    )

    def compute(self, ctx: EvalContext) -> list[MetricValue]:
        from benchmark import zoo

        spec = ctx.extra.get("clip") or {"zoo": zoo.TEXT_CLIP}
        clip = zoo.load_clip(spec["zoo"], spec.get("sha256"))
        sha = zoo.read_manifest(zoo.locate(spec["zoo"])).get("sha256", "")
        prompts = list(ctx.extra["prompts"])
        scores = clip_scores(clip, ctx.samples.x, prompts)
        group, groups = ctx.extra["group"], list(ctx.extra["groups"])
        proto = f"100·max(cos, 0), open_clip {spec['zoo']} sha256:{sha[:12]}, image vs its own prompt (held-out templates)"
        out = []
        for key, g in (("clip_score_retain", "retain"), ("clip_score_forget", "forget_erase"),
                       ("clip_score_forget_paraphrase", "forget_paraphrase")):
            m = group == groups.index(g)
            out.append(_value(key, scores[m], key == "clip_score_retain", f"{g} prompts; {proto}"))
        return out
