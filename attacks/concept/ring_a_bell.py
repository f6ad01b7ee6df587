"""Ring-A-Bell — Tsai, Hsu, Xie, Lin, Chen, Li, Chen, Yu, Huang, "Ring-A-Bell! How Reliable are Concept
Removal Methods for Diffusion Models?", ICLR 2024 (released code: github.com/chiayi-hsu/Ring-A-Bell,
``Get_Concept_Vector.ipynb`` and ``InversePrompt.ipynb``).

Model-agnostic: the attacker only needs the *original* model's text encoder (released: SD v1.4's CLIP for
every erased model), never the erased model. So the adversarial prompts are searched **once** per (attack
config, seed, concept, text encoder) and cached in the run's ``context.cache``; each model — the one under
test and the references — then encodes the found tokens with its own text encoder, generates and is judged
(on the embedded text track every model shares the one CLIP; an audited Stable Diffusion model with an
edited text encoder is attacked with prompts found on the original's).

1. *Concept extraction.* Pairs of prompts with and without the concept, encoded by the text encoder
   (token-level states, L × D); the concept vector is the mean over pairs of (with − without).
   Here the pairs come from the data's own vocabulary: every training template × every phrasing of the
   other axis, the concept's erase phrasing j ("three", "the digit 3") against the same phrasing j of each
   other value of its axis ("five", "the digit 5"), with the rest of the prompt unchanged.
2. *Target.* For each prompt P that asks for the concept (``erase_prompts``):
   target(P) = states(P) + η · concept vector.
3. *Prompt discovery* (the released genetic algorithm): a population of ``population`` random sequences of
   K tokens, laid out as [start, K tokens, end, padding]; fitness = ‖states(candidate) − target‖²
   summed over all L × D entries (lower is better). Each generation: score every candidate, sort, keep
   the best half; then (except after the last generation) *crossover* — every kept parent stays and,
   with probability ``crossover_rate``, is paired with a uniformly drawn kept parent (possibly itself) at
   a uniform cut point, adding both children — and *mutation* — every member of the new population,
   parents included, with probability ``mutation_rate`` gets one uniformly chosen slot replaced by a
   uniformly drawn token. No elitism beyond that (a kept parent can be mutated, as in the released code);
   the output is the best candidate of the last evaluation, its K tokens only (the original prompt is
   not part of the adversarial prompt).
4. *Judging.* Each adversarial prompt generates ``n_per_prompt`` images with the model under test
   (the scenario's guidance and DDIM steps); a prompt succeeds when the judge reads any of them as the
   concept: ASR-1 (first image) and ASR-N (any of N) over prompts, Wilson CIs. Pre-attack ASR on the
   original prompts P with the same noise. Both also on the original and the retrained oracle, with the
   gap to the oracle for the headline values (ASR-N after and before the attack).

Released-code facts followed: population 200, 3000 generations, mutation rate 0.25, crossover rate 0.5,
K = 16 (or 75 for "K = 77"), η (``cof``) = 3; initial tokens uniform; fitness a *sum* of squares over the
full padded sequence; truncation selection of the best half; single-point crossover on the token slots;
one-slot mutation; the concept vector a plain mean of paired differences of full-sequence states.

Departures, stated here and in the result's ``conventions``:
- scale: defaults population 64, 60 generations, K = 12, 8 prompts × 4 images (the released 200 / 3000 /
  K = 16 on a 77-token context; ours is 32 tokens and a tiny CLIP);
- vocabulary: tokens are drawn from ``search_vocabulary`` (the tiny CLIP's trained caption tokens minus
  the concept's own phrasings) instead of SD's whole vocabulary [1, 49406): the rest of the tiny CLIP's
  table is untrained noise, and the concept's own words make it the paraphrase attack, measured apart;
- layout: one end token followed by the model's tokenizer's padding (the project's tiny CLIP: id 0; SD v1:
  the end token again, as released), which is what the tokenizer produces for a typed prompt, where the
  released code fills every slot after the K tokens with the end token (SD's tokenizer pads with it);
- concept pairs: built from the templates and phrasings of the embedded data, the concept replaced by
  another value of its axis (a digit image always shows some digit) rather than deleted, and not filtered
  by generating images (the released nudity pairs drop pairs whose images NudeNet did not flag);
- judging conditions the model on the exact text states of the found token sequence (no detokenise /
  retokenise round trip); the decoded text is reported with whether it retokenises to the same tokens
  and its own distance to the target (the released code writes the decoded text and re-types it);
- randomness: one seeded ``random.Random`` per prompt (seed, prompt) instead of the global NumPy/Python
  generators, so a prompt's search does not depend on the others;
- budget: the search costs no UNet image pass, so an image cap stops the attack only before judging; the
  wall-clock cap is checked between generations and before each judging pass.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attacks.concept.common import (
    TEXT_REQUIRES,
    against_references,
    asr_values,
    concept_of,
    decode,
    erase_prompts,
    judge_conditions,
    search_vocabulary,
    special_tokens,
)
from attacks.inversion.common import cached_per_model
from benchmark.api import Attack, AttackContext, AttackResult, BudgetClock, DiffusionModel, MetricValue


@dataclass
class RingABellConfig:
    n_prompts: int = 8
    n_per_prompt: int = 4
    k_tokens: int = 12  # K: adversarial prompt length in tokens (released: 16 of 75 slots)
    eta: float = 3.0  # η: strength of the concept vector in the target (released ``cof`` = 3)
    population: int = 64  # released: 200
    generations: int = 60  # released: 3000
    mutation_rate: float = 0.25  # released: 0.25
    crossover_rate: float = 0.5  # released: 0.5
    batch_size: int = 1024  # token sequences per text-encoder pass (speed only)
    sample_steps: int | None = None  # DDIM steps for the judged samples (None: the tier's)

    def __post_init__(self) -> None:
        if self.k_tokens < 1 or self.population < 2 or self.generations < 1 or self.n_prompts < 1 \
                or self.n_per_prompt < 1 or self.batch_size < 1:
            raise ValueError("ring_a_bell wants k_tokens ≥ 1, population ≥ 2, generations ≥ 1, n_prompts ≥ 1, "
                             "n_per_prompt ≥ 1, batch_size ≥ 1")
        if not (0 <= self.mutation_rate <= 1 and 0 <= self.crossover_rate <= 1):
            raise ValueError("ring_a_bell wants mutation_rate and crossover_rate in [0, 1]")


def concept_pairs(concept: Any) -> tuple[list[str], list[str]]:
    """(with, without) prompt pairs for the concept vector: every training template × every phrasing of the
    other axis × the concept's erase phrasing j vs phrasing j of each other value of the concept's axis."""
    if hasattr(concept, "contrast_pairs"):  # a card-defined concept (Stable Diffusion) names its own pairs
        return concept.contrast_pairs()
    from benchmark.data.mnist_text import (
        COLOUR_PHRASINGS,
        COLOURS,
        DIGIT_PHRASINGS,
        NUM_COLOURS,
        TRAIN_TEMPLATES,
        all_phrasings_colour,
        all_phrasings_digit,
    )

    own = concept.phrasings("erase")
    if concept.axis == "digit":
        others = [DIGIT_PHRASINGS[d][0] for d in sorted(DIGIT_PHRASINGS) if d != int(concept.value)]
        context = [p for c in range(NUM_COLOURS) for p in all_phrasings_colour(c)]
        fill = lambda t, mine, rest: t.format(digit=mine, colour=rest)  # noqa: E731
    else:
        others = [COLOUR_PHRASINGS[c][0] for c in COLOURS if c != str(concept.value)]
        context = [p for d in sorted(DIGIT_PHRASINGS) for p in all_phrasings_digit(d)]
        fill = lambda t, mine, rest: t.format(digit=rest, colour=mine)  # noqa: E731
    with_c, without_c = [], []
    for template in TRAIN_TEMPLATES:
        for rest in context:
            for j, phrase in enumerate(own):
                for other in others:
                    with_c.append(fill(template, phrase, rest))
                    without_c.append(fill(template, other[j % len(other)], rest))
    return with_c, without_c


class RingABell(Attack):
    name = "ring_a_bell"
    paper = ("Tsai et al., Ring-A-Bell! How Reliable are Concept Removal Methods for Diffusion Models?, "
             "ICLR 2024")
    family = "adversarial_prompt"
    threat_model = ("model-agnostic: the frozen text encoder only (shared by every model of the scenario), a few "
                    "prompts that ask for the concept; the erased model is used only to generate from the "
                    "found prompts (black-box)")
    requires = TEXT_REQUIRES
    tracks = frozenset({"text"})
    Config = RingABellConfig
    config: RingABellConfig

    # -- text encoder only ------------------------------------------------------------------------------
    @staticmethod
    def _states(model: DiffusionModel, ids: Tensor, batch_size: int) -> Tensor:
        """Text states (N × L × D, on the CPU) of token-id sequences through the frozen text encoder."""
        enc = model.text_encoder  # type: ignore[attr-defined]
        device = enc.token_embedding.weight.device
        with torch.no_grad():
            return torch.cat([enc(ids[i:i + batch_size].to(device)).float().cpu()
                              for i in range(0, len(ids), batch_size)])

    def concept_vector(self, model: DiffusionModel, concept: Any) -> tuple[Tensor, int]:
        """Mean over pairs of states(with) − states(without) (L × D), and the number of pairs."""
        with_c, without_c = concept_pairs(concept)
        unique = sorted(set(with_c) | set(without_c))
        row = {p: i for i, p in enumerate(unique)}
        states = self._states(model, model.tokenize(unique), self.config.batch_size)  # type: ignore[attr-defined]
        diff = states[[row[p] for p in with_c]] - states[[row[p] for p in without_c]]
        return diff.mean(0), len(with_c)

    def _layout(self, model: DiffusionModel) -> tuple[int, int, int, int]:
        """(start id, end id, context length, pad id) of the model's tokenizer (``special_tokens``)."""
        empty = model.tokenize([""])[0]  # type: ignore[attr-defined]
        sot, eot, pad = special_tokens(model)
        return sot, eot, int(empty.shape[0]), pad

    def _ids(self, genomes: list[list[int]], layout: tuple[int, int, int, int]) -> Tensor:
        sot, eot, length, pad = layout
        k = self.config.k_tokens
        # padded as the tokenizer pads a typed prompt (0 on the tiny CLIP, the end token on SD v1)
        return torch.tensor([[sot, *g, eot] + [pad] * (length - k - 2) for g in genomes], dtype=torch.long)

    def search(self, model: DiffusionModel, context: AttackContext, clock: BudgetClock | None = None) -> dict[str, Any]:
        """The genetic prompt search on the text encoder alone. Returns a dict with, per prompt, the best
        token ids, their distance, the best distance of the initial population and the per-generation
        history; ``stopped`` is '' when every generation ran (else which cap stopped it)."""
        from benchmark import UnlearnbenchError

        cfg = self.config
        concept = concept_of(context)
        prompts = erase_prompts(context, cfg.n_prompts)
        layout = self._layout(model)
        if cfg.k_tokens + 2 > layout[2]:
            raise UnlearnbenchError(f"k_tokens = {cfg.k_tokens} does not fit the {layout[2]}-token text context "
                                    "with its start and end tokens")
        vocab = search_vocabulary(concept)
        stopped = clock.exhausted() if clock is not None else ""
        if stopped:  # nothing done yet, not even the concept vector
            return {"prompts": prompts, "best": [None] * len(prompts), "history": [[] for _ in prompts],
                    "stopped": stopped, "generations": 0, "layout": layout}
        vector, n_pairs = self.concept_vector(model, concept)
        base = self._states(model, model.tokenize(prompts), cfg.batch_size)  # type: ignore[attr-defined]
        targets = base + cfg.eta * vector
        rngs = [random.Random(f"ring_a_bell:{context.seed}:{p}") for p in prompts]
        k, half = cfg.k_tokens, cfg.population // 2
        pops = [[[rng.choice(vocab) for _ in range(k)] for _ in range(cfg.population)] for rng in rngs]
        history: list[list[float]] = [[] for _ in prompts]
        best: list[tuple[list[int], float] | None] = [None] * len(prompts)
        stopped = ""
        for gen in range(cfg.generations):
            stopped = clock.exhausted() if clock is not None else ""
            if stopped:
                break
            flat = [g for pop in pops for g in pop]
            owner = torch.tensor([i for i, pop in enumerate(pops) for _ in pop])
            states = self._states(model, self._ids(flat, layout), cfg.batch_size)
            dist = (states - targets[owner]).pow(2).sum((1, 2)).tolist()
            start = 0
            for i, pop in enumerate(pops):
                scores = dist[start:start + len(pop)]
                start += len(pop)
                order = sorted(range(len(pop)), key=scores.__getitem__)  # stable: ties keep their order
                kept = [pop[j] for j in order[:half]]
                history[i].append(scores[order[0]])
                best[i] = (list(kept[0]), scores[order[0]])
                if gen == cfg.generations - 1:
                    pops[i] = kept
                    continue
                rng = rngs[i]
                new: list[list[int]] = []
                for parent in kept:  # crossover: every parent stays; some add two children
                    new.append(parent)
                    if rng.random() < cfg.crossover_rate:
                        mate = kept[rng.randrange(len(kept))]
                        cut = rng.randrange(k)  # released: point in [1, K] of [start, tokens…] = slot cut 0..K−1
                        new.append(parent[:cut] + mate[cut:])
                        new.append(mate[:cut] + parent[cut:])
                for member in new:  # mutation: one slot of some members, parents included
                    if rng.random() < cfg.mutation_rate:
                        member[rng.randrange(k)] = rng.choice(vocab)
                pops[i] = new
        return {"prompts": prompts, "best": best, "history": history, "stopped": stopped,
                "generations": len(history[0]) if history else 0, "n_pairs": n_pairs, "vocab_size": len(vocab),
                "vector_norm": float(vector.norm()), "targets": targets, "layout": layout}

    def _text_fingerprint(self, model: DiffusionModel) -> str:
        enc = model.text_encoder  # type: ignore[attr-defined]
        fp = getattr(enc, "_unlearnbench_fingerprint", None)
        if fp is None:
            from benchmark.models.fingerprint import fingerprint_modules

            fp = fingerprint_modules({"text_encoder": enc})
        return fp

    def found_prompts(self, model: DiffusionModel, context: AttackContext, clock: BudgetClock) -> dict[str, Any]:
        """The search, once per (config, seed, concept, text encoder) in the run's cache (only when it
        finished: a search cut short by a budget is retried by the next model)."""
        concept = concept_of(context)
        key = ("ring_a_bell:search", repr(self.config), context.seed, concept.axis, str(concept.value),
               tuple(context.forget_prompts or ()), self._text_fingerprint(model))
        if key in context.cache:
            return context.cache[key]
        found = self.search(model, context, clock)
        if not found["stopped"]:
            context.cache[key] = found
        return found

    # -- per model ------------------------------------------------------------------------------------------
    def attack(self, model: DiffusionModel, context: AttackContext) -> tuple[dict[str, MetricValue], list[dict], str]:
        cfg = self.config
        clock = context.budget.start()
        # the search runs on the original model's text encoder (released: SD v1.4's CLIP for every erased model),
        # so a model whose own text encoder was edited is judged on prompts it did not help to find
        found = self.found_prompts(context.reference_models.get("original", model), context, clock)
        prompts, n = found["prompts"], cfg.n_per_prompt
        rows: list[dict[str, Any]] = []
        for p, b in zip(prompts, found["best"]):
            ids = b[0] if b else []
            rows.append({"prompt": p, "adversarial_prompt": decode(ids) if ids else "", "tokens": ids,
                         "distance": b[1] if b else None, "success": None, "hits": None, "n": 0})
        if found["stopped"]:
            return {}, rows, f"{found['stopped']} in the prompt search after {found['generations']} of " \
                             f"{cfg.generations} generations"
        ids = self._ids([b[0] for b in found["best"]], found["layout"])
        adv_states = self._states(model, ids, cfg.batch_size).to(model.device)
        seed = context.seed + 71  # the same noise before and after the attack
        stopped = clock.exhausted()
        if stopped:
            return {}, rows, f"{stopped} before judging"
        pre = judge_conditions(model, prompts, context, n, seed, cfg.sample_steps)
        stopped = clock.exhausted()
        if stopped:
            return {}, rows, f"{stopped} before judging the adversarial prompts"
        post = judge_conditions(model, adv_states, context, n, seed, cfg.sample_steps)
        retyped = self._retyped(model, rows, found)
        for i, row in enumerate(rows):
            row.update({"initial_distance": found["history"][i][0], "success": bool(post[i].any()),
                        "hits": int(post[i].sum()), "n": n, "pre_hits": int(pre[i].sum()), **retyped[i]})
        steps = cfg.sample_steps or context.sample_steps
        what = (f"{len(prompts)} Ring-A-Bell prompts ({cfg.k_tokens} tokens found by a genetic search on the text "
                f"encoder: population {cfg.population}, {cfg.generations} generations, η={cfg.eta:g}) × {n} images, "
                f"s={context.guidance}, DDIM {steps}")
        values = {k.removeprefix("post_"): dataclasses.replace(v, name=k.removeprefix("post_"))
                  for k, v in asr_values(post, "post", what, n).items()}
        values.update(asr_values(pre, "pre", f"no attack: the same {len(prompts)} erase-phrasing prompts × {n} "
                                             f"images with the same noise, s={context.guidance}, DDIM {steps}", n))
        return values, rows, ""

    def _retyped(self, model: DiffusionModel, rows: list[dict], found: dict[str, Any]) -> list[dict[str, Any]]:
        """Whether each decoded prompt retokenises to the found tokens, and the retyped text's distance."""
        out = []
        layout = found["layout"]
        for i, row in enumerate(rows):
            exact = self._ids([row["tokens"]], layout)[0]
            try:
                ids = model.tokenize([row["adversarial_prompt"]])[0]  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a decoded text longer than the context: no retyped distance
                out.append({"retokenises_exactly": False, "retyped_distance": None})
                continue
            same = bool(torch.equal(ids.cpu(), exact))
            dist = row["distance"] if same else float(
                (self._states(model, ids[None], 1)[0] - found["targets"][i]).pow(2).sum())
            out.append({"retokenises_exactly": same, "retyped_distance": dist})
        return out

    def run(self, model: DiffusionModel, context: AttackContext) -> AttackResult:
        skipped = self.skip_if_missing(model)
        if skipped:
            return skipped
        cfg = self.config
        concept = concept_of(context)
        values, rows, stopped = cached_per_model(context, self, model, lambda: self.attack(model, context))
        if stopped:
            return AttackResult("failed", reason=f"stopped by the {stopped}", per_item=rows)

        def reference(ref: DiffusionModel) -> dict[str, MetricValue] | None:
            v, _, ref_stopped = cached_per_model(context, self, ref, lambda: self.attack(ref, context))
            return None if ref_stopped else v

        n = cfg.n_per_prompt
        values, notes = against_references(values, context, reference, [f"asr{n}", f"pre_asr{n}"])
        dists = [r["distance"] for r in rows]
        return AttackResult("ok", values, per_item=rows, conventions={
            "concept": concept.name, "k_tokens": cfg.k_tokens, "eta": cfg.eta, "population": cfg.population,
            "generations": cfg.generations, "mutation_rate": cfg.mutation_rate, "crossover_rate": cfg.crossover_rate,
            "n_per_prompt": n, "vocabulary": "trained caption tokens minus the concept's own (search_vocabulary)",
            "concept_vector": "mean of states(with) − states(without) over template × other-axis phrasing × "
                              "erase phrasing pairs, the concept replaced by each other value of its axis",
            "fitness": "sum of squared differences over all L × D text states (lower is better)",
            "layout": f"[start, K tokens, end, padding {self._layout(model)[3]}] "
                      "(released: end token repeated)",
            "judged_on": "exact text states of the found tokens (no detokenise/retokenise round trip)",
            "search": "text encoder only, once per (config, seed, concept, text encoder), shared by all models",
            "mean_distance": sum(dists) / len(dists) if dists else None,
            "mean_initial_distance": (sum(r["initial_distance"] for r in rows) / len(rows)) if rows else None,
            "retokenise_share": (sum(r["retokenises_exactly"] for r in rows) / len(rows)) if rows else None,
            "judge": context.judge.label, "judge_sha256": context.judge.sha256,
            **({"reference_notes": notes} if notes else {})})
