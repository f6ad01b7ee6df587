"""Classifier metrics on the class track, judged on CFG samples (the metrics are described in the README).

- forget accuracy: share of forget-class samples the judge calls the forget class (UA = 1 − it)
- P(forgotten): mean judge probability of the forget class on forget-class samples
- P(forgotten | digit): the same with the judge's probabilities renormalised over the 10 digit outputs
  (a softmax over the digit logits only), the quantity the papers' 10-way classifiers report
- entropy: mean judge prediction entropy (nats) on forget-class samples
- retain accuracy: share of retained-class samples judged as their requested class (mean, and per class)
- not-a-digit rate: share of forget-class samples the judge rejects as "not a digit" (judges with a
  reject output only) — tells noise-like erasure (EraseDiff-noise, SA) from remapping to another class
All with n and a 95% bootstrap CI over samples.
"""

from __future__ import annotations

import torch

from benchmark.api import EvalContext, Metric, MetricSpec, MetricValue
from benchmark.metrics.stats import bootstrap_ci


class ClassifierMetrics(Metric):
    provides = (
        MetricSpec("forget_accuracy", "forget acc", higher_is_better=False),
        MetricSpec("p_forgotten", "P(forgotten)", higher_is_better=False),
        MetricSpec("p_forgotten_digits", "P(forgotten | digit)", higher_is_better=False),
        MetricSpec("forget_entropy", "entropy", higher_is_better=None),
        MetricSpec("retain_accuracy", "retain acc", higher_is_better=True),
        MetricSpec("forget_reject_rate", "not-a-digit", higher_is_better=None),
    )

    def compute(self, ctx: EvalContext) -> list[MetricValue]:
        judge, fc = ctx.judge, ctx.forget_class
        probs = judge.predict_proba(ctx.samples.x)
        pred = probs.argmax(1)
        y = ctx.samples.y
        is_f = y == fc
        proto = f"judge {getattr(judge, 'label', judge.name)} sha256:{judge.sha256[:12]} on CFG samples"
        out: list[MetricValue] = []

        def add(key: str, per_item: torch.Tensor, hib: bool | None, what: str, **extra: object) -> None:
            v = per_item.double().numpy()
            out.append(MetricValue(key, float(v.mean()) if len(v) else float("nan"), len(v), hib,
                                   bootstrap_ci(v), f"{what}; {proto}", dict(extra)))

        pf = probs[is_f]
        add("forget_accuracy", (pred[is_f] == fc).float(), False, f"share of class-{fc} samples judged {fc}")
        add("p_forgotten", pf[:, fc], False, f"mean judge P(class {fc}) on class-{fc} samples")
        reject = getattr(judge, "reject_class", None)
        if reject is not None:
            digits = [c for c in range(probs.shape[1]) if c != reject]
            renorm = pf[:, digits] / pf[:, digits].sum(1, keepdim=True).clamp_min(1e-12)
            add("p_forgotten_digits", renorm[:, digits.index(fc)], False,
                f"mean judge P(class {fc}) renormalised over the digit outputs, on class-{fc} samples")
        entropy = -(pf.clamp_min(1e-12).log() * pf).sum(1)
        add("forget_entropy", entropy, None, f"mean prediction entropy (nats) on class-{fc} samples")
        keep = ~is_f
        per_class = {int(c): float((pred[y == c] == c).float().mean()) for c in torch.unique(y[keep]).tolist()}
        add("retain_accuracy", (pred[keep] == y[keep]).float(), True,
            "share of retained-class samples judged as requested", per_class=per_class)
        if reject is not None:
            add("forget_reject_rate", (pred[is_f] == reject).float(), None,
                f"share of class-{fc} samples judged 'not a digit'")
        return out
