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
from methods.base import track_of


@dataclass
class RetrainConfig:
    steps: int | None = None  # None: the base recipe's step count
    batch_size: int | None = None
    use_zoo: bool = True


class Retrain(UnlearningMethod):
    name = "retrain"
    paper = "retrained oracle: the base recipe on D_r only (exact unlearning)"
    supports = frozenset({"class", "text"})
    Config = RetrainConfig
    config: RetrainConfig

    def unlearn(self, model: DiffusionModel, request: UnlearnRequest) -> UnlearnOutcome:
        from benchmark import zoo
        from benchmark.models.class_unet import ClassConditionalUNet
        from benchmark.zoo.recipes import UNetRecipe

        if track_of(model) == "text":
            return self._text(model, request)
        if not isinstance(model, ClassConditionalUNet):
            raise ValueError(f"retrain supports class-conditional UNets, got {type(model).__name__}")
        fc = int(request.forget_target)  # type: ignore[arg-type]
        if self.config.use_zoo and zoo.is_zoo_base(model):
            oracle = zoo.load_unet(f"mnist-unet-retrain-c{fc}", _card_sha256(request.scenario, fc),
                                   build_if_missing=True)
            return UnlearnOutcome(oracle.to(request.device), steps=0, stats={"source": f"zoo:mnist-unet-retrain-c{fc}"})
        return self._train(model, request, UNetRecipe(exclude_class=fc, seed=request.seed))

    def _text(self, model: DiffusionModel, request: UnlearnRequest) -> UnlearnOutcome:
        """Text track: the zoo oracle of the concept for the shipped base, else the same loop on D_r's
        captions (label dropout to "") from fresh weights."""
        from benchmark import zoo
        from benchmark.data.mnist_text import parse_concept
        from benchmark.scenarios import load_scenario
        from benchmark.zoo.recipes import UNetRecipe
        from benchmark.zoo.text_recipes import TextUNetRecipe

        concept = parse_concept(list(request.forget_target)[0])  # type: ignore[arg-type]
        tag = f"d{concept.value}" if concept.axis == "digit" else str(concept.value)
        name = f"mnist-text-unet-retrain-{tag}"
        if self.config.use_zoo and zoo.is_zoo_base(model, "mnist-text-unet-base"):
            oracles = load_scenario(request.scenario).models.get("oracles") or {} if request.scenario else {}
            sha = (oracles.get(f"digit{concept.value}" if concept.axis == "digit" else str(concept.value)) or {}).get("sha256")
            oracle = zoo.load_unet(name, sha, build_if_missing=True)
            return UnlearnOutcome(oracle.to(request.device), steps=0, stats={"source": f"zoo:{name}"})
        text = TextUNetRecipe()
        recipe = UNetRecipe(steps=text.steps, batch_size=text.batch_size, lr=text.lr, warmup_steps=text.warmup_steps,
                            ema_decay=text.ema_decay, cond_drop_prob=text.cond_drop_prob, seed=request.seed)
        return self._train(model, request, recipe)

    def _train(self, model: DiffusionModel, request: UnlearnRequest, recipe: object) -> UnlearnOutcome:
        from benchmark.zoo.recipes import train_unet

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
