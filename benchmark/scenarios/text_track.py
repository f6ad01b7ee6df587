"""The text track's setup: ``mnist-text`` images and captions, a text-conditioned UNet, forget one concept.

What a method is handed (``request``): D_f = the member images showing the concept, each with one
seeded training caption that names the concept by an *erase phrasing*; D_r = every other member image
with a seeded training caption (any phrasing: none of them names the forget concept);
``forget_target`` = the concept's erase phrasings; ``remap_targets`` = the first erase phrasing of every
other value on the same axis (other digits, other colours). Paraphrases of the concept and held-out
templates never reach a method.

Sample plan (per tier, ``samples_per_class`` images per prompt cell, all prompts on *held-out*
templates): ``forget_erase`` — every cell showing the concept, prompted with an erase phrasing;
``forget_paraphrase`` — the same cells, prompted with a paraphrase; ``retain`` — every other
(digit, colour) cell, any phrasing. Neighbouring concepts (what a careless method drags along): for a
digit, the two digits whose member-image class means are nearest in pixel space; for a colour, the
nearest ink colour in RGB. Both rules are fixed here, not tuned on results.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import torch

from benchmark.api import (
    AttackContext,
    DiffusionModel,
    EvalContext,
    LabeledImages,
    UnlearnRequest,
)
from benchmark.data.mnist import NUM_CLASSES
from benchmark.data.mnist_text import (
    COLOUR_RGB,
    COLOURS,
    HELDOUT_TEMPLATES,
    NUM_COLOURS,
    TRAIN_TEMPLATES,
    Concept,
    TextImages,
    all_phrasings_colour,
    all_phrasings_digit,
    mnist_text_splits,
    parse_concept,
)
from benchmark.scenarios.setup import ScenarioSetup

GROUPS = ("forget_erase", "forget_paraphrase", "retain")


@functools.lru_cache(maxsize=1)
def close_digits(k: int = 2) -> dict[int, tuple[int, ...]]:
    """For each digit, the ``k`` digits whose member-image class means are nearest (Euclidean, pixels)."""
    from benchmark.data.mnist import mnist_splits

    m = mnist_splits(0).members
    means = torch.stack([m.x[m.y == c].mean(0).flatten() for c in range(NUM_CLASSES)])
    dist = torch.cdist(means, means)
    return {c: tuple(int(i) for i in dist[c].argsort()[1:k + 1]) for c in range(NUM_CLASSES)}


def close_colours() -> dict[str, str]:
    rgb = {c: torch.tensor(v) for c, v in COLOUR_RGB.items()}
    return {a: min((b for b in COLOURS if b != a), key=lambda b: float((rgb[a] - rgb[b]).norm())) for a in COLOURS}


def neighbour_mask(concept: Concept, digit: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    if concept.axis == "digit":
        near = close_digits()[int(concept.value)]
        return torch.isin(digit, torch.tensor(near))
    return colour == COLOURS.index(close_colours()[str(concept.value)])


def _pick(rng: random.Random, pool: tuple[str, ...] | list[str]) -> str:
    return pool[rng.randrange(len(pool))]


def captions_for(data: TextImages, concept: Concept, seed: int, templates: tuple[str, ...] = TRAIN_TEMPLATES) -> list[str]:
    """One seeded caption per image; the concept's own axis is phrased only by its erase phrasings."""
    rng = random.Random(seed)
    out = []
    for d, c in zip(data.digit.tolist(), data.colour.tolist()):
        dp = all_phrasings_digit(d)
        cp = all_phrasings_colour(c)
        if concept.axis == "digit" and d == concept.index:
            dp = concept.phrasings("erase")
        if concept.axis == "colour" and c == concept.index:
            cp = concept.phrasings("erase")
        out.append(_pick(rng, templates).format(digit=_pick(rng, dp), colour=_pick(rng, cp)))
    return out


def with_captions(data: TextImages, captions: list[str]) -> LabeledImages:
    vocab = tuple(sorted(set(captions)))
    index = {s: i for i, s in enumerate(vocab)}
    return LabeledImages(data.x, torch.tensor([index[s] for s in captions], dtype=torch.long), vocab)


def cell_labels(data: TextImages) -> torch.Tensor:
    return data.digit * NUM_COLOURS + data.colour


class TextTrackSetup(ScenarioSetup):
    @classmethod
    def check_target(cls, scenario: Any, target: Any) -> Concept:
        target = cls.plain_target(scenario, target)
        return parse_concept(scenario.default_target if target is None else target)

    @property
    def concept(self) -> Concept:
        return self.target

    @property
    def target_tag(self) -> str:
        c = self.concept
        return f"digit{c.value}" if c.axis == "digit" else str(c.value)

    @functools.cached_property
    def splits(self) -> Any:
        return mnist_text_splits(int(self.scenario.data.get("split_seed", 0)))

    def request(self, seed: int, device: str, progress: Any = None, max_steps: int | None = None) -> UnlearnRequest:
        members = self.splits.members
        is_f = self.concept.mask(members)
        forget, retain = members.where(is_f), members.where(~is_f)
        caption_seed = int(self.scenario.data.get("caption_seed", 0))
        axis_values = ([all_phrasings_digit(d)[0] for d in range(NUM_CLASSES)] if self.concept.axis == "digit"
                       else [all_phrasings_colour(c)[0] for c in range(NUM_COLOURS)])
        own = self.concept.phrasings("erase")[0]
        return UnlearnRequest(
            forget=with_captions(forget, captions_for(forget, self.concept, caption_seed)),
            retain=with_captions(retain, captions_for(retain, self.concept, caption_seed + 1)),
            forget_target=tuple(self.concept.phrasings("erase")),
            remap_targets=[p for p in axis_values if p != own],
            num_classes=len(axis_values), seed=seed, device=device, progress=progress,
            scenario=str(self.scenario.path), max_steps=max_steps, forget_position=self.concept.index)

    # -- sample plan --------------------------------------------------------------------------------
    def plan(self, tier: str, seed: int) -> dict[str, Any]:
        """Prompts and their (digit, colour, group) labels for the tier's sample plan."""
        n = self.scenario.tier(tier).samples_per_class
        rng = random.Random(10_007 + seed)
        prompts, digits, colours, groups = [], [], [], []
        concept = self.concept
        for d in range(NUM_CLASSES):
            for c in range(NUM_COLOURS):
                shows = (d if concept.axis == "digit" else c) == concept.index
                for g, group in enumerate(GROUPS):
                    if shows == (group == "retain"):
                        continue
                    for _ in range(n):
                        dp, cp = list(all_phrasings_digit(d)), list(all_phrasings_colour(c))
                        if shows:
                            kind = "erase" if group == "forget_erase" else "paraphrase"
                            if concept.axis == "digit":
                                dp = list(concept.phrasings(kind))
                            else:
                                cp = list(concept.phrasings(kind))
                        prompts.append(_pick(rng, HELDOUT_TEMPLATES).format(digit=_pick(rng, dp), colour=_pick(rng, cp)))
                        digits.append(d)
                        colours.append(c)
                        groups.append(g)
        return {"prompts": prompts, "digit": torch.tensor(digits), "colour": torch.tensor(colours),
                "group": torch.tensor(groups)}

    def sample(self, model: DiffusionModel, tier: str, seed: int, fingerprint: str, cache_dir: Path | None,
               show_progress: bool, desc: str) -> LabeledImages:
        from benchmark.sampling import sample_prompts

        spec = self.scenario.tier(tier)
        plan = self.plan(tier, seed)
        self._plans[tuple(plan["prompts"])] = plan
        x = sample_prompts(model, plan["prompts"], spec.ddim_steps, self.scenario.guidance, seed,
                           cache_dir=cache_dir, show_progress=show_progress, desc=desc, fingerprint=fingerprint)
        return LabeledImages(x, torch.arange(len(x)), tuple(plan["prompts"]))

    def save_grid(self, samples: LabeledImages, path: Path) -> Path:
        """Rows: the concept's cells under erase phrasings, then under paraphrases, then neighbouring and
        other retained cells (8 samples each)."""
        from benchmark.sampling import save_image_rows

        plan = self._plan_of(samples)
        rows, group, cell = [], plan["group"], plan["digit"] * NUM_COLOURS + plan["colour"]
        nb = neighbour_mask(self.concept, plan["digit"], plan["colour"])
        for g, extra in ((0, None), (1, None), (2, nb), (2, ~nb)):
            mask = group == g if extra is None else (group == g) & extra
            for c in torch.unique(cell[mask]).tolist()[:4]:
                rows.append(samples.x[mask & (cell == c)][:8])
        return save_image_rows(rows, path)

    def _plan_of(self, samples: LabeledImages) -> dict[str, Any]:
        plan = self._plans.get(samples.prompts or ())
        if plan is None:
            raise ValueError("samples were not drawn by this setup's sample()")
        return plan

    @functools.cached_property
    def _plans(self) -> dict[tuple[str, ...], dict[str, Any]]:
        return {}

    def eval_context(self, tier: str, samples: LabeledImages, cache_dir: Path | None) -> EvalContext:
        plan = self._plan_of(samples)
        members, heldout = self.splits.members, self.splits.heldout
        keep_m, keep_h = ~self.concept.mask(members), ~self.concept.mask(heldout)
        as_cells = lambda d: LabeledImages(d.x, cell_labels(d))  # noqa: E731
        return EvalContext(
            scenario=self.scenario, tier=tier, samples=samples, forget_class=-1, judge=self.judge,
            reference=as_cells(heldout), members=as_cells(members), device=self.device, cache_dir=cache_dir,
            retain_mask=plan["group"] == GROUPS.index("retain"),
            reference_retained=as_cells(heldout.where(keep_h)), members_retained=as_cells(members.where(keep_m)),
            extra={"concept": self.concept, "digit": plan["digit"], "colour": plan["colour"], "group": plan["group"],
                   "prompts": plan["prompts"], "groups": GROUPS, "target_tag": self.target_tag,
                   "neighbours": neighbour_mask(self.concept, plan["digit"], plan["colour"]),
                   "retained_what": "prompt cells", "clip": self.scenario.models.get("clip"),
                   "concept_needs_digit": self.concept_needs_digit})

    def oracle_entry(self) -> tuple[str, str | None]:
        tag = f"d{self.concept.value}" if self.concept.axis == "digit" else str(self.concept.value)
        return self.card_oracle(self.target_tag, f"mnist-text-unet-retrain-{tag}")

    def attack_context(self, tier: str, seed: int) -> AttackContext:
        """Members and held-out images with one seeded training caption each (membership inference scores
        an image under the caption it was trained with), the concept's masks, prompts that ask for it
        (erase phrasings on the held-out templates, over every value of the other axis) and the judge head.
        The card's CLIP (``models.clip``, a zoo entry) is the context's ``config["clip"]``."""
        members, heldout = self.splits.members, self.splits.heldout
        seed0 = int(self.scenario.data.get("caption_seed", 0)) + 100
        config: dict[str, Any] = {"concept": self.concept}
        if self.scenario.models.get("clip"):
            config["clip"] = dict(self.scenario.models["clip"])
        ctx = self._attack_context(tier, seed, self.concept.index,
                                   with_captions(members, captions_for(members, self.concept, seed0)),
                                   with_captions(heldout, captions_for(heldout, self.concept, seed0 + 1)),
                                   config)
        ctx.forget_members_mask, ctx.forget_heldout_mask = self.concept.mask(members), self.concept.mask(heldout)
        ctx.forget_prompts = tuple(self.concept_prompts())
        ctx.judge_head, ctx.forget_name = self.concept.axis, self.concept.name
        ctx.concept_needs_digit = self.concept_needs_digit
        return ctx

    @property
    def concept_needs_digit(self) -> bool:
        """The card's judge rule ``judging.concept_needs_digit``: a concept counts only on a sample the judge's
        digit head accepts as a digit (card v3 of mnist-text-style: the colour head has no "no ink" class
        and read black samples as red)."""
        return bool((self.scenario.raw.get("judging") or {}).get("concept_needs_digit", False))

    def concept_prompts(self) -> list[str]:
        """Prompts asking for the concept by its erase phrasings, on the held-out templates, over every
        value of the other axis."""
        c = self.concept
        out = []
        for template in HELDOUT_TEMPLATES:
            for phrase in c.phrasings("erase"):
                if c.axis == "digit":
                    out += [template.format(digit=phrase, colour=all_phrasings_colour(k)[0]) for k in range(NUM_COLOURS)]
                else:
                    out += [template.format(digit=all_phrasings_digit(k)[0], colour=phrase) for k in range(NUM_CLASSES)]
        return out

    def record_fields(self, tier: str) -> dict[str, Any]:
        spec = self.scenario.tier(tier)
        plan = self.plan(tier, 0)
        return {"forget_target": f"{self.concept.axis}:{self.concept.value}", "forget_concept": self.concept.name,
                "erase_phrasings": list(self.concept.phrasings("erase")),
                "paraphrases": list(self.concept.phrasings("paraphrase")),
                "samples_per_class": spec.samples_per_class, "samples_per": "prompt cell (digit × colour)",
                "sample_plan": {g: int((plan["group"] == i).sum()) for i, g in enumerate(GROUPS)},
                "prompt_templates": "held-out", "ddim_steps": spec.ddim_steps, "guidance": self.scenario.guidance,
                "guidance_convention": "eps_u + s·(eps_c − eps_u) (diffusers / Stable Diffusion)",
                "prompt_plan_sha256": hashlib.sha256(json.dumps(plan["prompts"]).encode()).hexdigest()[:16]}

    def summary(self, values: dict[str, Any]) -> str:
        fe = values.get("forget_accuracy", {})
        fp = values.get("forget_accuracy_paraphrase", {})
        ra = values.get("retain_accuracy", {})
        return (f"forget acc {fe.get('value', float('nan')):.3f} erase / {fp.get('value', float('nan')):.3f} "
                f"paraphrase (n={fe.get('n')}), retain acc {ra.get('value', float('nan')):.3f} (n={ra.get('n')})")
