"""Retrain (the oracle): train from scratch on D_r only, with the base model's recipe.

The gold standard every score is compared to. For the shipped base model the oracle comes from the
zoo: ``mnist-unet-retrain-c0`` ships; other forget classes are trained by the same recipe on first
use and cached (about as long as training the base model). For any other model (a user's, or a
tiny test model) the same training loop runs on ``request.retain`` with the model's architecture.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from benchmark.api import DiffusionModel, UnlearningMethod, UnlearnOutcome, UnlearnRequest


@dataclass
class RetrainConfig:
    steps: int | None = None  # None: the base recipe's step count
    batch_size: int | None = None
    use_zoo: bool = True


class Retrain(UnlearningMethod):
    name = "retrain"
    paper = "retrained oracle: the base recipe on D_r only (exact unlearning)"
    supports = frozenset({"class"})
    Config = RetrainConfig
    config: RetrainConfig

    def unlearn(self, model: DiffusionModel, request: UnlearnRequest) -> UnlearnOutcome:
        from benchmark import zoo
        from benchmark.models.class_unet import ClassConditionalUNet
        from benchmark.zoo.recipes import UNetRecipe, train_unet

        if not isinstance(model, ClassConditionalUNet):
            raise ValueError(f"retrain supports class-conditional UNets, got {type(model).__name__}")
        fc = int(request.forget_target)  # type: ignore[arg-type]
        if self.config.use_zoo and zoo.is_zoo_base(model):
            oracle = zoo.load_unet(f"mnist-unet-retrain-c{fc}", _card_sha256(request.scenario, fc),
                                   build_if_missing=True)
            return UnlearnOutcome(oracle.to(request.device), steps=0, stats={"source": f"zoo:mnist-unet-retrain-c{fc}"})
        recipe = UNetRecipe(exclude_class=fc, seed=request.seed)
        steps = recipe.steps if self.config.steps is None else self.config.steps
        if request.max_steps is not None:
            steps = min(steps, request.max_steps)
        recipe = dataclasses.replace(recipe, steps=steps)
        if self.config.batch_size is not None:
            recipe = dataclasses.replace(recipe, batch_size=self.config.batch_size)
        fresh = model.fresh(seed=recipe.seed).to(request.device)
        oracle = train_unet(recipe, show_progress=True, data=request.retain, init=fresh, progress=request.progress)
        return UnlearnOutcome(oracle, steps=recipe.steps, stats={"source": "trained", "recipe": dataclasses.asdict(recipe)})


def _card_sha256(scenario: str, forget_class: int) -> str | None:
    """The oracle's sha256 as recorded in the scenario card, if the card lists one."""
    if not scenario:
        return None
    from benchmark.scenarios import load_scenario

    oracles = load_scenario(scenario).models.get("oracles") or {}
    return (oracles.get(forget_class) or {}).get("sha256")
