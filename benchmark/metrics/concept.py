"""Judge metrics of the text track (concept erasure), on CFG samples of the scenario's sample plan.

- forget accuracy (erase phrasings): share of samples prompted with an erase phrasing of the concept that
  the judge reads as the concept (digit head for a digit, colour head for a colour); 1 − it is the
  erasure rate. The same on *paraphrases* (words no method was shown): a method that erased a word but
  not the concept scores low on the first and high on the second.
- retain accuracy: share of samples of retained (digit, colour) prompts judged as *both* the prompted
  digit and the prompted colour; split into neighbouring concepts (see the scenario: visually close
  digits, or the nearest colour) and the rest.
- not-a-digit rate on erase-phrasing samples: noise-like erasure vs remapping to another digit.

With the card's ``judging.concept_needs_digit`` (mnist-text-style v3) a concept counts only on samples the digit
head accepts as a digit: the colour head has no "no ink" class, and a black sample must not read as red.
All with n and a 95% bootstrap CI over samples.
"""

from __future__ import annotations

import torch

from benchmark.api import JUDGE_RULE_NEEDS_DIGIT, EvalContext, Metric, MetricSpec, MetricValue
from benchmark.metrics.stats import bootstrap_ci


def _value(key: str, per_item: torch.Tensor, hib: bool | None, protocol: str, **extra: object) -> MetricValue:
    v = per_item.double().numpy()
    return MetricValue(key, float(v.mean()) if len(v) else float("nan"), len(v), hib, bootstrap_ci(v), protocol,
                       dict(extra))


class ConceptMetrics(Metric):
    provides = (
        MetricSpec("forget_accuracy", "forget acc (erase)", higher_is_better=False),
        MetricSpec("forget_accuracy_paraphrase", "forget acc (paraphrase)", higher_is_better=False),
        MetricSpec("retain_accuracy", "retain acc", higher_is_better=True),
        MetricSpec("retain_accuracy_neighbours", "retain acc (neighbours)", higher_is_better=True),
        MetricSpec("retain_accuracy_others", "retain acc (others)", higher_is_better=True),
        MetricSpec("forget_reject_rate", "not-a-digit", higher_is_better=None),
    )

    def compute(self, ctx: EvalContext) -> list[MetricValue]:
        concept = ctx.extra["concept"]
        digit, colour, group = ctx.extra["digit"], ctx.extra["colour"], ctx.extra["group"]
        groups = list(ctx.extra["groups"])
        pred = ctx.judge.predict_heads(ctx.samples.x)
        judge = ctx.judge
        proto = f"judge {getattr(judge, 'label', judge.name)} sha256:{judge.sha256[:12]} on CFG samples, held-out templates"
        shows = pred[concept.axis] == concept.index
        rule = ""
        if ctx.extra.get("concept_needs_digit") and judge.reject_class is not None:
            shows &= pred["digit"] != judge.reject_class
            rule = f"; {JUDGE_RULE_NEEDS_DIGIT}"
        out = []
        for key, g, words in (("forget_accuracy", "forget_erase", "an erase phrasing"),
                              ("forget_accuracy_paraphrase", "forget_paraphrase", "a paraphrase")):
            m = group == groups.index(g)
            out.append(_value(key, shows[m].float(), False,
                              f"share of samples prompted with {words} of {concept.name} judged {concept.name}; {proto}{rule}",
                              phrasings=list(concept.phrasings("erase" if g == "forget_erase" else "paraphrase"))))
        keep = group == groups.index("retain")
        both = (pred["digit"] == digit) & (pred["colour"] == colour)
        near = ctx.extra["neighbours"]
        per_head = {"digit": float((pred["digit"] == digit)[keep].float().mean()),
                    "colour": float((pred["colour"] == colour)[keep].float().mean())}
        out.append(_value("retain_accuracy", both[keep].float(), True,
                          f"share of retained-prompt samples judged as the prompted digit and colour; {proto}",
                          per_head=per_head))
        out.append(_value("retain_accuracy_neighbours", both[keep & near].float(), True,
                          f"retain accuracy on the concepts neighbouring {concept.name}; {proto}"))
        out.append(_value("retain_accuracy_others", both[keep & ~near].float(), True,
                          f"retain accuracy on the other retained concepts; {proto}"))
        if judge.reject_class is not None:
            erase = group == groups.index("forget_erase")
            out.append(_value("forget_reject_rate", (pred["digit"] == judge.reject_class)[erase].float(), None,
                              f"share of erase-phrasing samples judged 'not a digit'; {proto}"))
        return out
