"""The on-disk attack cache: a later run reuses a finished result for the same weights, config and code,
recomputes on any change, never caches a result cut short, and never executes what a cache file holds."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from attacks import result_cache
from benchmark import cost
from benchmark.api import AttackBudget
from benchmark.conformance import tiny_attack_context, tiny_model
from benchmark.registry import ATTACKS


def _pia(**config):
    cls = ATTACKS.get("pia")
    return cls(cls.make_config({"include_all_classes": False, "batch_size": 8, **config}))


def _run(attack, model, cache_dir: Path | None, **ctx_kwargs):
    """One attack run in a fresh context (a new process, as far as the in-memory cache is concerned)."""
    ctx = tiny_attack_context(**ctx_kwargs)
    ctx.cache_dir = cache_dir
    with cost.measure("cpu") as meter:
        result = attack.run(model, ctx)
    return result, meter.forward_images


def test_a_second_run_reads_every_finished_result_from_disk_with_the_same_values(tmp_path):
    model = tiny_model(2)
    first, fwd_first = _run(_pia(), model, tmp_path)
    again, fwd_again = _run(_pia(), model, tmp_path)
    assert first.status == again.status == "ok"
    assert fwd_first > 0 and fwd_again == 0  # the model and both references: nothing scored again
    assert {k: v.value for k, v in again.values.items()} == {k: v.value for k, v in first.values.items()}
    # three models (attacked, original, oracle), one file each, under their weights' fingerprints
    assert len(list((tmp_path / "attacks").rglob("*.pt"))) == 3


@pytest.mark.parametrize("change", ["seed", "config", "weights", "forget_class"])
def test_any_change_to_what_makes_the_numbers_misses(tmp_path, change):
    model, attack, kwargs = tiny_model(2), _pia(), {}
    _run(attack, model, tmp_path)
    if change == "seed":
        kwargs["seed"] = 1
    elif change == "config":
        attack = _pia(batch_size=4)
    elif change == "weights":
        with torch.no_grad():
            next(next(iter(model.modules().values())).parameters()).add_(1e-3)
    else:
        kwargs["forget_class"] = 1
    _, fwd = _run(attack, model, tmp_path, **kwargs)
    assert fwd > 0


def test_a_code_change_misses(tmp_path, monkeypatch):
    model = tiny_model(2)
    _run(_pia(), model, tmp_path)
    monkeypatch.setattr(result_cache, "code_sha256", lambda: "another version of the attack code")
    _, fwd = _run(_pia(), model, tmp_path)
    assert fwd > 0


def test_without_a_cache_folder_nothing_is_written_and_results_stay_in_memory(tmp_path):
    _run(_pia(), tiny_model(2), None)
    assert not list(tmp_path.rglob("*.pt"))


def test_a_result_cut_short_by_its_budget_is_not_written(tmp_path):
    result, _ = _run(_pia(), tiny_model(2), tmp_path, budget=AttackBudget(max_forward_images=1))
    assert result.status == "failed"
    assert not list(tmp_path.rglob("*.pt"))


class _WritesAFile:
    def __reduce__(self):
        return (Path.write_text, (Path(_WritesAFile.target), "pwned"))


def test_a_tampered_cache_file_executes_nothing_and_is_recomputed(tmp_path):
    model = tiny_model(2)
    first, _ = _run(_pia(), model, tmp_path)
    files = list((tmp_path / "attacks").rglob("*.pt"))
    _WritesAFile.target = str(tmp_path / "pwned.txt")
    for f in files:
        f.write_bytes(pickle.dumps(_WritesAFile()))
    again, fwd = _run(_pia(), model, tmp_path)
    assert not (tmp_path / "pwned.txt").exists()
    assert fwd > 0 and again.values["auc_forget"].value == first.values["auc_forget"].value
    for f in files:  # overwritten with the recomputed result, readable again
        assert result_cache._load(f) is not None
