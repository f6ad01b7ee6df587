"""The loader half of a registered scenario: everything dataset- and track-specific the runner needs.

A card (YAML) says *what* (data, models, targets, tiers); its ``ScenarioSetup`` knows *how*: it loads
the forget / retain data with their conditions, the base model, the oracle(s) and the judge, draws the
samples its metrics are computed on (the sample plan), and builds the contexts metrics and attacks see.
The runner only talks to this interface, so a new track (or a Stable Diffusion scenario) is a new
``ScenarioSetup``, not a branch in the loop. Cards name their setup with ``loader: "module:Class"``;
without one, the track's built-in setup is used.
"""

from __future__ import annotations

import abc
import functools
from pathlib import Path
from typing import Any

from benchmark import UnlearnbenchError
from benchmark.api import AttackContext, DiffusionModel, EvalContext, Judge, LabeledImages, UnlearnRequest

TRACK_LOADERS = {
    "class": "benchmark.scenarios.class_track:ClassTrackSetup",
    "text": "benchmark.scenarios.text_track:TextTrackSetup",
}


class ScenarioSetup(abc.ABC):
    """One scenario with one forget target, loaded for one run (base, judge and data are loaded lazily)."""

    tier: str | None = None  # the run's tier, set by the runner (a setup whose request depends on it reads it)
    show_progress: bool = True  # set by the runner: progress bars of the setup's own work (generating D_f)

    def __init__(self, scenario: Any, target: Any, device: str = "cpu", log: Any = print):
        self.scenario = scenario
        self.target = self.check_target(scenario, target)
        self.device = device
        self.log = log

    # -- what a track implements -------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def check_target(cls, scenario: Any, target: Any) -> Any:
        """Validate the forget target (None = the card's default) and return it normalised; raise
        ``UnlearnbenchError`` with the valid choices otherwise."""

    @property
    @abc.abstractmethod
    def target_tag(self) -> str:
        """Short tag of the target for file names (``c0``, ``digit0``, ``red``)."""

    @abc.abstractmethod
    def request(self, seed: int, device: str, progress: Any = None, max_steps: int | None = None) -> UnlearnRequest:
        """The unlearning request a method is handed (only what the card allows it to see)."""

    @abc.abstractmethod
    def sample(self, model: DiffusionModel, tier: str, seed: int, fingerprint: str, cache_dir: Path | None,
               show_progress: bool, desc: str) -> LabeledImages:
        """The model's samples for the tier's sample plan (cached by fingerprint and plan)."""

    @abc.abstractmethod
    def save_grid(self, samples: LabeledImages, path: Path) -> Path: ...

    @abc.abstractmethod
    def eval_context(self, tier: str, samples: LabeledImages, cache_dir: Path | None) -> EvalContext: ...

    @abc.abstractmethod
    def attack_context(self, tier: str, seed: int) -> AttackContext: ...

    @abc.abstractmethod
    def record_fields(self, tier: str) -> dict[str, Any]:
        """Scenario fields of a result record beyond name, version, hash, track and tier."""

    @abc.abstractmethod
    def summary(self, values: dict[str, Any]) -> str:
        """The per-cell log line's metric part."""

    # -- shared ----------------------------------------------------------------------------------------
    @staticmethod
    def plain_target(scenario: Any, target: Any) -> Any:
        """``target``, refusing the mapping a prompt-set scenario takes (a prompt file, measuring files)."""
        if isinstance(target, dict):
            raise UnlearnbenchError(f"--prompts / --clip-weights / --inception-weights apply to prompt-set scenarios "
                                    f"(sd-nudity); {scenario.name} measures with its own data and judges")
        return target

    @functools.cached_property
    def base(self) -> DiffusionModel:
        from benchmark import zoo

        spec = self.scenario.models["base"]
        return zoo.load_unet(spec["zoo"], spec.get("sha256")).to(self.device)

    @functools.cached_property
    def judge(self) -> Judge:
        from benchmark import zoo

        spec = self.scenario.models["judge"]
        return zoo.load_judge(spec["zoo"], spec.get("sha256"), device=self.device)

    def load_instruments(self) -> None:
        """Load what this setup measures with (the judge, and any measuring file the user passed), so that a
        bad file is one error line before any cell runs rather than a failed cell after the others ran."""
        self.judge  # noqa: B018 - cached_property: loads (and checks) it once

    def oracle(self) -> DiffusionModel | None:
        """The retrained oracle for this target from the zoo or cache, or None (with a note)."""
        from benchmark import zoo

        name, sha = self.oracle_entry()
        if zoo.locate(name) is None:
            self.log(f"note: the oracle {name!r} is not in the zoo or cache, so attack gaps to the oracle are "
                     f"omitted (build it with `unlearnbench zoo train {name}` or run the retrain method first)")
            return None
        return zoo.load_unet(name, sha).to(self.device)

    def _attack_context(self, tier: str, seed: int, forget_class: int, members: LabeledImages,
                        heldout: LabeledImages, config: dict[str, Any] | None = None) -> AttackContext:
        """The AttackContext every track builds: original and (if available) oracle, budget, sampling."""
        from benchmark.api import AttackBudget

        refs = {"original": self.base}
        oracle = self.oracle()
        if oracle is not None:
            refs["oracle"] = oracle
        spec = self.scenario.tier(tier)
        return AttackContext(scenario=self.scenario, tier=tier, forget_class=forget_class, members=members,
                             heldout=heldout, judge=self.judge, reference_models=refs,
                             budget=AttackBudget(**spec.attack_budget), seed=seed, device=self.device,
                             guidance=self.scenario.guidance, sample_steps=spec.ddim_steps, config=dict(config or {}))

    @abc.abstractmethod
    def oracle_entry(self) -> tuple[str, str | None]:
        """(zoo name, sha256 from the card or None) of the oracle retrained without the target."""

    def card_oracle(self, key: Any, conventional: str) -> tuple[str, str | None]:
        """The card's ``models.oracles[key]`` entry (zoo name and sha256); a target the card does not list
        falls back to the zoo's naming convention, unverified."""
        entry = (self.scenario.models.get("oracles") or {}).get(key) or {}
        return entry.get("zoo") or conventional, entry.get("sha256")


def setup_for(scenario: Any, target: Any = None, device: str = "cpu", log: Any = print) -> ScenarioSetup:
    """The scenario's setup for ``target``: the card's ``loader`` or its track's built-in one."""
    from benchmark.registry import load_object

    spec = scenario.raw.get("loader") or TRACK_LOADERS.get(scenario.track)
    if spec is None:
        raise UnlearnbenchError(f"scenario {scenario.name!r}: unknown track {scenario.track!r} and no `loader` "
                                f"(tracks: {', '.join(TRACK_LOADERS)})")
    cls = load_object(spec)
    if not (isinstance(cls, type) and issubclass(cls, ScenarioSetup)):
        raise UnlearnbenchError(f"scenario {scenario.name!r}: loader {spec!r} is not a ScenarioSetup")
    return cls(scenario, target, device, log)


def setup_class(scenario: Any) -> type[ScenarioSetup]:
    from benchmark.registry import load_object

    return load_object(scenario.raw.get("loader") or TRACK_LOADERS[scenario.track])
