"""Stable Diffusion scenarios (``sd-nudity``): a user's pipeline, a prompt set, a real-image judge.

The card names the concept, its phrasings and prompt templates; the user supplies the pipeline (a local
diffusers folder: ``audit --reference DIR``, ``run --base DIR``) and, optionally, a prompt file in the I2P
CSV layout (prompt, seed, guidance). The concept becomes a ``PromptConcept``: what the text-track methods
and concept attacks read off a concept (erase phrasings, paraphrases, a search vocabulary, contrast
pairs, a neutral prompt), defined by the card instead of by the embedded data set.

What a method is handed (``request``), as VAE latents (the space Stable Diffusion trains in): D_f = images
the base model generates for the forget prompts, D_r = images it generates for the card's retain prompts (EraseDiff's Stable Diffusion recipe: "we
generate images with the prompt … as D_f"), ``request_images`` of each per tier; the prompts are the
captions. Paraphrases and the user's prompt file never reach a method.

Sample plan (``samples_per_class`` images per prompt): ``forget_erase`` — the user's prompts, each with
its own seed and guidance when the file gives them (the I2P convention), else the card's templates with
the erase phrasings; ``forget_paraphrase`` — the templates with the paraphrases; ``retain`` — the card's
retain prompts. No retrained oracle exists at this scale, so audit verdicts are against the reference.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from benchmark import UnlearnbenchError
from benchmark.api import AttackContext, DiffusionModel, EvalContext, Judge, LabeledImages, UnlearnRequest
from benchmark.scenarios.setup import ScenarioSetup

GROUPS = ("forget_erase", "forget_paraphrase", "retain")
SAMPLING_BATCH = 8  # images per UNet batch (a 512 px SD batch of 8 with CFG fits one 24 GB GPU)
SPECIAL_IDS = (49406, 49407)  # CLIP's start / end tokens


@dataclasses.dataclass(frozen=True)
class PromptConcept:
    """A concept defined by words (a card's ``concepts.<name>`` block) rather than by a labelled data set."""

    name: str
    erase: tuple[str, ...]
    paraphrases: tuple[str, ...]
    templates: tuple[str, ...]
    contrast: tuple[str, ...]
    neutral_prompt: str
    index: int  # the judge's class that means "shows the concept"
    user_prompts: tuple[tuple[str, int | None, float | None], ...] = ()  # (prompt, seed, guidance) rows
    # files the user measures with: ("clip", "ARCH=FILE"), ("inception", FILE); with their sha256 (identity)
    instruments: tuple[tuple[str, str], ...] = ()
    instrument_sha256: tuple[str, ...] = ()

    axis = "concept"

    @property
    def value(self) -> str:
        return self.name

    def phrasings(self, kind: str = "erase") -> tuple[str, ...]:
        return self.erase if kind == "erase" else self.paraphrases

    def templated(self, words: tuple[str, ...]) -> list[str]:
        return [t.format(w) for t in self.templates for w in words]

    def forget_prompts(self) -> list[str]:
        """The prompts that ask for the concept: the user's file, else the templates × erase phrasings."""
        return [p for p, _, _ in self.user_prompts] if self.user_prompts else self.templated(self.erase)

    def paraphrase_prompts(self, n: int) -> list[str]:
        """``n`` prompts naming the concept by a paraphrase (templates × paraphrases, cycled)."""
        pool = self.templated(self.paraphrases)
        return [pool[i % len(pool)] for i in range(n)]

    def contrast_pairs(self) -> tuple[list[str], list[str]]:
        """Ring-A-Bell's (with, without) prompt pairs: each template with erase phrasing j vs contrast word j."""
        with_c, without_c = [], []
        for t in self.templates:
            for j, word in enumerate(self.erase + self.paraphrases):
                with_c.append(t.format(word))
                without_c.append(t.format(self.contrast[j % len(self.contrast)]))
        return with_c, without_c

    def search_vocabulary(self, exclude_concept: bool = True) -> list[int]:
        """Every token of CLIP's BPE vocabulary (what UnlearnDiffAtk searches on Stable Diffusion) except the
        start / end tokens and, when ``exclude_concept``, the tokens of the concept's own words."""
        from benchmark.models.tiny_clip import tokenizer

        drop = set(SPECIAL_IDS)
        if exclude_concept:
            tok = tokenizer()
            drop |= {i for w in self.erase + self.paraphrases for i in tok.encode(w)}
        return [i for i in range(49408) if i not in drop]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:8]


def concept_from_card(scenario: Any, target: Any) -> PromptConcept:
    """``target``: None (the card's concept), a concept name, a ``PromptConcept``, or a mapping
    ``{"concept": name, "prompts": [{"prompt", "seed", "guidance"}, …], "clip": "ARCH=FILE", "inception":
    FILE}`` (the user's prompt file and measuring files)."""
    if isinstance(target, PromptConcept):
        return target
    prompts: list[dict[str, Any]] = []
    instruments: list[tuple[str, str]] = []
    if isinstance(target, dict):
        prompts = list(target.get("prompts") or [])
        instruments = check_instruments(target)
        target = target.get("concept")
    if isinstance(target, int) and not isinstance(target, bool):  # audit/run --forget-class on a prompt card
        raise UnlearnbenchError(f"{scenario.name} erases a concept named by --concept, not a class id "
                                f"(--forget-class {target} is for class-track scenarios)")
    concepts = scenario.raw.get("concepts") or {}
    name = str(scenario.default_target if target is None else target).strip().lower()
    if name not in concepts:
        raise UnlearnbenchError(f"unknown concept {name!r} for {scenario.name}; the card defines: "
                                f"{', '.join(sorted(concepts)) or 'none'}")
    spec = {**(scenario.raw.get("concept_defaults") or {}), **concepts[name]}
    judge = scenario.raw.get("models", {}).get("judge") or {}
    if any(k == "nudity_convention" for k, _ in instruments) and judge.get("kind") != "nudenet":
        raise UnlearnbenchError(f"--nudity-convention applies to NudeNet-judged scenarios; {scenario.name} judges with "
                                f"{judge.get('kind')}")
    if judge.get("kind") == "clip_zero_shot":  # the concept is the judge's class of the same name
        classes = [str(c).lower() for c in judge.get("classes") or []]
        if name not in classes:
            raise UnlearnbenchError(f"scenario card {scenario.path}: concept {name!r} is not among models.judge.classes")
        spec["judge_class"] = classes.index(name)
        if not any(k == "clip" for k, _ in instruments):
            raise UnlearnbenchError(f"{scenario.name} judges with CLIP zero-shot: pass --clip-weights ARCH=FILE (a local "
                                    "open_clip checkpoint, e.g. ViT-L-14=/models/open_clip_vit_l14.bin)")
    try:
        concept = PromptConcept(name=name, erase=tuple(spec["erase"]), paraphrases=tuple(spec["paraphrases"]),
                                templates=tuple(spec["templates"]), contrast=tuple(spec["contrast"]),
                                neutral_prompt=str(spec["neutral"]), index=int(spec.get("judge_class", 1)),
                                user_prompts=tuple((str(r["prompt"]), r.get("seed"), r.get("guidance")) for r in prompts),
                                instruments=tuple(instruments),
                                instrument_sha256=tuple(_file_sha256(v.partition("=")[2] if k == "clip" else v)
                                                        if k in FILE_INSTRUMENTS else "" for k, v in instruments))
    except (KeyError, TypeError, ValueError) as exc:
        raise UnlearnbenchError(f"scenario card {scenario.path}: concepts.{name} needs erase, paraphrases, templates, "
                                f"contrast and neutral ({exc})") from None
    if not all(t.count("{}") == 1 for t in concept.templates) or not concept.erase or not concept.paraphrases:
        raise UnlearnbenchError(f"scenario card {scenario.path}: concepts.{name}: every template needs one '{{}}', and "
                                "erase / paraphrases must not be empty")
    return concept


def check_instruments(target: dict[str, Any]) -> list[tuple[str, str]]:
    """The measuring files of a target mapping (``clip``: "ARCH=FILE", ``inception``: FILE), each checked to
    exist; one error line otherwise."""
    out = []
    clip = target.get("clip")
    if clip:
        arch, eq, path = str(clip).partition("=")
        if not eq or not arch or not path:
            raise UnlearnbenchError(f"--clip-weights {clip!r}: want ARCH=FILE, e.g. ViT-L-14=/models/open_clip_vit_l14.bin")
        if not Path(path).expanduser().is_file():
            raise UnlearnbenchError(f"--clip-weights: no file {path} (a local open_clip checkpoint for {arch})")
        out.append(("clip", f"{arch}={Path(path).expanduser()}"))
    inception = target.get("inception")
    if inception:
        if not Path(inception).expanduser().is_file():
            raise UnlearnbenchError(f"--inception-weights: no file {inception} (pt_inception-2015-12-05-6726825d.pth)")
        out.append(("inception", str(Path(inception).expanduser())))
    convention = target.get("nudity_convention")
    if convention:
        from benchmark.metrics.nudity import get_convention

        out.append(("nudity_convention", get_convention(str(convention)).name))  # unknown: one error line
    return out


FILE_INSTRUMENTS = ("clip", "inception")  # instruments that name a file (its sha256 goes into the record)


@functools.lru_cache(maxsize=16)
def _file_sha256_at(path: str, size: int, mtime: float) -> str:
    from benchmark.models.fingerprint import file_sha256

    return file_sha256(Path(path))


def _file_sha256(path: str) -> str:
    st = Path(path).stat()
    return _file_sha256_at(str(Path(path).resolve()), st.st_size, st.st_mtime)


class StableDiffusionSetup(ScenarioSetup):
    @classmethod
    def check_target(cls, scenario: Any, target: Any) -> PromptConcept:
        return concept_from_card(scenario, target)

    @property
    def concept(self) -> PromptConcept:
        return self.target

    @property
    def target_tag(self) -> str:
        """The concept's name, plus a digest of the user's prompts when a file gave them (other prompts are
        another table: their records must not stand for these)."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.concept.name).strip("-")
        c = self.concept
        return f"{slug}-{c.digest()}" if c.user_prompts or c.instruments else slug

    @functools.cached_property
    def base(self) -> DiffusionModel:
        from benchmark.models.stable_diffusion import StableDiffusionModel

        path = (self.scenario.models.get("base") or {}).get("path")
        if not path:
            raise UnlearnbenchError(f"scenario {self.scenario.name} runs on your Stable Diffusion pipeline: pass its "
                                    "local diffusers folder (audit --reference DIR, run --base DIR)")
        return StableDiffusionModel.from_pretrained(path).to(self.device)

    @functools.cached_property
    def judge(self) -> Judge:
        spec = self.judge_spec()
        kind = spec.pop("kind", None)
        if kind == "nudenet":
            from benchmark.metrics.nudity import NudeNetJudge

            return NudeNetJudge(**spec)
        if kind == "clip_zero_shot":
            from benchmark.metrics.clip_zero_shot import (
                DEFAULT_TEMPLATES,
                STYLE_TEMPLATES,
                LocalCLIP,
                ZeroShotJudge,
            )

            arch, _, path = dict(self.concept.instruments)["clip"].partition("=")
            classes = [str(c).lower() for c in spec["classes"]]
            templates = STYLE_TEMPLATES if spec.get("templates") == "style" else DEFAULT_TEMPLATES
            return ZeroShotJudge(LocalCLIP.from_file(arch, path, device=self.device), classes, templates,
                                 target=self.concept.name)
        raise UnlearnbenchError(f"scenario card {self.scenario.path}: models.judge.kind {kind!r} is not a judge this "
                                "setup builds (nudenet, clip_zero_shot)")

    def load_instruments(self) -> None:
        """The judge (NudeNet's detector, or the CLIP zero-shot judge) and the user's measuring files: the
        CLIP checkpoint loaded into its architecture (kept for the metrics and P4D) and the Inception weights
        read as a tensor state dict."""
        from benchmark.metrics.clip_zero_shot import LocalCLIP
        from benchmark.metrics.inception_fid import check_inception_weights

        self.judge  # noqa: B018 - cached_property
        files = dict(self.concept.instruments)
        if "clip" in files:
            arch, _, path = files["clip"].partition("=")
            LocalCLIP.from_file(arch, path, device=self.device)
        if "inception" in files:
            check_inception_weights(files["inception"])

    def oracle_entry(self) -> tuple[str, str | None]:
        return f"{self.scenario.name}-oracle-{self.target_tag}", None

    def oracle(self) -> DiffusionModel | None:
        return None  # no retrained Stable Diffusion exists to compare with: verdicts are against the reference

    # -- data -----------------------------------------------------------------------------------------------
    def _generated(self, prompts: list[str], seed: int, tier: str, what: str) -> LabeledImages:
        from benchmark import zoo
        from benchmark.sampling import sample_prompts

        spec = self.scenario.tier(tier)
        x = sample_prompts(self.base, prompts, spec.ddim_steps, self.scenario.guidance, seed, cache_dir=zoo.cache_dir(),
                           batch_size=SAMPLING_BATCH, show_progress=self.show_progress, desc=f"generate {what}")
        vocab = tuple(sorted(set(prompts)))
        with torch.no_grad():  # methods train in the model's data space: VAE latents
            z = self.base.encode_images(x.to(self.base.device)).cpu()
        return LabeledImages(z, torch.tensor([vocab.index(p) for p in prompts]), vocab)

    def request(self, seed: int, device: str, progress: Any = None, max_steps: int | None = None) -> UnlearnRequest:
        tier = self.tier or "quick"
        n = int(self.scenario.raw["tiers"][tier].get("request_images", 8))
        forget_pool = self.concept.templated(self.concept.erase)
        retain_pool = list(self.scenario.raw.get("retain_prompts") or [])
        if not retain_pool:
            raise UnlearnbenchError(f"scenario card {self.scenario.path} lists no retain_prompts")
        forget = self._generated([forget_pool[i % len(forget_pool)] for i in range(n)], 1_000 + seed, tier, "D_f")
        retain = self._generated([retain_pool[i % len(retain_pool)] for i in range(n)], 2_000 + seed, tier, "D_r")
        return UnlearnRequest(forget=forget, retain=retain, forget_target=self.concept.erase,
                              # a phrase, not a caption: remapping methods swap the concept's phrase in the
                              # caption for it ("a photo of a church" → "a photo of a house")
                              remap_targets=[self.concept.contrast[0]], num_classes=2, seed=seed, device=device,
                              progress=progress, scenario=str(self.scenario.path), max_steps=max_steps,
                              forget_position=self.concept.index)

    # -- sample plan ------------------------------------------------------------------------------------------
    def plan(self, tier: str, seed: int) -> list[tuple[str, int, float, int]]:
        """(prompt, seed, guidance, group) per sample, in order."""
        n = self.scenario.tier(tier).samples_per_class
        s = self.scenario.guidance
        out: list[tuple[str, int, float, int]] = []
        if self.concept.user_prompts:
            for p, row_seed, g in self.concept.user_prompts:
                out += [(p, row_seed if row_seed is not None else seed, g if g is not None else s, 0)] * n
        else:
            out += [(p, seed, s, 0) for p in self.concept.forget_prompts() for _ in range(n)]
        out += [(p, seed, s, 1) for p in self.concept.templated(self.concept.paraphrases) for _ in range(n)]
        out += [(p, seed, s, 2) for p in self.scenario.raw.get("retain_prompts") or [] for _ in range(n)]
        return out

    def sample(self, model: DiffusionModel, tier: str, seed: int, fingerprint: str, cache_dir: Path | None,
               show_progress: bool, desc: str) -> LabeledImages:
        """Samples drawn per (prompt, seed, guidance): one call per I2P row, so a row's images depend only on
        its prompt and seed (noise of image i from (seed, i)), as in I2P's evaluation."""
        from benchmark.sampling import sample_prompts

        self.tier = tier
        spec = self.scenario.tier(tier)
        plan = self.plan(tier, seed)
        runs: dict[tuple[str, int, float], list[int]] = {}
        for i, (p, s, g, _) in enumerate(plan):
            runs.setdefault((p, s, g), []).append(i)
        x: list[torch.Tensor | None] = [None] * len(plan)
        for (_, s, g), idx in runs.items():
            out = sample_prompts(model, [plan[i][0] for i in idx], spec.ddim_steps, g, s, cache_dir=cache_dir,
                                 batch_size=SAMPLING_BATCH, show_progress=show_progress, desc=desc,
                                 fingerprint=fingerprint)
            for j, i in enumerate(idx):
                x[i] = out[j]
        prompts = tuple(p for p, _, _, _ in plan)
        return LabeledImages(torch.stack(x), torch.arange(len(plan)), prompts)  # type: ignore[arg-type]

    def save_grid(self, samples: LabeledImages, path: Path) -> Path:
        """Rows: the first forget prompts, paraphrase prompts, then retain prompts (4 images each, 128 px)."""
        import torch.nn.functional as F

        from benchmark.sampling import save_image_rows

        group = self._groups(samples)
        rows = []
        for g in range(len(GROUPS)):
            idx = torch.nonzero(group == g).flatten()
            prompts = list(dict.fromkeys(samples.prompts[int(i)] for i in idx))[:3]  # type: ignore[index]
            for p in prompts:
                sel = [int(i) for i in idx if samples.prompts[int(i)] == p][:4]  # type: ignore[index]
                rows.append(F.interpolate(samples.x[sel], size=(128, 128), mode="bilinear", antialias=True))
        return save_image_rows(rows, path, per_row=4, upscale=1)

    def _groups(self, samples: LabeledImages) -> torch.Tensor:
        plan = self.plan(self.tier or "quick", 0)
        if len(plan) != len(samples):
            raise ValueError("samples were not drawn by this setup's sample()")
        return torch.tensor([g for _, _, _, g in plan])

    def eval_context(self, tier: str, samples: LabeledImages, cache_dir: Path | None) -> EvalContext:
        group = self._groups(samples)
        empty = LabeledImages(torch.empty(0, *samples.x.shape[1:]), torch.empty(0, dtype=torch.long))
        return EvalContext(scenario=self.scenario, tier=tier, samples=samples, forget_class=self.concept.index,
                           judge=self.judge, reference=empty, device=self.device, cache_dir=cache_dir,
                           retain_mask=group == GROUPS.index("retain"),
                           extra={"concept": self.concept, "group": group, "groups": GROUPS,
                                  "prompts": list(samples.prompts or ()), "target_tag": self.target_tag,
                                  "instruments": self.concept.instruments,
                                  # each prompt row's samples are consecutive in the plan: rows are blocks of n
                                  "samples_per_prompt": self.scenario.tier(tier).samples_per_class,
                                  "retained_what": "retain prompts"})

    def attack_context(self, tier: str, seed: int) -> AttackContext:
        """No member / held-out images exist (the training set is not the auditor's): membership inference
        and relearning do not apply; the prompt attacks and probes run on the forget prompts. The user's CLIP
        file (``--clip-weights ARCH=FILE``), when given, is the context's ``config["clip"]`` (P4D's prompt
        selection); without one the context has no CLIP."""
        from benchmark.models.stable_diffusion import StableDiffusionModel

        self.tier = tier
        size = self.base.image_size if isinstance(self.base, StableDiffusionModel) else 64
        empty = LabeledImages(torch.empty(0, 3, size, size), torch.empty(0, dtype=torch.long), ("",))
        config: dict[str, Any] = {"concept": self.concept}
        clip = dict(self.concept.instruments).get("clip")
        if clip:
            config["clip"] = clip
        ctx = self._attack_context(tier, seed, self.concept.index, empty, empty, config)
        ctx.forget_members_mask = ctx.forget_heldout_mask = torch.zeros(0, dtype=torch.bool)
        ctx.forget_prompts = tuple(self.concept.forget_prompts())
        ctx.forget_name = self.concept.name
        return ctx

    def record_fields(self, tier: str) -> dict[str, Any]:
        spec = self.scenario.tier(tier)
        plan = self.plan(tier, 0)
        c = self.concept
        return {"forget_target": c.name, "forget_concept": c.name, "erase_phrasings": list(c.erase),
                "paraphrases": list(c.paraphrases), "samples_per_class": spec.samples_per_class,
                "samples_per": "prompt", "sample_plan": {g: sum(1 for *_, k in plan if k == i) for i, g in enumerate(GROUPS)},
                "prompt_source": "user file (I2P layout)" if c.user_prompts else "card templates",
                "prompt_plan_sha256": hashlib.sha256(json.dumps(plan).encode()).hexdigest()[:16],
                "ddim_steps": spec.ddim_steps, "guidance": self.scenario.guidance,
                "guidance_convention": "eps_u + s·(eps_c − eps_u) (diffusers / Stable Diffusion); I2P rows may set s",
                "judge": self.judge_spec()}

    def judge_spec(self) -> dict[str, Any]:
        """The card's judge as this run uses it: the user's ``--nudity-convention`` over the card's."""
        spec = dict(self.scenario.models.get("judge") or {})
        chosen = dict(self.concept.instruments).get("nudity_convention")
        if chosen:
            spec["convention"] = chosen
        return spec

    def summary(self, values: dict[str, Any]) -> str:
        fe = values.get("concept_rate", {})
        fp = values.get("concept_rate_paraphrase", {})
        rr = values.get("concept_rate_retain", {})
        return (f"concept rate {fe.get('value', float('nan')):.3f} forget prompts / {fp.get('value', float('nan')):.3f} "
                f"paraphrases (n={fe.get('n')}), {rr.get('value', float('nan')):.3f} on retain prompts")
