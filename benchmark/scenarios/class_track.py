"""The class track's setup: MNIST-5k members / held-out split, a class-conditional UNet, forget one class.

The forget target is a class id; a method sees D_f (members of the class) and D_r (the other members),
remap targets = the other classes. Sample plan: ``samples_per_class`` CFG samples of every class.
Attacks score against ``mnist-unet-retrain-c{k}``, the base recipe retrained without class k.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from benchmark.api import (
    AttackContext,
    DiffusionModel,
    EvalContext,
    LabeledImages,
    UnlearnRequest,
)
from benchmark.scenarios.setup import ScenarioSetup


class ClassTrackSetup(ScenarioSetup):
    @classmethod
    def check_target(cls, scenario: Any, target: Any) -> int:
        from benchmark.data.mnist import check_class

        target = cls.plain_target(scenario, target)
        return check_class(scenario.default_target if target is None else target, scenario.num_classes)

    @property
    def target_tag(self) -> str:
        return f"c{self.target}"

    @functools.cached_property
    def splits(self) -> Any:
        from benchmark.data.mnist import mnist_splits

        data = self.scenario.data
        return mnist_splits(int(data.get("split_seed", 0)), int(data.get("members_per_class", 400)))

    def request(self, seed: int, device: str, progress: Any = None, max_steps: int | None = None) -> UnlearnRequest:
        sc, fc = self.scenario, self.target
        forget, retain = self.splits.forget_retain(fc)
        return UnlearnRequest(forget=forget, retain=retain, forget_target=fc,
                              remap_targets=[c for c in range(sc.num_classes) if c != fc],
                              num_classes=sc.num_classes, seed=seed, device=device, progress=progress,
                              scenario=str(sc.path), max_steps=max_steps)

    def sample(self, model: DiffusionModel, tier: str, seed: int, fingerprint: str, cache_dir: Path | None,
               show_progress: bool, desc: str) -> LabeledImages:
        from benchmark.sampling import SampleSpec, sample_classes

        spec = self.scenario.tier(tier)
        plan = SampleSpec(tuple(range(self.scenario.num_classes)), spec.samples_per_class, spec.ddim_steps,
                          self.scenario.guidance, seed)
        return sample_classes(model, plan, cache_dir=cache_dir, show_progress=show_progress, desc=desc,
                              fingerprint=fingerprint)

    def save_grid(self, samples: LabeledImages, path: Path) -> Path:
        from benchmark.sampling import save_grid

        return save_grid(samples, path)

    def eval_context(self, tier: str, samples: LabeledImages, cache_dir: Path | None) -> EvalContext:
        return EvalContext(scenario=self.scenario, tier=tier, samples=samples, forget_class=self.target,
                           judge=self.judge, reference=self.splits.heldout, members=self.splits.members,
                           device=self.device, cache_dir=cache_dir)

    def oracle_entry(self) -> tuple[str, str | None]:
        return self.card_oracle(self.target, f"mnist-unet-retrain-c{self.target}")

    def attack_context(self, tier: str, seed: int) -> AttackContext:
        return self._attack_context(tier, seed, self.target, self.splits.members, self.splits.heldout)

    def record_fields(self, tier: str) -> dict[str, Any]:
        spec = self.scenario.tier(tier)
        return {"forget_class": self.target, "samples_per_class": spec.samples_per_class,
                "ddim_steps": spec.ddim_steps, "guidance": self.scenario.guidance,
                "guidance_convention": "(1+w)·eps_c − w·eps_u"}

    def summary(self, values: dict[str, Any]) -> str:
        fa, fid = values.get("forget_accuracy", {}), values.get("fid", {})
        return (f"forget acc {fa.get('value', float('nan')):.3f} (n={fa.get('n')}), "
                f"FID[{self.judge.label}] {fid.get('value', float('nan')):.2f} (n={fid.get('n')})")
