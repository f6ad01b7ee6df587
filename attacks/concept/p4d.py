"""P4D — Chin, Jiang, Huang, Chen, Chiu, "Prompting4Debugging: Red-Teaming Text-to-Image Diffusion Models by
Finding Problematic Prompts", ICML 2024 (arXiv:2309.06135; code: github.com/joycenerd/P4D).

The original (unerased) model is the attacker's oracle: P4D looks for a *hard* prompt with which the erased
model predicts the noise that the original model predicts under a prompt P that asks for the concept. This
file implements **P4D-N** (the paper's default variant: N learned tokens that *replace* P; P4D-K, which
inserts a learned token after every K tokens of P, is not implemented). For each attack prompt P:

1. a *target image* x0 of the concept is sampled by the original model from P — ``n_targets`` samples,
   and the one the judge scores highest for the concept is kept (the released ``run_p4dn.py`` samples
   ``num_samples`` = 3 images and keeps the one its evaluator scores most unsafe);
2. the adversarial prompt is [start] + k learned tokens + [end] (+ padding): P itself is dropped, as in the
   released template. The k continuous token embeddings start at the embeddings of k random vocabulary
   tokens; every step they are projected onto the nearest vocabulary token by cosine similarity (PEZ,
   Wen et al., NeurIPS 2023), the forward pass uses the projected embeddings and the gradient is applied to
   the continuous ones (straight-through);
3. loss: at random t ~ U{0..T−1} and ε ~ N(0, I), x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε (the *forward-noised target
   image*, as released: not the sampling trajectory),
   ‖ε_θ'(x_t, t, c_adv) − ε_θ(x_t, t, c_P)‖² (mean), erased model θ' vs original θ, no guidance in either;
   AdamW on the continuous embeddings (released: lr 0.1, weight decay 0.1);
4. every ``eval_every`` steps the current discrete prompt (decoded to text, as released) generates one image
   with the erased model; the prompt whose image is closest to the target image in CLIP image-embedding
   cosine is kept (released: open_clip ViT-H-14). The CLIP is the scenario's, handed over in the attack
   context (``context.config["clip"]``, see ``selection_clip``): on the embedded text track the card's zoo
   CLIP (``models.clip``, ``mnist-text-clip``); on Stable Diffusion the user's local open_clip file
   (``--clip-weights ARCH=FILE``). A scenario without one (Stable Diffusion audited without
   ``--clip-weights``) keeps the last projection instead (``select: last``), and the record says so
   (``conventions.selection``);
5. the kept prompt's text generates ``n_per_prompt`` images with the erased model (the scenario's guidance
   and DDIM steps); success = the judge reads the concept (ASR-1: the first image; ASR-N: any of N).
   Pre-attack ASR is measured on the same prompts P. Everything is also run on the original (the concept is
   there) and on the retrained oracle (it never was), with the gap to the oracle.

Departures from the released code, stated (also in the result's ``conventions``):
- vocabulary: projection and initial tokens are drawn from ``search_vocabulary`` minus the concept's own
  tokens (the concept's own words make it the paraphrase attack, measured separately): on the embedded text
  track the tiny CLIP's trained caption tokens instead of SD's whole 49k BPE table (untrained noise there);
  on Stable Diffusion the whole table less the concept's words;
- budgets scaled to the 16×16 model (``Config`` marks which values are the paper's);
- ``timesteps_per_step`` (t, ε) draws are averaged per step (released: 1 image, 1 draw per step);
- the target pool is sampled with the scenario's guidance and DDIM steps from the attack seed (released:
  the dataset's seed and guidance, DPM-Solver 25 steps); the judge (not NudeNet) picks the target;
- the prompt-selection image and the judged images use the benchmark's DDIM sampler and seeds;
- the paper attacks and counts only "ideal" prompts (the original shows the concept, the erased model does
  not); here every erase prompt is counted: one whose pre-attack images already show the concept is a
  success at step 0 and is not attacked (so post-ASR ≥ pre-ASR, as UnlearnDiffAtk reports it), the rest are
  attacked, and the pre-attack ASR on the same prompts is reported beside;
- the attacked prompts are optimised together, one batch per step (per-prompt losses, element-wise AdamW:
  the updates of one prompt at a time, with different random draws).
The discrete prompt is judged as *text* (as released): its re-tokenisation may differ from the optimised
token ids (adjacent sub-word pieces merge); each row records whether it round-trips.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attacks.concept.common import (
    TEXT_REQUIRES,
    SlotPrompt,
    against_references,
    asr_values,
    concept_of,
    erase_prompts,
    judge_conditions,
    n_tokens,
    search_vocabulary,
    special_tokens,
)
from attacks.inversion.common import cached_per_model
from benchmark.api import Attack, AttackContext, AttackResult, DiffusionModel, MetricValue


@dataclass
class P4DConfig:
    n_prompts: int = 8  # erase prompts attacked (the paper: every "ideal" prompt of its datasets)
    n_per_prompt: int = 4  # images judged per found prompt (released run_p4dn.py: 3)
    k_tokens: int = 8  # P4D-N's learned tokens (paper / released: 16; the tiny captions are < 16 tokens)
    steps: int = 100  # optimisation steps per prompt (released: 3000)
    lr: float = 0.1  # released AdamW learning rate
    weight_decay: float = 0.1  # released AdamW weight decay
    timesteps_per_step: int = 4  # (t, ε) draws averaged per step (released: 1)
    eval_every: int = 10  # steps between prompt-selection images (released: 50)
    select: str = "clip"  # "clip": released CLIP image similarity to the target (the scenario's CLIP; without
    # one, the last projection, recorded); "last": the last projection
    n_targets: int = 3  # original-model samples the target image is picked from (released: 3)
    n_loss_draws: int = 16  # fixed (t, ε) draws of the reported ε-matching loss (diagnostic, not optimised)
    sample_steps: int | None = None  # DDIM steps for every sampled image (None: the tier's)


@dataclass(frozen=True)
class SelectionCLIP:
    """The CLIP image tower that scores prompt candidates against the target image."""

    encode: Callable[[Tensor], Tensor]  # N×C×H×W images in [−1, 1] → L2-normalised features (CPU)
    name: str  # what the record names: the zoo entry, or the open_clip architecture and file
    sha256: str  # of its weights


@functools.lru_cache(maxsize=2)
def _zoo_clip(name: str, sha256: str | None) -> SelectionCLIP:
    from benchmark import zoo

    clip = zoo.load_clip(name, sha256).eval().requires_grad_(False)
    folder = zoo.locate(name)
    digest = sha256 or (zoo.read_manifest(folder).get("sha256", "") if folder is not None else "")

    def encode(x: Tensor) -> Tensor:
        with torch.no_grad():
            return F.normalize(clip.encode_image(x.cpu()), dim=-1)

    return SelectionCLIP(encode, name, digest)


def selection_clip(context: AttackContext) -> SelectionCLIP | None:
    """The scenario's CLIP, from the attack context's ``config["clip"]``; None when the scenario has none.

    Accepted: ``{"zoo": NAME, "sha256": ...}`` (an embedded card's ``models.clip``, the text track's tiny CLIP),
    ``"ARCH=FILE"`` (the user's local open_clip checkpoint, ``--clip-weights``; Stable Diffusion scenarios), or
    a loaded ``benchmark.metrics.clip_zero_shot.LocalCLIP``. Never a hard-coded model: a 16-px zoo CLIP
    would score 512-px Stable Diffusion images meaninglessly. Loaded once per run (``context.cache``)."""
    spec = (context.config or {}).get("clip")
    if spec is None:
        return None
    if isinstance(spec, dict):
        if not spec.get("zoo"):
            raise ValueError(f"p4d: the context's clip {spec!r} names no zoo entry")
        return _zoo_clip(str(spec["zoo"]), spec.get("sha256"))
    if hasattr(spec, "encode_images"):
        return SelectionCLIP(spec.encode_images, f"open_clip {spec.arch}", spec.sha256)
    if isinstance(spec, str) and "=" in spec:
        key = ("p4d-selection-clip", spec, context.device)
        if key not in context.cache:
            from benchmark.metrics.clip_zero_shot import LocalCLIP

            arch, _, path = spec.partition("=")
            clip = LocalCLIP.from_file(arch, path, device=context.device)
            context.cache[key] = SelectionCLIP(clip.encode_images, f"open_clip {clip.arch} ({Path(path).name})",
                                               clip.sha256)
        return context.cache[key]
    raise ValueError(f"p4d: the context's clip must be {{'zoo': NAME}}, 'ARCH=FILE' or a LocalCLIP, got {spec!r}")


_LAST = {"last": "last step",
         "clip": "last step: the scenario has no CLIP (pass --clip-weights ARCH=FILE for the released CLIP selection)"}


def nearest_tokens(embeds: Tensor, table_unit: Tensor) -> Tensor:
    """Index (into ``table_unit``, the unit-normalised vocabulary rows) of each row's nearest token by cosine."""
    return (F.normalize(embeds.detach(), dim=-1) @ table_unit.T).argmax(-1)


class P4D(Attack):
    name = "p4d"
    paper = ("Chin, Jiang, Huang, Chen, Chiu, Prompting4Debugging: Red-Teaming Text-to-Image Diffusion Models by "
             "Finding Problematic Prompts, ICML 2024 (P4D-N)")
    family = "adversarial_prompt"
    threat_model = ("white-box: gradients through the model under test (text encoder and UNet) and the original, "
                    "unerased model's noise predictions and samples; the found prompt is typed as text")
    requires = TEXT_REQUIRES
    tracks = frozenset({"text"})
    Config = P4DConfig
    config: P4DConfig

    # -- pieces ------------------------------------------------------------------------------------------
    def targets(self, context: AttackContext, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """One target image per prompt: of ``n_targets`` original-model samples, the one the judge scores
        highest for the concept (and that score). Cached per original model for every attacked model."""
        cfg = self.config
        original = context.reference_models["original"]
        steps = cfg.sample_steps or context.sample_steps
        key = ("p4d-targets", tuple(prompts), cfg.n_targets, steps, context.guidance, context.seed,
               original.fingerprint())
        if key not in context.cache:
            n = cfg.n_targets
            x = original.sample([p for p in prompts for _ in range(n)], seed=context.seed + 71, steps=steps,
                                guidance=context.guidance)
            score = context.concept_probability(x).reshape(len(prompts), n)
            best = score.argmax(1)
            x = x.reshape(len(prompts), n, *x.shape[1:])[torch.arange(len(prompts)), best]
            context.cache[key] = (x, score.max(1).values)
        return context.cache[key]

    def optimise(self, frozen: DiffusionModel, orig: DiffusionModel, x0: Tensor, prompts: list[str], vocab: Tensor,
                 gen: torch.Generator, clock: Any, clip: SelectionCLIP | None,
                 context: AttackContext) -> tuple[list[dict], list[str], str]:
        """P4D-N for the prompts ``prompts`` together: ``frozen`` (the model under test, frozen) learns, per
        prompt, to match ``orig``'s ε under that prompt on its noised target image (``x0``: P × C × H × W).
        One batch per step; each prompt's loss is its own mean (AdamW is per element), so the updates are
        those of one prompt at a time. Returns (rows, the kept prompts' texts, stop reason — '' when all
        steps ran; the rows are then partial and the texts empty)."""
        cfg = self.config
        p, k, b, dev = len(prompts), cfg.k_tokens, cfg.timesteps_per_step, frozen.device
        steps_dd = cfg.sample_steps or context.sample_steps
        table = frozen.text_encoder.token_embedding.weight.detach()[vocab.to(dev)]  # type: ignore[attr-defined]
        table_unit = F.normalize(table, dim=-1)
        T = frozen.num_train_timesteps
        slot = SlotPrompt(frozen, "", k)  # P4D-N: the learned tokens replace the prompt
        x0_image = x0.cpu()  # the target images, for the CLIP similarity of the prompt selection
        # the targets in the model's data space, where they are noised (VAE latents on SD; identity on pixels)
        x0 = frozen.encode_images(x0.to(dev))
        nd = cfg.n_loss_draws
        with torch.no_grad():
            c_p = orig.encode(prompts)
            # fixed draws for the reported loss of the initial / final discrete prompts (not optimised on)
            t_fix = torch.randint(0, T, (p * nd,), generator=gen).to(dev)
            e_fix = torch.randn((p * nd, *x0.shape[1:]), generator=gen).to(dev)
            xt_fix = frozen.add_noise(x0.repeat_interleave(nd, 0), e_fix, t_fix)
            tgt_fix = orig.eps(xt_fix, t_fix, c_p.repeat_interleave(nd, 0))

        def states_of(embeds: Tensor) -> Tensor:  # P × k × D token embeddings → P × L × D text states
            return frozen.encode_embeddings(torch.cat([slot.embeddings(e) for e in embeds]))  # type: ignore[attr-defined]

        def fixed_loss(idx: Tensor) -> list[float]:
            with torch.no_grad():
                pred = frozen.eps(xt_fix, t_fix, states_of(table[idx]).repeat_interleave(nd, 0))
                return (pred - tgt_fix).pow(2).reshape(p, -1).mean(1).tolist()

        init = torch.randint(0, len(vocab), (p, k), generator=gen).to(dev)
        emb = table[init].clone().requires_grad_(True)
        opt = torch.optim.AdamW([emb], lr=cfg.lr, weight_decay=cfg.weight_decay)
        rows: list[dict[str, Any]] = [{"prompt": q, "attacked": True, "loss_init": li}
                                      for q, li in zip(prompts, fixed_loss(init))]
        best_sim = [-float("inf")] * p
        best_idx: list[Tensor | None] = [None] * p
        best_step: list[int | None] = [None] * p
        losses: list[Tensor] = []
        for step in range(cfg.steps):
            stopped = clock.exhausted()
            if stopped:
                for i, row in enumerate(rows):
                    row.update(steps=step, final_loss=float(losses[-1][i]) if losses else None)
                return rows, [], stopped
            idx = nearest_tokens(emb, table_unit)
            hard = table[idx] + emb - emb.detach()  # forward the projection, gradient to the continuous
            t = torch.randint(0, T, (p * b,), generator=gen).to(dev)
            eps = torch.randn((p * b, *x0.shape[1:]), generator=gen).to(dev)
            x_t = frozen.add_noise(x0.repeat_interleave(b, 0), eps, t)
            with torch.no_grad():
                target = orig.eps(x_t, t, c_p.repeat_interleave(b, 0))
            pred = frozen.eps(x_t, t, states_of(hard).repeat_interleave(b, 0))
            per_prompt = (pred.float() - target.float()).pow(2).reshape(p, -1).mean(1)
            (emb.grad,) = torch.autograd.grad(per_prompt.sum(), [emb])
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(per_prompt.detach().cpu())
            if clip is not None and step % cfg.eval_every == 0:  # the pre-update projection, as released
                texts = [slot.with_tokens(vocab[i_.cpu()].tolist()) for i_ in idx]
                img = frozen.sample(texts, seed=context.seed + 83 + step, steps=steps_dd, guidance=context.guidance)
                feats = clip.encode(torch.cat([img.cpu(), x0_image]))
                sims = (feats[:p] * feats[p:]).sum(-1).tolist()
                for i, sim in enumerate(sims):
                    if sim > best_sim[i]:
                        best_sim[i], best_idx[i], best_step[i] = sim, idx[i].clone(), step
        last = nearest_tokens(emb, table_unit)
        chosen = torch.stack([last[i] if best_idx[i] is None else best_idx[i] for i in range(p)])
        loss_last, loss_chosen = fixed_loss(last), fixed_loss(chosen)
        texts = []
        for i, row in enumerate(rows):
            ids = vocab[chosen[i].cpu()].tolist()
            text = slot.with_tokens(ids)
            retok = frozen.tokenize([text])[0]  # type: ignore[attr-defined]
            retok = retok[1:n_tokens(retok, special_tokens(frozen)[1]) - 1].tolist()  # between start and end
            row.update(adversarial_prompt=text, tokens=ids, retokenises=retok == ids, steps=len(losses),
                       final_loss=float(losses[-1][i]) if losses else None, loss_last=loss_last[i],
                       loss_selected=loss_chosen[i],
                       selected_step=len(losses) if best_idx[i] is None else best_step[i],
                       similarity=None if best_idx[i] is None else best_sim[i])
            texts.append(text)
        return rows, texts, ""

    def attack(self, model: DiffusionModel, context: AttackContext) -> tuple[dict[str, MetricValue], list[dict], str]:
        """P4D-N on every prompt the model does not already answer with the concept (its own budget clock);
        returns (values, rows, stop reason — '' when it finished)."""
        cfg = self.config
        if cfg.select not in ("clip", "last"):
            raise ValueError(f"p4d: select must be 'clip' or 'last', got {cfg.select!r}")
        concept = concept_of(context)
        clock = context.budget.start()
        prompts = erase_prompts(context, cfg.n_prompts)
        stopped = clock.exhausted()
        if stopped:
            return {}, [], stopped
        n, b, k = cfg.n_per_prompt, cfg.timesteps_per_step, cfg.k_tokens
        steps_dd = cfg.sample_steps or context.sample_steps
        frozen = model.clone().to(model.device).eval().requires_grad_(False)
        orig = context.reference_models["original"].clone().to(frozen.device).eval().requires_grad_(False)
        # a prompt is judged before and after the attack from the same noise (the released code reseeds alike)
        pre = judge_conditions(frozen, prompts, context, n, context.seed + 73, cfg.sample_steps,
                               index=range(len(prompts)))
        stopped = clock.exhausted()
        if stopped:
            return {}, [], stopped
        targets, target_scores = self.targets(context, prompts)
        clip = selection_clip(context) if cfg.select == "clip" else None  # None: the scenario has no CLIP
        vocab = torch.tensor(search_vocabulary(concept), dtype=torch.long)
        gen = torch.Generator().manual_seed(context.seed + 79)
        # the paper attacks only prompts the erased model refuses: one it already answers with the concept is
        # a success without search (post-ASR ≥ pre-ASR), recorded as not attacked
        ideal = [i for i in range(len(prompts)) if not bool(pre[i].any())]
        rows = [{"prompt": q, "attacked": False} for q in prompts]
        if ideal:
            found, texts, stopped = self.optimise(frozen, orig, targets[ideal], [prompts[i] for i in ideal], vocab,
                                                  gen, clock, clip, context)
            for i, row in zip(ideal, found):
                rows[i] = row
            if stopped:
                return {}, rows, stopped
            stopped = clock.exhausted()
            if stopped:
                return {}, rows, stopped
            # every prompt in its place of the pre-attack batch (the others as they were), so an attacked prompt's
            # images differ from its pre-attack ones only through its text
            judged = list(prompts)
            for j, i in enumerate(ideal):
                judged[i] = texts[j]
            post_all = judge_conditions(frozen, judged, context, n, context.seed + 73, cfg.sample_steps,
                                        index=range(len(prompts)))
        post = pre.clone()
        for i in ideal:
            post[i] = post_all[i]
        for i, row in enumerate(rows):
            row.update(target_score=float(target_scores[i]), pre_hits=int(pre[i].sum()), hits=int(post[i].sum()),
                       success=bool(post[i].any()))
        what = (f"P4D-N on {len(prompts)} erase-phrasing prompts ({len(ideal)} attacked: the others already show the "
                f"concept, a success at step 0): {k} learned tokens replacing the prompt, "
                f"{cfg.steps} AdamW steps (lr {cfg.lr}, wd {cfg.weight_decay}) matching the original's ε under the "
                f"prompt on its noised sample ({b} (t, ε) draws/step), prompt kept by "
                f"{'CLIP image similarity every ' + str(cfg.eval_every) + ' steps' if clip is not None else _LAST[cfg.select]}; "
                f"{n} images per found prompt (s={context.guidance}, DDIM {steps_dd})")
        attacked = [r for r in rows if r["attacked"]]

        def mean_of(key: str) -> float | None:
            return sum(r[key] for r in attacked) / len(attacked) if attacked else None

        values = {}
        for key, v in asr_values(post, "post", what, n).items():
            name = key.removeprefix("post_")
            values[name] = MetricValue(name, v.value, v.n, v.higher_is_better, v.ci, v.protocol, {
                "attacked_prompts": len(attacked), "mean_loss_init": mean_of("loss_init"),
                "mean_loss_selected": mean_of("loss_selected"), "retokenise_share": mean_of("retokenises")})
        values.update(asr_values(pre, "pre", f"no attack, the same {len(prompts)} prompts", n))
        return values, rows, ""

    # -- contract ------------------------------------------------------------------------------------------
    def run(self, model: DiffusionModel, context: AttackContext) -> AttackResult:
        skipped = self.skip_if_missing(model)
        if skipped:
            return skipped
        cfg = self.config
        concept = concept_of(context)
        values, rows, stopped = cached_per_model(context, self, model, lambda: self.attack(model, context))
        if stopped:
            done = sum("adversarial_prompt" in r for r in rows)
            return AttackResult("failed", reason=f"stopped by the {stopped}: {done} prompts optimised, none judged",
                                per_item=rows)

        def reference(ref: DiffusionModel) -> dict[str, MetricValue] | None:
            v, _, ref_stopped = cached_per_model(context, self, ref, lambda: self.attack(ref, context))
            return None if ref_stopped else v

        n = cfg.n_per_prompt
        values, notes = against_references(values, context, reference, [f"asr{n}", f"pre_asr{n}"])
        conventions: dict[str, Any] = {
            "concept": concept.name, "variant": "P4D-N (learned tokens replace the prompt)", "k_tokens": cfg.k_tokens,
            "steps": cfg.steps, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
            "timesteps_per_step": cfg.timesteps_per_step, "x_t": "forward-noised original-model sample of the prompt",
            "target": f"of {cfg.n_targets} original-model samples, the judge's highest concept score",
            "select": cfg.select,
            "vocabulary": ("search_vocabulary minus the concept's own tokens (text track: the trained caption tokens; "
                           "Stable Diffusion: the whole BPE table)"),
            "judged_as": "decoded text (re-tokenised)", "judge": context.judge.label,
            "judge_sha256": context.judge.sha256,
            "departures": ["vocabulary restricted to search_vocabulary (released: SD's whole BPE table)",
                           "budgets scaled to the 16x16 model (see Config)",
                           f"{cfg.timesteps_per_step} (t, eps) draws per step (released: 1)",
                           "target and selection images from the benchmark's DDIM sampler and seeds; judge picks the target",
                           ("prompts already showing the concept count as successes at step 0, the rest are attacked "
                            "(paper: only 'ideal' prompts attacked and counted); pre-ASR reported beside"),
                           "attacked prompts optimised together, one batch per step"],
        }
        clip = selection_clip(context) if cfg.select == "clip" else None
        if clip is not None:
            conventions["selection_clip"] = clip.name
            conventions["selection_clip_sha256"] = clip.sha256
        conventions["selection"] = (f"CLIP image similarity to the target ({clip.name})" if clip is not None
                                    else _LAST[cfg.select])
        if notes:
            conventions["reference_notes"] = notes
        return AttackResult("ok", values, per_item=rows, conventions=conventions)
