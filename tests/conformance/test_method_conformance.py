"""Run over every registered method adapter: the contract in shared/specs/methods.md."""

from __future__ import annotations

import dataclasses

import pytest

from benchmark.api import UnlearningMethod, UnlearnOutcome
from benchmark.registry import METHODS

ALL = METHODS.names()


@pytest.mark.parametrize("name", ALL)
def test_declares_paper_config_and_tracks(name):
    cls = METHODS.get(name)
    assert issubclass(cls, UnlearningMethod)
    assert cls.paper, f"{name} must cite its paper"
    assert cls.supports and cls.supports <= {"class", "text"}
    assert dataclasses.is_dataclass(cls.Config)
    with pytest.raises(ValueError, match="no config option"):
        cls.make_config({"definitely_not_an_option": 1})


@pytest.mark.parametrize("name", ALL)
def test_unlearn_contract(name, tiny_model, tiny_request):
    cls = METHODS.get(name)
    before = tiny_model.fingerprint()
    out = cls().unlearn(tiny_model, tiny_request)
    assert isinstance(out, UnlearnOutcome)
    assert tiny_model.fingerprint() == before, "the input model must not be mutated"
    assert out.model is not tiny_model
    changed = out.model.fingerprint() != before
    assert changed == getattr(cls, "changes_weights", True)
    assert out.steps <= (tiny_request.max_steps or out.steps)
    again = cls().unlearn(tiny_model, tiny_request)
    assert again.model.fingerprint() == out.model.fingerprint(), "same seed must give the same weights"


@pytest.mark.parametrize("name", [n for n in ALL if getattr(METHODS.get(n), "changes_weights", True)])
def test_respects_step_budget_and_reports_progress(name, tiny_model, tiny_request):
    seen = []
    tiny_request.max_steps = 2
    tiny_request.progress = lambda step, total, stats: seen.append((step, total))
    out = METHODS.get(name)().unlearn(tiny_model, tiny_request)
    assert out.steps == 2
    if seen:
        assert seen[-1] == (2, 2)


@pytest.mark.parametrize("name", ALL)
def test_unsupported_track_is_a_clear_error(name):
    cls = METHODS.get(name)
    if "text" in cls.supports:
        pytest.skip("supports both tracks")
    with pytest.raises(ValueError, match=f"{name}.*does not support the text track"):
        cls().check_track("text")
