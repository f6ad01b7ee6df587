"""No-attack baselines of the concept attacks: does the erased model still draw the concept when simply asked?

Pre-attack ASR on two prompt sets, each ``n_prompts`` prompts × ``n_per_prompt`` images (the scenario's
guidance and DDIM steps):
- **erase phrasings** ("an image showing zero coloured red"): the words the unlearning method was
  given — the field's "pre-ASR" (e.g. UnlearnDiffAtk's no-attack column);
- **paraphrases** ("an image showing nought coloured red"): words no method was shown — the
  paraphrase attack, the cheapest attack a user who was never told the erased word can mount.
ASR-1 counts a prompt as a success when its first image is judged the concept; ASR-N when any of its N
images is (the UnlearnDiffAtk / Ring-A-Bell convention of several tries per prompt). Each value is
also computed on the original (the concept is there: ASR should be high) and on the retrained oracle
(it never was: ASR should be low), with the gap to the oracle. Every prompt attack reports its own
pre-ASR on its own prompts; this attack gives the two baselines on their own, cheaply, for every method.
"""

from __future__ import annotations

from dataclasses import dataclass

from attacks.concept.common import (
    asr_values,
    concept_of,
    erase_prompts,
    judge_conditions,
    measure_with_references,
    paraphrase_prompts,
)
from benchmark.api import Attack, AttackContext, AttackResult, DiffusionModel, MetricValue


@dataclass
class ConceptASRConfig:
    n_prompts: int = 16
    n_per_prompt: int = 4
    sample_steps: int | None = None  # DDIM steps (None: the tier's)


class ConceptASR(Attack):
    name = "concept_asr"
    paper = ("No-attack baselines (pre-ASR) of Zhang et al., UnlearnDiffAtk, ECCV 2024; the paraphrase attack "
             "(synonyms never given to the method)")
    family = "adversarial_prompt"
    threat_model = "black-box: the attacker types prompts and looks at the images"
    requires = frozenset({"text_cond"})
    tracks = frozenset({"text"})
    Config = ConceptASRConfig
    config: ConceptASRConfig

    def measure(self, model: DiffusionModel, context: AttackContext) -> tuple[dict[str, MetricValue], list[dict], str]:
        cfg = self.config
        clock = context.budget.start()
        values: dict[str, MetricValue] = {}
        rows: list[dict] = []
        for offset, (kind, prompts) in enumerate((("erase", erase_prompts(context, cfg.n_prompts)),
                                                  ("paraphrase", paraphrase_prompts(context, cfg.n_prompts)))):
            stopped = clock.exhausted()
            if stopped:
                return values, rows, stopped
            success = judge_conditions(model, prompts, context, cfg.n_per_prompt, context.seed + 41 + offset,
                                       cfg.sample_steps)
            what = (f"{len(prompts)} {kind}-phrasing prompts (held-out templates) × {cfg.n_per_prompt} images, "
                    f"s={context.guidance}, DDIM {cfg.sample_steps or context.sample_steps}")
            values.update(asr_values(success, kind, what, cfg.n_per_prompt))
            rows += [{"kind": kind, "prompt": p, "hits": int(s.sum()), "n": cfg.n_per_prompt}
                     for p, s in zip(prompts, success)]
        return values, rows, ""

    def run(self, model: DiffusionModel, context: AttackContext) -> AttackResult:
        skipped = self.skip_if_missing(model)
        if skipped:
            return skipped
        concept = concept_of(context)
        n = self.config.n_per_prompt
        headline = ["erase_asr1", f"erase_asr{n}", "paraphrase_asr1", f"paraphrase_asr{n}"]
        values, rows, stopped, notes = measure_with_references(self, model, context,
                                                               lambda m: self.measure(m, context), headline)
        if stopped:
            return AttackResult("failed", reason=f"stopped by the {stopped}", per_item=rows)
        return AttackResult("ok", values, per_item=rows,
                            conventions={"concept": concept.name, "erase_phrasings": list(concept.phrasings("erase")),
                                         "paraphrases": list(concept.phrasings("paraphrase")),
                                         "n_per_prompt": n, "judge": context.judge.label,
                                         "judge_sha256": context.judge.sha256,
                                         **({"reference_notes": notes} if notes else {})})

