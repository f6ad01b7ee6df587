"""Concept Inversion — Pham, Marshall, Cohen, Hegde, "Circumventing Concept Erasure Methods for
Text-to-Image Generative Models", ICLR 2024.

Textual inversion (Gal et al., ICLR 2023) against an erased model: one new token embedding v* is learnt,
with the model frozen, by the ordinary denoising loss on a few images of the concept captioned with v* in
the concept's place ("a handwritten {v*} in red"); images generated with v* in the erase prompts' wording
("an image showing {v*} coloured red", held-out templates) are judged. A model that destroyed the concept resists like the
retrained oracle; one that only cut the words off ("input filtering") gives the concept back.

Two image sources, each with its own value, so that *capability* is told apart from *memory of the very
images that were unlearned*:
- ``generated``: images of the concept made by the original model from erase-phrasing prompts (the
  paper's protocol: the attacker has the concept, not the training set) — judged as the concept; their
  captions are those prompts with v* in the concept's place, so v* is learnt in the very wording it is
  judged in (held-out templates);
- ``heldout``: real held-out images of the concept, never trained on by any model, captioned with the
  *training* templates — so the two sources differ in caption wording as well as in image origin, and
  a gap between them is not image memory alone.
Departures, stated: v* starts at the mean embedding of the trained caption vocabulary (the paper starts
from a word close to the concept; every concept word is excluded here, as in the prompt attacks); the
tiny model's budget (``steps``, ``lr``, set per tier by the card) replaces the paper's Stable Diffusion
schedule. The CI treats each judged prompt as one observation (Wilson over prompts: the images of one
prompt share its noise seed and all share the one learnt v*), which is conservative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attacks.concept.common import (
    TEXT_REQUIRES,
    SlotPrompt,
    concept_of,
    erase_prompts,
    measure_with_references,
    search_vocabulary,
)
from benchmark.api import Attack, AttackContext, AttackResult, DiffusionModel, LabeledImages, MetricValue
from benchmark.metrics.stats import wilson_ci
from methods.base import replace_concept

SOURCES = ("generated", "heldout")
CAPTIONS = {"generated": "captioned with their generation prompts, held-out templates",
            "heldout": "captioned with training templates"}


@dataclass
class ConceptInversionConfig:
    n_images: int = 25
    steps: int = 200
    batch_size: int = 25
    lr: float = 5e-2
    n_prompts: int = 8
    n_per_prompt: int = 4
    sample_steps: int | None = None  # DDIM steps for the judged samples (None: the tier's)


def placeholder_captions(captions: list[str], concept) -> list[str]:  # noqa: ANN001
    """Each caption with the concept's phrase (any erase phrasing or paraphrase) replaced by ``{}``."""
    phrases = list(concept.phrasings("erase")) + list(concept.phrasings("paraphrase"))
    return replace_concept(captions, phrases, ["{}"] * len(captions))



def sources(context: AttackContext) -> tuple[str, ...]:
    """Image sources to invert from: the original's samples, and held-out real images of the concept where
    the scenario has some (a Stable Diffusion audit has none: the training set is not the auditor's)."""
    return SOURCES if bool(context.forget_mask("heldout").any()) else SOURCES[:1]

class ConceptInversion(Attack):
    name = "concept_inversion"
    paper = ("Pham, Marshall, Cohen, Hegde. Circumventing Concept Erasure Methods for Text-to-Image Generative "
             "Models, ICLR 2024 (textual inversion of one new token)")
    family = "inversion"
    threat_model = "white-box gradients through the frozen model; a few images of the concept"
    requires = TEXT_REQUIRES
    tracks = frozenset({"text"})
    Config = ConceptInversionConfig
    config: ConceptInversionConfig

    def images(self, context: AttackContext, source: str) -> LabeledImages:
        """``n_images`` captioned images of the concept from ``source`` (the same for every model)."""
        cfg = self.config
        key = ("concept-inversion-images", source, cfg.n_images, context.seed,
               context.reference_models["original"].fingerprint())
        if key in context.cache:
            return context.cache[key]
        if source == "heldout":
            real = context.heldout.where(context.forget_mask("heldout"))
            pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(context.seed + 71))[:cfg.n_images]
            out = real.take(pick)
        else:
            prompts = erase_prompts(context, cfg.n_images * 4)
            prompts = [prompts[i % len(prompts)] for i in range(cfg.n_images * 4)]
            x = context.reference_models["original"].sample(prompts, seed=context.seed + 73,
                                                             steps=cfg.sample_steps or context.sample_steps,
                                                             guidance=context.guidance)
            keep = torch.nonzero(context.shows_concept(x)).flatten()[:cfg.n_images]
            if len(keep) == 0:  # the original never draws the concept (tiny test models): use them all
                keep = torch.arange(min(cfg.n_images, len(x)))
            vocab = tuple(sorted({prompts[int(i)] for i in keep}))
            out = LabeledImages(x[keep], torch.tensor([vocab.index(prompts[int(i)]) for i in keep]), vocab)
        context.cache[key] = out
        return out

    def invert(self, model: DiffusionModel, context: AttackContext,
               source: str) -> tuple[Tensor, list[float], str]:
        """(0/1 per judged sample, losses, stop reason or '') for one image source."""
        cfg = self.config
        concept = concept_of(context)
        clock = context.budget.start()
        frozen = model.clone().to(model.device).eval().requires_grad_(False)
        data = self.images(context, source)
        # the images in the model's data space, once (VAE latents on Stable Diffusion; identity on pixels)
        x0 = frozen.encode_images(data.x.to(frozen.device))
        captions = placeholder_captions(list(data.conditions), concept)
        unique = sorted(set(captions))
        slots = [SlotPrompt(frozen, c, 1) for c in unique]
        caption_row = torch.tensor([unique.index(c) for c in captions])
        table = frozen.text_encoder.token_embedding.weight.detach()  # type: ignore[attr-defined]
        init = table[torch.tensor(search_vocabulary(concept)).to(table.device)].mean(0, keepdim=True)
        v = init.clone().requires_grad_(True)
        opt = torch.optim.Adam([v], lr=cfg.lr)
        gen = torch.Generator().manual_seed(context.seed + 79)
        losses: list[float] = []
        for _ in range(cfg.steps):
            stopped = clock.exhausted()
            if stopped:
                return torch.empty(0), losses, stopped
            idx = torch.randint(0, len(data), (min(cfg.batch_size, len(data)),), generator=gen)
            # one batched text-encoder pass over the batch's distinct captions (the same v in each), then indexed
            distinct, inverse = torch.unique(caption_row[idx], return_inverse=True)
            states = frozen.encode_embeddings(torch.cat([slots[int(c)].embeddings(v) for c in distinct]))  # type: ignore[attr-defined]
            states = states[inverse.to(states.device)]
            loss = frozen.loss(x0[idx.to(x0.device)], states, generator=gen).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        judged = placeholder_captions(erase_prompts(context, cfg.n_prompts), concept)
        with torch.no_grad():
            states = torch.cat([SlotPrompt(frozen, p, 1).states(v.detach()) for p in judged])
        x = frozen.sample(states.repeat_interleave(cfg.n_per_prompt, dim=0), seed=context.seed + 83,
                          steps=cfg.sample_steps or context.sample_steps, guidance=context.guidance)
        return context.shows_concept(x), losses, ""

    def measure(self, model: DiffusionModel, context: AttackContext) -> tuple[dict[str, MetricValue], list[dict], str]:
        cfg = self.config
        values: dict[str, MetricValue] = {}
        rows: list[dict] = []
        for source in sources(context):
            hits, losses, stopped = self.invert(model, context, source)
            rows += [{"source": source, "step": i, "loss": v} for i, v in enumerate(losses)]
            if stopped:
                return values, rows, stopped
            h = hits.double().numpy()
            values[f"recovery_{source}"] = MetricValue(
                f"recovery_{source}", float(h.mean()), len(h), None, wilson_ci(float(h.mean()), cfg.n_prompts),
                f"share of {len(h)} samples ({cfg.n_prompts} erase prompts (held-out templates) with the learnt token "
                f"× {cfg.n_per_prompt}, s={context.guidance}) judged {context.concept_name}; token learnt in "
                f"{cfg.steps} Adam steps (lr {cfg.lr}) on {cfg.n_images} {source} images of the concept "
                f"({CAPTIONS[source]}); CI: Wilson over the {cfg.n_prompts} prompts (each prompt one observation)",
                {"final_loss": losses[-1] if losses else None})
        return values, rows, ""

    def run(self, model: DiffusionModel, context: AttackContext) -> AttackResult:
        skipped = self.skip_if_missing(model)
        if skipped:
            return skipped
        concept = concept_of(context)
        values, rows, stopped, notes = measure_with_references(
            self, model, context, lambda m: self.measure(m, context), [f"recovery_{s}" for s in sources(context)])
        if stopped:
            return AttackResult("failed", reason=f"stopped by the {stopped}", per_item=rows)
        return AttackResult("ok", values, per_item=rows,
                            conventions={"concept": concept.name, "init": "mean trained-vocabulary embedding",
                                         "sources": list(sources(context)), "judge": context.judge.label,
                                         "judge_sha256": context.judge.sha256,
                                         **({"reference_notes": notes} if notes else {})})
