"""Class-embedding inversion: can the forgotten class be recalled through a fresh conditioning vector?

The model is frozen; a new vector with the shape of one class embedding is optimised with the ordinary
denoising loss on a few images of the forgotten class (default 25), as textual inversion does for a
token (Gal et al., ICLR 2023; used against erased models by Pham et al., "Circumventing Concept Erasure
Methods for Text-to-Image Generative Models", ICLR 2024). Samples drawn with that vector (CFG against
the null class) are judged: recovery rate = share the judge assigns to the forgotten class. A model
that truly lost the class should be as hard to invert as the retrained oracle.

Two image sources, each inverted separately: ``members`` (``recovery_rate``: the very images that were
unlearned) and ``heldout`` (``recovery_rate_heldout``: real images of the class no model trained on), so
that recovering the *capability* is told apart from recalling the unlearned *images* (the same split as
the text track's concept inversion).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks.inversion.common import attack_images, cached_per_model, judged_recovery
from benchmark.api import Attack, AttackContext, AttackResult, DiffusionModel, MetricValue
from benchmark.metrics.stats import bootstrap_ci


@dataclass
class ClassInversionConfig:
    n_images: int = 25
    steps: int = 300
    batch_size: int = 25
    lr: float = 5e-2
    n_samples: int = 100
    sample_steps: int | None = None  # DDIM steps for the judged samples (None: the tier's)
    init: str = "null"  # "null" (the unconditional embedding) or "random"
    sources: tuple[str, ...] = ("members", "heldout")  # images inverted on: unlearned members, held-out real


class ClassEmbeddingInversion(Attack):
    name = "class_inversion"
    paper = ("Pham et al., Circumventing Concept Erasure Methods for Text-to-Image Generative Models, ICLR 2024 "
             "(concept inversion), adapted to class embeddings")
    family = "inversion"
    threat_model = "white-box gradients through the frozen model; a few images of the forgotten class"
    requires = frozenset({"cond_vector", "grad", "class_cond"})
    Config = ClassInversionConfig
    config: ClassInversionConfig

    def invert(self, model: DiffusionModel, context: AttackContext,
               source: str = "members") -> tuple[torch.Tensor, list[float], str]:
        """Optimise a vector against frozen ``model`` (its own budget clock) on images from ``source``; return
        (recovered 0/1 per sample, losses, stop reason — '' when all steps ran)."""
        cfg = self.config
        clock = context.budget.start()
        images = attack_images(context, cfg.n_images, split=source)
        gen = torch.Generator().manual_seed(context.seed + 23)
        frozen = model.clone().to(model.device).eval().requires_grad_(False)
        with torch.no_grad():
            null = frozen.null_condition(1)
            start = null if cfg.init == "null" else torch.randn(null.shape, generator=gen).to(null.device) * null.std()
        vector = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([vector], lr=cfg.lr)
        losses: list[float] = []
        stopped = ""
        for _ in range(cfg.steps):
            stopped = clock.exhausted()
            if stopped:
                return torch.empty(0), losses, stopped
            idx = torch.randint(0, len(images), (min(cfg.batch_size, len(images)),), generator=gen)
            x0 = images.x[idx].to(frozen.device)
            loss = frozen.loss(x0, vector.expand(len(idx), -1), generator=gen).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        recovered = judged_recovery(frozen, vector.detach().expand(cfg.n_samples, -1), context, context.seed + 29,
                                    cfg.sample_steps)
        return recovered, losses, stopped

    def run(self, model: DiffusionModel, context: AttackContext) -> AttackResult:
        skipped = self.skip_if_missing(model)
        if skipped:
            return skipped
        cfg = self.config
        unknown = set(cfg.sources) - {"members", "heldout"}
        if unknown or "members" not in cfg.sources:
            return AttackResult("failed", reason=f"sources must include 'members' and be members/heldout, got {cfg.sources}")
        recovered, losses, stopped = cached_per_model(context, self, model, lambda: self.invert(model, context))
        if stopped:
            return AttackResult("failed", reason=f"stopped by the {stopped} after {len(losses)} of {cfg.steps} steps",
                                per_item=[{"step": i, "loss": v} for i, v in enumerate(losses)])
        proto = (f"share of {cfg.n_samples} samples (CFG w={context.guidance}, DDIM "
                 f"{cfg.sample_steps or context.sample_steps}) from the "
                 f"inverted vector judged class {context.forget_class}; up to {cfg.steps} Adam steps (lr {cfg.lr}) "
                 f"on {cfg.n_images} forget-class images; CI: bootstrap")
        rate = float(recovered.mean())
        values = {"recovery_rate": MetricValue(
            "recovery_rate", rate, cfg.n_samples, None, bootstrap_ci(recovered.numpy()), proto,
            {"steps": len(losses), "final_loss": losses[-1] if losses else None})}
        if "heldout" in cfg.sources:
            held, held_losses, held_stopped = cached_per_model(
                context, (self, "heldout"), model, lambda: self.invert(model, context, "heldout"))
            if held_stopped:
                return AttackResult("failed", reason=f"held-out inversion stopped by the {held_stopped}",
                                    per_item=[{"step": i, "loss": v} for i, v in enumerate(held_losses)])
            values["recovery_rate_heldout"] = MetricValue(
                "recovery_rate_heldout", float(held.mean()), cfg.n_samples, None, bootstrap_ci(held.numpy()),
                proto.replace("forget-class images", "held-out real images of the class (never trained on)"),
                {"steps": len(held_losses), "final_loss": held_losses[-1] if held_losses else None})
        notes = {}
        for ref_name, ref_model in context.reference_models.items():
            ref_recovered, ref_losses, ref_stopped = cached_per_model(
                context, self, ref_model, lambda m=ref_model: self.invert(m, context))
            if ref_stopped:
                notes[ref_name] = f"not inverted: stopped by the {ref_stopped} after {len(ref_losses)} steps"
                continue
            values[f"recovery_rate_{ref_name}"] = MetricValue(
                f"recovery_rate_{ref_name}", float(ref_recovered.mean()), cfg.n_samples, None,
                bootstrap_ci(ref_recovered.numpy()), proto + f"; the {ref_name} model")
            if "heldout" in cfg.sources:
                ref_held, _, ref_held_stopped = cached_per_model(
                    context, (self, "heldout"), ref_model, lambda m=ref_model: self.invert(m, context, "heldout"))
                if not ref_held_stopped:
                    values[f"recovery_rate_heldout_{ref_name}"] = MetricValue(
                        f"recovery_rate_heldout_{ref_name}", float(ref_held.mean()), cfg.n_samples, None,
                        bootstrap_ci(ref_held.numpy()), values["recovery_rate_heldout"].protocol + f"; the {ref_name} model")
        if "recovery_rate_heldout_oracle" in values:
            values["recovery_gap_heldout"] = MetricValue(
                "recovery_gap_heldout", values["recovery_rate_heldout"].value - values["recovery_rate_heldout_oracle"].value,
                cfg.n_samples, None, None, "held-out-image recovery rate − the oracle's")
        if "recovery_rate_oracle" in values:
            values["recovery_gap"] = MetricValue(
                "recovery_gap", rate - values["recovery_rate_oracle"].value, cfg.n_samples, None, None,
                "model recovery rate − oracle recovery rate (0 = as hard to invert as the oracle)")
        per_item = [{"step": i, "loss": v} for i, v in enumerate(losses)]
        return AttackResult("ok", values, per_item=per_item,
                            conventions={"init": cfg.init, "lr": cfg.lr, "n_images": cfg.n_images,
                                         "judge": context.judge.label, "judge_sha256": context.judge.sha256,
                                         **({"reference_notes": notes} if notes else {})})
