"""The contract every method adapter must meet (methods/README.md), as runnable checks.

Used by the conformance tests over every registered method and by ``unlearnbench check-method`` for
adapters written outside the repository. Checks run on a tiny random UNet and a small slice of the
embedded data, with the method's smoke-tier budgets from the scenario card when it has them.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from benchmark.api import LabeledImages, UnlearningMethod, UnlearnOutcome, UnlearnRequest


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str = ""
    seconds: float = 0.0


def tiny_model(seed: int = 0) -> Any:
    from benchmark.models.class_unet import ClassConditionalUNet, tiny_unet_config

    return ClassConditionalUNet.from_config(tiny_unet_config((8, 16), num_classes=10), seed=seed)


def tiny_request(forget_class: int = 3, n_forget: int = 32, n_retain: int = 96, max_steps: int = 2) -> UnlearnRequest:
    from benchmark.data.mnist import mnist_splits

    forget, retain = mnist_splits().forget_retain(forget_class)
    keep = torch.randperm(len(retain), generator=torch.Generator().manual_seed(0))[:n_retain]
    return UnlearnRequest(forget=LabeledImages(forget.x[:n_forget], forget.y[:n_forget]),
                          retain=LabeledImages(retain.x[keep], retain.y[keep]), forget_target=forget_class,
                          remap_targets=[c for c in range(10) if c != forget_class], num_classes=10, seed=0,
                          max_steps=max_steps)


def tiny_text_model(seed: int = 0) -> Any:
    """A tiny text-conditioned UNet (8/16 channels, cross-attention at 8×8) on a randomly initialised
    tiny CLIP text tower: the text track's shapes and code paths, in milliseconds."""
    from benchmark.models.text_unet import TextConditionalUNet, tiny_text_unet_config
    from benchmark.models.tiny_clip import TextStates, create_clip

    text = TextStates(create_clip(seed=1234)).eval().requires_grad_(False)
    return TextConditionalUNet.from_config(tiny_text_unet_config((8, 16), text.width, heads=2), text, seed=seed,
                                           text_source={"zoo": None, "note": "random tiny CLIP (tests)"})


def tiny_text_request(concept: str = "digit:3", n_forget: int = 16, n_retain: int = 48,
                      max_steps: int = 2) -> UnlearnRequest:
    """A text-track request as the text scenario builds it, on a few images (captions: erase phrasings
    for the concept, any phrasing for the rest)."""
    from benchmark.data.mnist_text import mnist_text_splits, parse_concept
    from benchmark.scenarios.text_track import captions_for, with_captions

    c = parse_concept(concept)
    members = mnist_text_splits().members
    is_f = c.mask(members)
    keep = torch.randperm(int((~is_f).sum()), generator=torch.Generator().manual_seed(0))[:n_retain]
    forget = members.where(is_f).where(torch.arange(int(is_f.sum())) < n_forget)
    retain = members.where(~is_f).where(torch.isin(torch.arange(int((~is_f).sum())), keep))
    values = ([f"{w}" for w in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")]
              if c.axis == "digit" else ["red", "green", "blue", "yellow"])
    own = c.phrasings("erase")[0]
    return UnlearnRequest(forget=with_captions(forget, captions_for(forget, c, 0)),
                          retain=with_captions(retain, captions_for(retain, c, 1)),
                          forget_target=tuple(c.phrasings("erase")), remap_targets=[v for v in values if v != own],
                          num_classes=len(values), seed=0, max_steps=max_steps, forget_position=c.index)


def smoke_overrides(name: str, scenario: str | None = None) -> dict[str, Any]:
    """The method's smoke-tier budget from the scenario card ({} if the card does not list it); by
    default the class card, or the text object card for a text-only method."""
    from benchmark.registry import METHODS
    from benchmark.scenarios import load_scenario

    if scenario is None:
        supports = getattr(METHODS.get(name), "supports", {"class"}) if name in METHODS else {"class"}
        scenario = "mnist-class" if "class" in supports else "mnist-text-object"
    return load_scenario(scenario).method_config("smoke", name)


def _run_check(results: list[CheckResult], name: str, fn: Callable[[], str | None]) -> bool:
    """Run one check; append its result (the detail it returns, or what it raised and where)."""
    t0 = time.time()
    try:
        results.append(CheckResult(name, True, fn() or "", time.time() - t0))
        return True
    except Exception as exc:  # noqa: BLE001 - a check reports whatever the adapter raised
        where = traceback.extract_tb(exc.__traceback__)[-1]
        results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc} ({where.filename.split('/')[-1]}:"
                                                 f"{where.lineno})", time.time() - t0))
        return False


def check_method(cls: type, overrides: dict[str, Any] | None = None) -> list[CheckResult]:
    """Run every contract check on ``cls``; never raises for a failing adapter, it reports."""
    results: list[CheckResult] = []

    run = functools.partial(_run_check, results)

    def is_method() -> str:
        assert isinstance(cls, type) and issubclass(cls, UnlearningMethod), "not a subclass of UnlearningMethod"
        return cls.__qualname__

    def declares() -> str:
        assert cls.paper, "set `paper` to the citation of the method's paper"
        assert "TODO" not in cls.paper, "replace the TODO in `paper` with the citation of the method's paper"
        assert cls.supports and set(cls.supports) <= {"class", "text"}, "`supports` must be a subset of {class, text}"
        assert dataclasses.is_dataclass(cls.Config), "`Config` must be a dataclass"
        try:
            cls.make_config({"definitely_not_an_option": 1})
        except ValueError:
            pass
        else:
            raise AssertionError("make_config accepted an unknown option")
        from benchmark.expectations import parse_expectation
        from benchmark.scenarios import TIERS

        for tier, budget in (getattr(cls, "tier_budgets", None) or {}).items():
            assert tier in TIERS, f"tier_budgets names unknown tier {tier!r} (tiers: {', '.join(TIERS)})"
            cls.make_config(budget)  # raises a one-line error naming the bad key or value
        for tier, rules in (getattr(cls, "expectations", None) or {}).items():
            assert tier in TIERS, f"expectations names unknown tier {tier!r}"
            for rule in rules.values():
                parse_expectation(rule)
        return f"supports {', '.join(sorted(cls.supports))}"

    if not run("is an UnlearningMethod", is_method) or not run("declares paper, tracks, Config", declares):
        return results

    config = cls.make_config(overrides or {})
    track = "class" if "class" in cls.supports else "text"
    make_model, make_request = (tiny_model, tiny_request) if track == "class" else (tiny_text_model, tiny_text_request)
    model = make_model()
    before = model.fingerprint()
    out: dict[str, UnlearnOutcome] = {}

    def unlearns() -> str:
        req = make_request()
        seen: list[tuple[int, int]] = []
        req.progress = lambda step, total, stats: seen.append((step, total))
        result = cls(config).unlearn(model, req)
        assert isinstance(result, UnlearnOutcome), f"unlearn must return UnlearnOutcome, got {type(result).__name__}"
        out["first"] = result
        out["progress"] = seen  # type: ignore[assignment]
        return f"{result.steps} steps"

    if not run("unlearn returns an outcome", unlearns):
        return results

    def untouched() -> str:
        assert model.fingerprint() == before, "the input model's weights changed"
        assert out["first"].model is not model, "returned the input model object itself"
        return ""

    def changes() -> str:
        changed = out["first"].model.fingerprint() != before
        expected = getattr(cls, "changes_weights", True)
        assert changed == expected, ("weights did not change" if expected else
                                     "weights changed although changes_weights = False")
        return "weights changed" if changed else "weights unchanged (declared)"

    def deterministic() -> str:
        again = cls(config).unlearn(model, make_request())
        assert again.model.fingerprint() == out["first"].model.fingerprint(), "same seed gave different weights"
        return ""

    def budget() -> str:
        steps = out["first"].steps
        assert steps <= 2, f"ran {steps} optimiser steps with max_steps=2"
        seen = out["progress"]  # type: ignore[index]
        if getattr(cls, "changes_weights", True) and steps:
            assert seen and seen[-1] == (steps, steps), f"progress callback not driven to the end: {seen[-3:]}"
        return f"{steps} ≤ 2 steps, progress reported"

    def unsupported() -> str:
        other = ({"class", "text"} - set(cls.supports))
        if not other:
            return "supports both tracks"
        track = other.pop()
        try:
            cls(config).check_track(track)
        except ValueError as exc:
            assert "does not support" in str(exc), f"unclear error: {exc}"
            return f"{track}: {exc}"
        raise AssertionError(f"accepted the unsupported {track} track")

    def text_track() -> str:
        text_model = tiny_text_model()
        text_before = text_model.fingerprint()
        result = cls(config).unlearn(text_model, tiny_text_request())
        assert text_model.fingerprint() == text_before, "the input text model's weights changed"
        changed = result.model.fingerprint() != text_before
        assert changed == getattr(cls, "changes_weights", True), "weights did not change on the text track"
        return f"{result.steps} steps on a tiny text model"

    run("leaves the input model untouched", untouched)
    run("changes the weights", changes)
    run("same seed → same weights", deterministic)
    run("respects max_steps, reports progress", budget)
    run("unsupported track is a clear error", unsupported)
    if track == "class" and "text" in cls.supports:
        run("also runs on the text track", text_track)
    return results


# -- attacks -------------------------------------------------------------------------------------------

def _tiny_class_attack_context(**kwargs: Any) -> Any:
    return tiny_attack_context(**kwargs)


def tiny_attack_context(forget_class: int = 3, per_class: int = 12, budget: Any = None, seed: int = 0) -> Any:
    """A small AttackContext: tiny random UNets as the original and oracle, a few images per class, the
    shipped judge. Enough to exercise an attack's plumbing in seconds, not to measure it."""
    from benchmark import zoo
    from benchmark.api import AttackBudget, AttackContext
    from benchmark.data.mnist import mnist_splits
    from benchmark.scenarios import load_scenario

    splits = mnist_splits()

    def few(data: LabeledImages) -> LabeledImages:
        keep = torch.cat([torch.nonzero(data.y == c).flatten()[:per_class] for c in range(10)])
        return LabeledImages(data.x[keep], data.y[keep])

    return AttackContext(scenario=load_scenario("mnist-class"), tier="smoke", forget_class=forget_class,
                         members=few(splits.members), heldout=few(splits.heldout), judge=zoo.load_judge(),
                         reference_models={"original": tiny_model(0), "oracle": tiny_model(1)},
                         budget=budget or AttackBudget(), seed=seed, sample_steps=4)


def tiny_text_attack_context(concept: str = "digit:3", per_cell: int = 2, budget: Any = None, seed: int = 0) -> Any:
    """The text track's AttackContext on a few images per (digit, colour) cell, with tiny random text UNets
    as the original and oracle and the shipped text judge: the text code paths of an attack, in seconds."""
    from benchmark import zoo
    from benchmark.api import AttackBudget, AttackContext
    from benchmark.data.mnist_text import mnist_text_splits, parse_concept
    from benchmark.scenarios import load_scenario
    from benchmark.scenarios.text_track import captions_for, cell_labels, with_captions

    c = parse_concept(concept)
    splits = mnist_text_splits()

    def few(data: Any) -> Any:
        cells = cell_labels(data)
        keep = torch.cat([torch.nonzero(cells == k).flatten()[:per_cell] for k in range(40)])
        return data.where(keep)

    members, heldout = few(splits.members), few(splits.heldout)
    scenario = load_scenario("mnist-text-object")
    ctx = AttackContext(scenario=scenario, tier="smoke", forget_class=c.index,
                        members=with_captions(members, captions_for(members, c, 100)),
                        heldout=with_captions(heldout, captions_for(heldout, c, 101)),
                        judge=zoo.load_judge("mnist-text-judge"),
                        reference_models={"original": tiny_text_model(0), "oracle": tiny_text_model(1)},
                        budget=budget or AttackBudget(), seed=seed, guidance=5.0, sample_steps=4,
                        config={"concept": c, "clip": dict(scenario.models["clip"])})  # as the track's context
    ctx.forget_members_mask, ctx.forget_heldout_mask = c.mask(members), c.mask(heldout)
    ctx.forget_prompts = tuple(f"{p} in red" for p in c.phrasings("erase"))
    ctx.judge_head, ctx.forget_name = c.axis, c.name
    return ctx


def attack_smoke_overrides(name: str, scenario: str = "mnist-class") -> dict[str, Any]:
    """The attack's smoke-tier settings from the scenario card ({} if the card does not list it)."""
    from benchmark.scenarios import load_scenario

    return load_scenario(scenario).attack_config("smoke", name)


class _WithoutCapabilities:
    """A model proxy that advertises no capabilities, to check that attacks skip cleanly."""

    capabilities: frozenset[str] = frozenset()

    def __init__(self, model: Any):
        self._model = model

    def __getattr__(self, item: str) -> Any:
        return getattr(self._model, item)


def _module_state(model: Any) -> dict[str, tuple[bool, bool]]:
    """(training, any parameter requires grad) per module of a model."""
    return {name: (m.training, any(p.requires_grad for p in m.parameters())) for name, m in model.modules().items()}


def check_attack(cls: type, overrides: dict[str, Any] | None = None) -> list[CheckResult]:
    """Run the attack contract checks on ``cls`` (attacks/README.md); reports, never raises."""
    from benchmark import cost
    from benchmark.api import Attack, AttackBudget, AttackResult, MetricValue

    results: list[CheckResult] = []

    run = functools.partial(_run_check, results)

    def declares() -> str:
        assert isinstance(cls, type) and issubclass(cls, Attack), "not a subclass of Attack"
        assert cls.name and cls.paper and cls.family and cls.threat_model, "set name, paper, family, threat_model"
        assert "TODO" not in cls.paper, "replace the TODO in `paper` with the citation of the attack's paper"
        assert dataclasses.is_dataclass(cls.Config), "`Config` must be a dataclass"
        try:
            cls.make_config({"definitely_not_an_option": 1})
        except ValueError:
            return f"{cls.family}; requires {', '.join(sorted(cls.requires)) or 'nothing'}"
        raise AssertionError("make_config accepted an unknown option")

    if not run("declares name, paper, family, Config", declares):
        return results
    config = cls.make_config(overrides or {})
    text_only = "class" not in getattr(cls, "tracks", {"class"})
    model = tiny_text_model(2) if text_only else tiny_model(2)
    tiny_attack_context = tiny_text_attack_context if text_only else _tiny_class_attack_context  # noqa: N806
    before = model.fingerprint()
    state_before = _module_state(model)
    out: dict[str, Any] = {}

    def runs() -> str:
        with cost.measure("cpu") as meter:
            result = cls(config).run(model, tiny_attack_context())
        assert isinstance(result, AttackResult), f"run must return AttackResult, got {type(result).__name__}"
        assert result.status == "ok", f"status {result.status}: {result.reason}"
        assert result.values, "no values"
        for key, v in result.values.items():
            assert isinstance(v, MetricValue) and v.n > 0 and v.protocol, f"value {key!r} lacks n or protocol"
            assert v.value == v.value, f"value {key!r} is NaN"
        out["result"], out["forward"] = result, meter.forward_images
        return f"{', '.join(result.values)}; {meter.forward_images} forward images"

    if not run("runs on a tiny model, values carry n and protocol", runs):
        return results

    def untouched() -> str:
        assert model.fingerprint() == before, "the attacked model's weights changed"
        assert _module_state(model) == state_before, "the attacked model's train/eval mode or requires_grad changed"
        return ""

    def deterministic() -> str:
        again = cls(config).run(model, tiny_attack_context())
        first = {k: v.value for k, v in out["result"].values.items()}
        second = {k: v.value for k, v in again.values.items()}
        assert first == second, f"same seed gave different values: {first} vs {second}"
        return ""

    def budget() -> str:
        with cost.measure("cpu") as meter:
            result = cls(config).run(model, tiny_attack_context(budget=AttackBudget(max_seconds=0)))
        said = result.reason + " ".join(str((v.extra or {}).get("stopped_by", "")) for v in result.values.values())
        assert "cap" in said or "budget" in said, f"an exhausted budget was not reported (status {result.status})"
        assert meter.forward_images < out["forward"], "did as much work with an exhausted budget as without"
        return f"{result.status}: {said.strip()[:80]}"

    def skips() -> str:
        if not cls.requires:
            return "requires nothing"
        result = cls(config).run(_WithoutCapabilities(model), tiny_attack_context())
        assert result.status == "skipped" and result.reason, f"status {result.status}, reason {result.reason!r}"
        return result.reason

    run("leaves the model untouched", untouched)
    run("same seed → same values", deterministic)
    run("stops at an exhausted budget and says so", budget)
    run("skips a model without the needed capabilities", skips)
    return results
