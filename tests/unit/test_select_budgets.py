"""The budget-selection rule of perf/select_budgets.py: what it picks, and that a config edit is a new grid point."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "perf" / "select_budgets.py"
SEL = {"forget_at_most": 0.05, "retain_at_least": 0.95}


@pytest.fixture(scope="module")
def sb():
    spec = importlib.util.spec_from_file_location("select_budgets", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rows(method: str, points: list[tuple[int, float, float]]) -> list[dict]:
    return [{"method": method, "lr_multiplier": m, "lr": 1e-4 * m, "seed": 100, "forget_accuracy": f,
             "retain_accuracy": r} for m, f, r in points]


def test_smallest_lr_that_forgets_and_keeps_the_rest(sb):
    c = sb.choose(rows("a", [(1, 0.9, 0.99), (3, 0.0, 0.97), (10, 0.0, 0.96)]), SEL)["a"]
    assert c["lr_multiplier"] == 3 and c["why"].startswith("smallest")


def test_lowest_forget_among_safe_when_none_forgets(sb):
    c = sb.choose(rows("a", [(1, 0.9, 0.99), (3, 0.6, 0.97), (10, 0.0, 0.80)]), SEL)["a"]
    assert c["lr_multiplier"] == 3 and c["why"].startswith("lowest")


def test_paper_lr_when_nothing_keeps_the_rest(sb):
    c = sb.choose(rows("a", [(1, 0.0, 0.1), (3, 0.0, 0.0), (10, 0.0, 0.0)]), SEL)["a"]
    assert c["lr_multiplier"] == 1 and c["why"].startswith("no lr")


def test_seeds_are_averaged_before_the_rule(sb):
    r = rows("a", [(1, 0.0, 0.99), (3, 0.0, 0.99)]) + rows("a", [(1, 0.2, 0.99), (3, 0.0, 0.99)])
    assert sb.choose(r, SEL)["a"]["lr_multiplier"] == 3  # multiplier 1 forgets on one seed only: mean 0.1


def test_config_edit_is_a_new_grid_point_and_lr_is_not(sb):
    base = sb.grid_point_name("erasediff-fixed", 3, 100, {"steps": 100, "lam": 0.1})
    assert sb.grid_point_name("erasediff-fixed", 3, 100, {"steps": 100, "lam": 1.0}) != base
    assert sb.grid_point_name("erasediff-fixed", 3, 100, {"lam": 0.1, "steps": 100, "lr": 3e-4}) == base
