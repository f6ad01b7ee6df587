"""The one loop: scenario → method → unlearned model → samples → metrics → record.

``plan`` validates every input (scenario, tier, forget class, method names and their configs)
before anything is computed, so bad input fails in a second with one clear line. ``execute`` then
runs each cell, writes its record atomically, and skips cells whose record already exists with the
same scenario hash and resolved config (so an interrupted run resumes; ``force`` recomputes).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import UnlearnbenchError
from benchmark.registry import ATTACKS, METHODS, METRICS
from benchmark.results import environment, new_record, record_filename, write_record
from benchmark.scenarios import Scenario, load_scenario


@dataclass
class MethodCell:
    name: str
    cls: type
    config: Any


@dataclass
class RunPlan:
    scenario: Scenario
    tier: str
    target: Any  # the forget target, normalised by the scenario's setup (a class id, a concept)
    seed: int
    device: str
    out_dir: Path
    cells: list[MethodCell] = field(default_factory=list)
    attacks: list[MethodCell] = field(default_factory=list)
    max_steps: int | None = None  # caps every method's optimiser steps (check-method's smoke run)

    @property
    def forget_class(self) -> Any:
        """The forget target (named for the class track; kept for older callers)."""
        return self.target


def plan(scenario: str = "mnist-class", methods: list[str] | None = None, forget_class: Any = None,
         tier: str = "quick", seed: int = 0, device: str = "cpu", out_dir: str | Path = "results",
         attacks: list[str] | None = None, target: Any = None) -> RunPlan:
    """Validate everything and return the run; ``attacks`` None = the card's list, [] = none.

    ``target`` (or, for the class track, ``forget_class``) is the forget target; None = the card's."""
    from benchmark.scenarios.setup import setup_class

    sc = load_scenario(scenario)
    sc.tier(tier)
    tgt = setup_class(sc).check_target(sc, target if target is not None else forget_class)
    _check_device(device)
    if seed < 0:
        raise UnlearnbenchError(f"seed must be a non-negative integer, got {seed}")
    names = list(methods) if methods else list(sc.default_methods)
    if not names:
        raise UnlearnbenchError("no methods to run: pass --methods or set default_methods in the scenario card")
    if len(set(names)) != len(names):
        raise UnlearnbenchError(f"duplicate method names in {names}")
    run = RunPlan(sc, tier, tgt, seed, device, Path(out_dir))
    for name in names:
        cls = METHODS.get(name)
        try:
            config = cls.make_config(sc.method_config(tier, name)) if hasattr(cls, "make_config") else None
            cls(config).check_track(sc.track)
        except (TypeError, ValueError) as exc:
            raise UnlearnbenchError(f"method {name!r}: {exc}") from exc
        run.cells.append(MethodCell(name, cls, config))
    for metric in sc.metrics:
        METRICS.get(metric)
    for name in (list(sc.attacks) if attacks is None else list(attacks)):
        cls = ATTACKS.get(name)
        if sc.track not in getattr(cls, "tracks", {"class"}):
            raise UnlearnbenchError(f"attack {name!r} does not support the {sc.track} track")
        try:
            config = cls.make_config(sc.attack_config(tier, name))
        except (TypeError, ValueError) as exc:
            raise UnlearnbenchError(f"attack {name!r}: {exc}") from exc
        run.attacks.append(MethodCell(name, cls, config))
    return run


def _check_device(device: str) -> None:
    import torch

    if device == "cpu":
        return
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UnlearnbenchError(f"--device {device}: CUDA is not available on this machine")
        return
    raise UnlearnbenchError(f"unknown device {device!r}: use cpu or cuda[:N]")


def _config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}


def _existing(path: Path, sc: Scenario, cell: MethodCell, attacks: list[MethodCell]) -> bool:
    if not path.is_file():
        return False
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    wanted = {a.name: json.loads(json.dumps(_config_dict(a.config))) for a in attacks}
    have = {name: entry.get("config") for name, entry in (rec.get("attacks") or {}).items()
            if entry.get("status") != "failed"}
    return (rec.get("scenario", {}).get("config_hash") == sc.config_hash
            and rec.get("method", {}).get("config") == json.loads(json.dumps(_config_dict(cell.config)))
            and all(have.get(name) == config for name, config in wanted.items()))


def _previous_attacks(path: Path, sc: Scenario, fingerprint: str, rerun: list[MethodCell]) -> dict[str, Any]:
    """Attack entries of an earlier record of the same model that this run does not redo (kept, not lost)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if (rec.get("model", {}).get("fingerprint") != fingerprint
            or rec.get("scenario", {}).get("config_hash") != sc.config_hash):
        return {}
    redo = {a.name for a in rerun}
    return {name: entry for name, entry in (rec.get("attacks") or {}).items() if name not in redo}


class _Bar:
    """A tqdm bar fed by a method's progress(step, total, stats) callback."""

    def __init__(self, desc: str, enabled: bool):
        self.desc, self.enabled, self.bar = desc, enabled, None

    def __call__(self, step: int, total: int, stats: dict[str, float]) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, leave=False, unit="step")
        self.bar.update(step - self.bar.n)
        if step % 10 == 0 or step == total:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in list(stats.items())[:4]}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _print(msg: str) -> None:
    print(msg, flush=True)


ORIGINAL_DRAW_SEED_OFFSET = 1_000_003  # the original's reference draw for FID-to-original uses seed + this


def execute(run: RunPlan, show_progress: bool = True, force: bool = False, log=_print) -> list[Path]:
    from tqdm.auto import tqdm

    from benchmark import cost, zoo
    from benchmark.scenarios.setup import setup_for

    sc = run.scenario
    setup = setup_for(sc, run.target, run.device, log)
    base = setup.base
    base_fp = base.fingerprint()
    judge = setup.judge
    cache = zoo.cache_dir()
    attack_ctx = setup.attack_context(run.tier, run.seed) if run.attacks else None
    original_draw = None  # the original model's samples at another seed, for FID-to-original (lazy)
    written = []
    for cell in run.cells:
        path = run.out_dir / record_filename(sc.name, setup.target_tag, cell.name, run.seed, run.tier)
        if not force and _existing(path, sc, cell, run.attacks):
            log(f"[{cell.name}] record exists, skipped (use --force to recompute): {path}")
            written.append(path)
            continue
        method = cell.cls(cell.config)
        bar = _Bar(f"unlearn {cell.name}", show_progress)
        request = setup.request(run.seed, run.device, progress=bar, max_steps=run.max_steps)
        timings: dict[str, float] = {}
        try:
            with cost.measure(run.device) as meter:
                outcome = method.unlearn(base, request)
        finally:
            bar.close()
        timings["unlearn"] = meter.seconds
        model = outcome.model.to(run.device).eval()
        fp = model.fingerprint()
        t0 = time.time()
        samples = setup.sample(model, run.tier, run.seed, fp, cache, show_progress, f"sample {cell.name}")
        timings["sampling"] = time.time() - t0
        grid = setup.save_grid(samples, path.with_suffix(".png"))
        t0 = time.time()
        ctx = setup.eval_context(run.tier, samples, cache)
        if "fidelity" in sc.metrics:
            if original_draw is None:
                original_draw = setup.sample(base, run.tier, run.seed + ORIGINAL_DRAW_SEED_OFFSET, base_fp, cache,
                                             show_progress, "sample original (reference draw)")
            ctx.original_samples = original_draw
        values = {}
        for metric_name in tqdm(sc.metrics, desc=f"metrics {cell.name}", leave=False, disable=not show_progress):
            for v in METRICS.get(metric_name)().compute(ctx):
                values[v.name] = v.to_dict()
        timings["metrics"] = time.time() - t0
        attack_results = {**_previous_attacks(path, sc, fp, run.attacks),
                          **_run_attacks(run, attack_ctx, model, path, show_progress, timings)}
        record = new_record(
            scenario={"name": sc.name, "version": sc.version, "config_hash": sc.config_hash, "track": sc.track,
                      "tier": run.tier, **setup.record_fields(run.tier)},
            seed=run.seed,
            method={"name": cell.name, "class": f"{cell.cls.__module__}:{cell.cls.__qualname__}",
                    "origin": METHODS.origin(cell.name), "paper": getattr(cell.cls, "paper", ""),
                    "config": _config_dict(cell.config)},
            model={"base_fingerprint": base_fp, "fingerprint": fp, "changed": fp != base_fp},
            compute={"steps": outcome.steps, "unlearn_seconds": round(meter.seconds, 3), **meter.to_dict()},
            timings={k: round(v, 3) for k, v in timings.items()},
            judges={judge.label: judge.sha256},
            metrics=values,
            method_stats=outcome.stats,
            attacks=attack_results,
            artifacts={"sample_grid": grid.name},
            environment=environment(run.device),
        )
        write_record(record, path)
        written.append(path)
        log(f"[{cell.name}] {setup.summary(values)}, unlearn {timings['unlearn']:.1f}s, "
            f"sample {timings['sampling']:.1f}s{_attack_summary(attack_results, timings)} → {path}")
    return written


def _attack_summary(results: dict[str, Any], timings: dict[str, float]) -> str:
    if "attacks" not in timings:
        return ""
    bad = [f"{name} {entry['status']}: {entry['reason']}" for name, entry in results.items() if entry["status"] != "ok"]
    return f", attacks {timings['attacks']:.1f}s ({len(results) - len(bad)} ok{'; ' + '; '.join(bad) if bad else ''})"


def attack_context(sc: Scenario, tier: str, forget_class: Any = None, seed: int = 0, device: str = "cpu",
                   log: Any = _print, target: Any = None) -> Any:
    """The AttackContext of a scenario cell: its data, judge, budget and the original and oracle models
    (the oracle from the zoo or the cache; without it, gaps to the oracle are omitted and a note is logged)."""
    from benchmark.scenarios.setup import setup_for

    return setup_for(sc, target if target is not None else forget_class, device, log).attack_context(tier, seed)


def _run_attacks(run: RunPlan, ctx: Any, model: Any, record_path: Path, show_progress: bool,
                 timings: dict[str, float]) -> dict[str, Any]:
    """Run every planned attack on ``model``; per-item rows go to ``<record>.attacks/<attack>.csv``."""
    import pandas as pd
    from tqdm.auto import tqdm

    from benchmark import cost
    from benchmark.api import AttackResult
    from benchmark.atomic import write_text_atomic

    out: dict[str, Any] = {}
    if ctx is None:
        return out
    t0 = time.time()
    for cell in tqdm(run.attacks, desc="attacks", leave=False, disable=not show_progress):
        attack = cell.cls(cell.config)
        with cost.measure(run.device) as meter:
            try:
                result = attack.run(model, ctx)
            except Exception as exc:  # noqa: BLE001 - one broken attack must not lose the record
                result = AttackResult("failed", reason=f"{type(exc).__name__}: {exc}")
        entry = result.to_dict()
        entry["config"] = _config_dict(cell.config)
        entry["cost"] = meter.to_dict()
        if result.per_item:
            item_path = record_path.with_suffix(".attacks") / f"{cell.name}.csv"
            write_text_atomic(item_path, pd.DataFrame(result.per_item).to_csv(index=False))
            entry["per_item_file"] = f"{item_path.parent.name}/{item_path.name}"
        out[cell.name] = entry
    timings["attacks"] = time.time() - t0
    return out
