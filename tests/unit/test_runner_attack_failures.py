"""A broken attack is recorded as failed, with its reason, and the attacks after it still run."""

from __future__ import annotations

from types import SimpleNamespace

from benchmark.api import AttackResult, MetricValue
from benchmark.runner import _run_attacks


class _Broken:
    def __init__(self, config):
        pass

    def run(self, model, ctx):
        raise RuntimeError("judge weights unreadable")


class _Fine:
    def __init__(self, config):
        pass

    def run(self, model, ctx):
        return AttackResult("ok", {"asr": MetricValue("asr", 0.25, 8, False, (0.0, 0.5), "test")},
                            per_item=[{"prompt": "zero", "success": 0}])


def test_a_raising_attack_is_recorded_as_failed_and_the_next_one_runs(tmp_path):
    cells = [SimpleNamespace(name="broken", cls=_Broken, config=None, config_dict={"k": 1}),
             SimpleNamespace(name="fine", cls=_Fine, config=None, config_dict={})]
    timings: dict[str, float] = {}
    out = _run_attacks(SimpleNamespace(attacks=cells, device="cpu"), object(), object(),
                       tmp_path / "rec.json", False, timings)
    assert out["broken"]["status"] == "failed"
    assert out["broken"]["reason"] == "RuntimeError: judge weights unreadable"
    assert out["broken"]["config"] == {"k": 1} and "cost" in out["broken"]
    assert out["fine"]["status"] == "ok" and out["fine"]["values"]["asr"]["value"] == 0.25
    assert (tmp_path / "rec.attacks" / "fine.csv").read_text().splitlines()[0] == "prompt,success"
    assert "attacks" in timings


class _NaN:
    def __init__(self, config):
        pass

    def run(self, model, ctx):
        return AttackResult("ok", {"auc_forget": MetricValue("auc_forget", float("nan"), 200, False, None, "test")})


def test_an_attack_with_a_nan_value_is_recorded_as_failed(tmp_path):
    """A NaN AUC measured nothing: failed, so the audit counts it as not measured rather than comparing it."""
    cells = [SimpleNamespace(name="pia", cls=_NaN, config=None, config_dict={})]
    out = _run_attacks(SimpleNamespace(attacks=cells, device="cpu"), object(), object(), tmp_path / "rec.json", False, {})
    assert out["pia"]["status"] == "failed" and out["pia"]["reason"] == "non-finite value(s) ['auc_forget']"


def test_non_finite_attack_values_are_named():
    from benchmark.runner import _non_finite

    values = {"auc": {"value": float("nan")}, "asr": {"value": 0.5, "ci": [0.1, float("inf")]},
              "ok": {"value": 0.5, "ci": [0.4, 0.6]}, "none": {"value": None}}
    assert _non_finite(values) == ["auc", "asr"]
