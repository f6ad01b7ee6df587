"""The contract every method adapter must meet (shared/specs/methods.md), as runnable checks.

Used by the conformance tests over every registered method and by ``unlearnbench check-method`` for
adapters written outside the repository. Checks run on a tiny random UNet and a small slice of the
embedded data, with the method's smoke-tier budgets from the scenario card when it has them.
"""

from __future__ import annotations

import dataclasses
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


def smoke_overrides(name: str, scenario: str = "mnist-class") -> dict[str, Any]:
    """The method's smoke-tier budget from the scenario card ({} if the card does not list it)."""
    from benchmark.scenarios import load_scenario

    return load_scenario(scenario).method_config("smoke", name)


def check_method(cls: type, overrides: dict[str, Any] | None = None) -> list[CheckResult]:
    """Run every contract check on ``cls``; never raises for a failing adapter, it reports."""
    results: list[CheckResult] = []

    def run(name: str, fn: Callable[[], str | None]) -> bool:
        t0 = time.time()
        try:
            detail = fn() or ""
            results.append(CheckResult(name, True, detail, time.time() - t0))
            return True
        except Exception as exc:  # noqa: BLE001 - a check reports whatever the adapter raised
            where = traceback.extract_tb(exc.__traceback__)[-1]
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc} ({where.filename.split('/')[-1]}:"
                                                     f"{where.lineno})", time.time() - t0))
            return False

    def is_method() -> str:
        assert isinstance(cls, type) and issubclass(cls, UnlearningMethod), "not a subclass of UnlearningMethod"
        return cls.__qualname__

    def declares() -> str:
        assert cls.paper, "set `paper` to the citation of the method's paper"
        assert cls.supports and set(cls.supports) <= {"class", "text"}, "`supports` must be a subset of {class, text}"
        assert dataclasses.is_dataclass(cls.Config), "`Config` must be a dataclass"
        try:
            cls.make_config({"definitely_not_an_option": 1})
        except ValueError:
            pass
        else:
            raise AssertionError("make_config accepted an unknown option")
        return f"supports {', '.join(sorted(cls.supports))}"

    if not run("is an UnlearningMethod", is_method) or not run("declares paper, tracks, Config", declares):
        return results

    config = cls.make_config(overrides or {})
    model = tiny_model()
    before = model.fingerprint()
    out: dict[str, UnlearnOutcome] = {}

    def unlearns() -> str:
        req = tiny_request()
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
        again = cls(config).unlearn(model, tiny_request())
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

    run("leaves the input model untouched", untouched)
    run("changes the weights", changes)
    run("same seed → same weights", deterministic)
    run("respects max_steps, reports progress", budget)
    run("unsupported track is a clear error", unsupported)
    return results
