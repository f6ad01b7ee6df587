"""The one loop: scenario → method → unlearned model → samples → metrics → record.

``plan`` validates every input (scenario, tier, forget target, method names, their configs and ``--set``
overrides) before anything is computed, so bad input fails in a second with one clear line. ``execute``
then runs each cell and writes its record atomically. A stored record is reused only when its identity
(``benchmark.identity``: card hash, resolved config, step cap and the method's code) matches the cell's; a
stale one is recomputed and the log says why (``force`` recomputes everything). A cell whose method
raises, produces non-finite losses or weights, or runs past its step budget gets a record with
``status: failed`` and the reason, and the grid goes on; returning the input unchanged is a warning.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark import UnlearnbenchError
from benchmark.identity import (
    attack_code_identity,
    cell_key,
    code_identity,
    same_code,
    sources_at_commit_match,
)
from benchmark.registry import ATTACKS, METHODS, METRICS
from benchmark.results import environment, git_commit, new_record, record_filename, write_record
from benchmark.scenarios import Scenario, load_scenario

DEFAULT_SMOKE_MAX_STEPS = 4
"""Optimiser-step cap of a plug-in's smoke cell when neither the card nor the adapter declares a smoke
budget: the built-ins' smoke budget, so a plug-in's smoke tier is as cheap as theirs."""
MAX_SEED = 2**31  # run and audit seeds lie in [0, MAX_SEED)


@dataclass
class MethodCell:
    name: str
    cls: type
    config: Any
    budget: dict[str, Any] = field(default_factory=dict)  # where the config came from, and any overrides
    max_steps: int | None = None  # the harness's step cap for this cell (None: the config's own budget)

    @property
    def config_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(_config_dict(self.config), default=str))


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
    save_weights: bool = False  # keep each unlearned model beside its record (``<record>.weights/``, safetensors)
    base: Any = None  # a reference model replacing the card's base (audits); enters the records' identity

    @property
    def forget_class(self) -> Any:
        """The forget target (named for the class track; kept for older callers)."""
        return self.target

    def cap(self, cell: MethodCell) -> int | None:
        caps = [c for c in (self.max_steps, cell.max_steps) if c is not None]
        return min(caps) if caps else None


def resolve_method_config(sc: Scenario, tier: str, name: str, cls: type,
                          overrides: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any], int | None]:
    """The method's config at ``tier``: the card's budget, else the adapter's ``tier_budgets[tier]``, else
    its paper defaults (a plug-in's smoke cell is then capped at ``DEFAULT_SMOKE_MAX_STEPS``); ``overrides``
    (``run --set``) go on top. Returns (config, budget provenance for the record, step cap or None)."""
    card = sc.method_config(tier, name)
    declared = dict((getattr(cls, "tier_budgets", None) or {}).get(tier) or {})
    if card:
        values, source = card, "scenario card"
    elif declared:
        values, source = declared, "adapter tier_budgets"
    else:
        values, source = {}, "adapter defaults"
    values = {**values, **(overrides or {})}
    config = cls.make_config(values) if hasattr(cls, "make_config") else None
    cap = None
    if tier == "smoke" and source == "adapter defaults" and METHODS.origin(name) != "built-in":
        cap = DEFAULT_SMOKE_MAX_STEPS
    budget = {"source": source, "overrides": dict(overrides or {})}
    if cap is not None:
        budget["smoke_cap"] = cap
    return config, budget, cap


def plan(scenario: str = "mnist-class", methods: list[str] | None = None, forget_class: Any = None,
         tier: str = "quick", seed: int = 0, device: str = "cpu", out_dir: str | Path = "results",
         attacks: list[str] | None = None, target: Any = None,
         overrides: dict[str, dict[str, Any]] | None = None) -> RunPlan:
    """Validate everything and return the run; ``attacks`` None = the card's list, [] = none.

    ``target`` (or, for the class track, ``forget_class``) is the forget target; None = the card's.
    ``overrides`` maps method names to config values set on top of their tier budget (``run --set``)."""
    from benchmark.scenarios.setup import setup_class

    sc = load_scenario(scenario)
    sc.tier(tier)
    tgt = setup_class(sc).check_target(sc, target if target is not None else forget_class)
    _check_device(device)
    if not 0 <= seed < MAX_SEED:  # seeds are combined (seed·31 + salt, …) into torch generator seeds
        raise UnlearnbenchError(f"seed must be a non-negative integer below 2^31, got {seed}")
    names = [register_adapter(n) for n in methods] if methods else list(sc.default_methods)
    if not names:
        raise UnlearnbenchError("no methods to run: pass --methods or set default_methods in the scenario card")
    if len(set(names)) != len(names):
        raise UnlearnbenchError(f"duplicate method names in {names}")
    overrides = dict(overrides or {})
    stray = sorted(set(overrides) - set(names))
    if stray:
        raise UnlearnbenchError(f"--set names method(s) {stray} that this run does not include (methods: {names})")
    run = RunPlan(sc, tier, tgt, seed, device, Path(out_dir))
    for name in names:
        cls = METHODS.get(name)
        try:
            config, budget, cap = resolve_method_config(sc, tier, name, cls, overrides.get(name))
            cls(config).check_track(sc.track)
        except (TypeError, ValueError) as exc:
            raise UnlearnbenchError(f"method {name!r}: {exc}") from exc
        run.cells.append(MethodCell(name, cls, config, budget, cap))
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


def register_adapter(name_or_target: str) -> str:
    """A registered method name as is; an adapter given as ``path/to/file.py[:Class]`` or
    ``package.module:Class`` is loaded, registered under its ``name`` and that name returned."""
    if ":" not in name_or_target and not name_or_target.endswith(".py"):
        return name_or_target
    from benchmark.submission import load_adapter, method_name

    cls = load_adapter(name_or_target)
    name = method_name(cls)
    if name in METHODS:
        if METHODS.get(name) is not cls and METHODS.origin(name) != f"adapter {name_or_target}":
            raise UnlearnbenchError(f"method name {name!r} of {name_or_target} is already taken by "
                                    f"{METHODS.origin(name)}; set a different `name` on the class")
        METHODS.register(name, cls, origin=f"adapter {name_or_target}", overwrite=True)
        return name
    METHODS.register(name, cls, origin=f"adapter {name_or_target}")
    return name


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


@dataclass
class CellIdentity:
    """Everything that decides whether a stored record is this cell's (see ``benchmark.identity``)."""

    scenario_hash: str
    method: str
    config: dict[str, Any]
    max_steps: int | None
    code: dict[str, Any]
    base: str | None = None  # fingerprint of a reference model that replaced the card's base (else None)

    @property
    def key(self) -> str:
        config = self.config if self.base is None else {**self.config, "_base_fingerprint": self.base}
        return cell_key(self.scenario_hash, self.method, config, self.max_steps)


def cell_identity(run: RunPlan, cell: MethodCell) -> CellIdentity:
    base = run.base.fingerprint() if run.base is not None else None
    return CellIdentity(run.scenario.config_hash, cell.name, cell.config_dict, run.cap(cell), code_identity(cell.cls),
                        base)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def reuse_verdict(rec: dict[str, Any] | None, ident: CellIdentity, attacks: list[MethodCell]) -> str:
    """'' when ``rec`` may stand for this cell, else why not (to log)."""
    why = method_verdict(rec, ident)
    if why:
        return why
    stale = stale_attacks(rec, attacks)
    return f"attacks {stale} not in the record with this config and code" if stale else ""


def stale_attacks(rec: dict[str, Any] | None, attacks: list[MethodCell]) -> list[str]:
    """The planned attacks ``rec`` holds no usable result of: absent, failed, another config, or measured
    by other attack code (``identity.attack_code_identity``; an entry without a code identity is stale)."""
    have = (rec or {}).get("attacks") or {}
    out = []
    for a in attacks:
        entry = have.get(a.name) or {}
        code = entry.get("code") or {}
        if (entry.get("status") == "failed" or entry.get("config") != a.config_dict
                or not same_code(code, attack_code_identity(a.cls))):
            out.append(a.name)
    return out


def method_verdict(rec: dict[str, Any] | None, ident: CellIdentity) -> str:
    """'' when ``rec``'s unlearned model and metrics may stand for this cell (attacks aside), else why not."""
    if rec is None:
        return "no readable record"
    if rec.get("status", "ok") != "ok":
        return f"the stored record is {rec.get('status')} ({rec.get('failure', {}).get('reason', '')}); retrying"
    if rec.get("scenario", {}).get("config_hash") != ident.scenario_hash:
        return "the scenario card changed"
    method = rec.get("method", {})
    if method.get("config") != ident.config or (rec.get("compute") or {}).get("max_steps") != ident.max_steps:
        return "the method config or step cap changed"
    if ident.base is not None and (rec.get("model") or {}).get("base_fingerprint") != ident.base:
        return "the reference model changed"
    code = method.get("code") or {}
    if not same_code(code, ident.code) or code.get("version") != ident.code["version"]:
        return (f"stale: the method's code changed since the record (sources {str(code.get('source_sha256'))[:12]} "
                f"→ {ident.code['source_sha256'][:12]}, version {code.get('version')} → {ident.code['version']})")
    return ""


def _companions(path: Path) -> list[Path]:
    """A record's side files: its sample grid, its per-item attack folder and its saved weights."""
    return [path.with_suffix(".png"), path.with_suffix(".attacks"), path.with_suffix(".weights")]


def _remove(paths: list[Path]) -> None:
    """Delete files and folders among ``paths`` (missing ones are fine)."""
    for side in paths:
        shutil.rmtree(side, ignore_errors=True) if side.is_dir() else side.unlink(missing_ok=True)


def adopt_legacy(legacy: Path, path: Path, ident: CellIdentity, log: Any) -> bool:
    """Move a record written before records carried a code identity to its identity-keyed name, if it
    matches this cell and its method's sources at the record's commit equal today's (else leave it)."""
    rec = _read(legacy)
    if rec is None or (rec.get("method") or {}).get("code") is not None:
        return False
    commit = (rec.get("harness") or {}).get("commit")
    if not sources_at_commit_match(commit or "", ident.code):
        return False
    rec["method"]["code"] = {**ident.code, "verified": f"sources equal those at harness commit {commit} "
                             f"(working tree dirty at run time: {rec['harness'].get('dirty')})"}
    rec.setdefault("compute", {})["max_steps"] = None
    if reuse_verdict(rec, ident, []):
        return False
    write_record(rec, path)
    for old, new in zip(_companions(legacy), _companions(path)):
        if old.exists() and not new.exists():
            old.rename(new)
    legacy.unlink()
    log(f"[{ident.method}] adopted {legacy.name} (written before record identities) as {path.name}")
    return True


class NonFiniteLoss(RuntimeError):
    """Raised through a method's progress callback when a logged loss is NaN or infinite."""


class _Bar:
    """A tqdm bar fed by a method's progress(step, total, stats) callback; stops the run on a NaN/Inf stat."""

    def __init__(self, desc: str, enabled: bool):
        self.desc, self.enabled, self.bar = desc, enabled, None

    def __call__(self, step: int, total: int, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise NonFiniteLoss(f"{key} = {value} at step {step}")
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


class CellFailure(Exception):
    """A cell's method broke its contract; ``stage`` says where (unlearn, checks, evaluation)."""

    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def _check_outcome(outcome: Any, cell: MethodCell, cap: int | None) -> None:
    from benchmark.api import DiffusionModel, UnlearnOutcome

    if not isinstance(outcome, UnlearnOutcome) or not isinstance(outcome.model, DiffusionModel):
        raise CellFailure("checks", f"unlearn() returned {type(outcome).__name__}, not an UnlearnOutcome with a "
                                    "DiffusionModel")
    budget = cap if cap is not None else getattr(cell.config, "steps", None)
    if isinstance(budget, int) and outcome.steps > budget:
        raise CellFailure("checks", f"exceeded its budget: ran {outcome.steps} optimiser steps, budget {budget}")
    for name, module in outcome.model.modules().items():
        for pname, p in module.named_parameters():
            if not bool(p.detach().isfinite().all()):
                raise CellFailure("checks", f"non-finite weights in {name}.{pname}")


@dataclass
class _Shared:
    """What the cells of one plan share: the loaded setup, its attack context, the original's reference draw."""

    setup: Any
    base_fp: str
    cache: Path | None
    attack_cache: Path | None = None  # finished attack results on disk (None under --force: recompute them)
    attack_ctx: Any = None
    original_draw: Any = None
    failures: list[str] = field(default_factory=list)

    def attack_context(self, run: RunPlan) -> Any:
        """The plan's AttackContext, built once; finished attack results persist on disk across runs and
        audits (``attack_cache``; None under --force)."""
        if self.attack_ctx is None:
            self.attack_ctx = self.setup.attack_context(run.tier, run.seed)
            self.attack_ctx.cache_dir = self.attack_cache
        return self.attack_ctx


def execute(run: RunPlan, show_progress: bool = True, force: bool = False, log=_print,
            stop_on_failure: bool = False) -> list[Path]:
    """Run every cell of ``run``; return the record paths (failed cells included, ``status: failed``).
    ``stop_on_failure``: stop after the first failed cell (an audit needs all of its cells)."""
    from benchmark import zoo
    from benchmark.scenarios.setup import setup_for

    setup = setup_for(run.scenario, run.target, run.device, log)
    setup.tier, setup.show_progress = run.tier, show_progress
    if run.base is not None:
        setup.base = run.base.to(run.device)
    shared = _Shared(setup, setup.base.fingerprint(), zoo.cache_dir(), None if force else zoo.cache_dir())
    paths = []
    for cell in run.cells:
        paths.append(execute_cell(run, cell, shared, show_progress, force, log))
        if stop_on_failure and failed_cells(paths[-1:]):
            break
    return paths


def failed_cells(paths: list[Path]) -> list[str]:
    """One line per failed record among ``paths``: cell, stage and reason."""
    out = []
    for path in paths:
        rec = _read(path) or {}
        if rec.get("status", "ok") != "ok":
            f = rec.get("failure", {})
            out.append(f"{path.name}: {rec.get('method', {}).get('name')} failed in {f.get('stage')}: {f.get('reason')}")
    return out


def execute_cell(run: RunPlan, cell: MethodCell, shared: _Shared, show_progress: bool = True, force: bool = False,
                 log=_print) -> Path:
    sc, setup = run.scenario, shared.setup
    ident = cell_identity(run, cell)
    path = run.out_dir / record_filename(sc.name, setup.target_tag, cell.name, run.seed, run.tier, ident.key)
    legacy = run.out_dir / record_filename(sc.name, setup.target_tag, cell.name, run.seed, run.tier)
    if force and legacy.exists():  # recomputed under its identity: the old-style record of this cell goes
        old = _read(legacy) or {}
        if (old.get("scenario", {}).get("config_hash") == ident.scenario_hash
                and (old.get("method") or {}).get("config") == ident.config):
            _remove([legacy, *_companions(legacy)])
    if not force:
        if not path.exists() and legacy.exists():
            adopt_legacy(legacy, path, ident, log)
        if path.exists():
            rec = _read(path)
            why = reuse_verdict(rec, ident, run.attacks)
            if not why and run.save_weights and not path.with_suffix(".weights").is_dir():
                why = "--save-weights asks for the weights the stored record did not keep"
            if not why:
                log(f"[{cell.name}] record exists, skipped (use --force to recompute): {path}")
                return path
            if (rec is not None and not method_verdict(rec, ident) and path.with_suffix(".weights").is_dir()
                    and _attacks_only(run, cell, rec, path, shared, show_progress, log)):
                return path
            log(f"[{cell.name}] recomputing: {why}")
    timings: dict[str, float] = {}
    meter = None
    try:
        outcome, meter = _unlearn(run, cell, setup, show_progress)
        timings["unlearn"] = meter.seconds
        _check_outcome(outcome, cell, run.cap(cell))
        model = outcome.model.to(run.device).eval()
        fp = model.fingerprint()
        warnings = []
        if fp == shared.base_fp and cell.name != "original":
            warnings.append("the audited model's weights are identical to the reference's (the model before "
                            "unlearning)" if cell.name == "audited" else
                            "unlearn() returned weights identical to the input model")
            log(f"[{cell.name}] warning: {warnings[-1]}")
        values, attack_results, grid = _evaluate(run, cell, model, fp, path, shared, show_progress, timings)
        weights = _save_weights(model, path) if run.save_weights else None
    except KeyboardInterrupt:
        if not path.exists():  # side files (grid, attack rows) written before the record: none without it
            _remove(_companions(path))
        raise
    except Exception as exc:  # noqa: BLE001 - one broken method must not stop the grid
        stage = exc.stage if isinstance(exc, CellFailure) else ("unlearn" if "unlearn" not in timings else "evaluation")
        reason = exc.reason if isinstance(exc, CellFailure) else (
            f"non-finite loss: {exc}" if isinstance(exc, NonFiniteLoss) else f"{type(exc).__name__}: {exc}")
        record = _record(run, cell, ident, shared, status="failed", failure={"stage": stage, "reason": reason},
                         meter=meter, timings=timings)
        write_record(record, path)
        _remove(_companions(path))  # a failed cell keeps no side files of an earlier, different run
        log(f"[{cell.name}] FAILED in {stage}: {reason} → {path}")
        shared.failures.append(f"{cell.name}: {reason}")
        return path
    record = _record(run, cell, ident, shared, meter=meter, timings=timings, outcome=outcome, fp=fp, values=values,
                     attacks=attack_results, grid=grid, warnings=warnings, weights=weights)
    write_record(record, path)
    log(f"[{cell.name}] {setup.summary(values)}, unlearn {timings['unlearn']:.1f}s, "
        f"sample {timings['sampling']:.1f}s{_attack_summary(attack_results, timings)} → {path}")
    return path


def _attacks_only(run: RunPlan, cell: MethodCell, rec: dict[str, Any], path: Path, shared: _Shared,
                  show_progress: bool, log: Any) -> bool:
    """Run only the record's stale attacks on its saved weights (``<record>.weights/``) and update the record
    in place — the unlearned model, samples and metrics are kept, not recomputed. False (nothing written)
    when the saved weights cannot stand for the record (unreadable, or another fingerprint)."""
    from benchmark.models.loading import load_model

    stale = stale_attacks(rec, run.attacks)
    try:
        model, _ = load_model(str(path))
    except Exception as exc:  # noqa: BLE001 - then the cell is recomputed whole
        log(f"[{cell.name}] cannot load the saved weights ({exc}); recomputing the cell")
        return False
    model = model.to(run.device).eval()
    fp = model.fingerprint()
    if fp != (rec.get("model") or {}).get("fingerprint"):
        log(f"[{cell.name}] the saved weights are not the record's model (fingerprint); recomputing the cell")
        return False
    log(f"[{cell.name}] attacks {stale} stale or missing: running them on the saved weights (method, samples "
        "and metrics kept)")
    timings: dict[str, float] = {}
    subset = dataclasses.replace(run, attacks=[a for a in run.attacks if a.name in stale])
    fresh = _run_attacks(subset, shared.attack_context(run), model, path, show_progress, timings)
    rec["attacks"] = {**(rec.get("attacks") or {}), **fresh}
    rec.setdefault("timings", {})["attacks"] = round(sum(
        float((e.get("cost") or {}).get("seconds") or 0.0) for e in rec["attacks"].values()), 3)
    rec["attacks_updated"] = {"utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "attacks": stale, "harness": git_commit()}
    write_record(rec, path)
    log(f"[{cell.name}] {_attack_summary(fresh, timings).lstrip(', ')} → {path}")
    return True


def _unlearn(run: RunPlan, cell: MethodCell, setup: Any, show_progress: bool) -> tuple[Any, Any]:
    from benchmark import cost

    method = cell.cls(cell.config)
    bar = _Bar(f"unlearn {cell.name}", show_progress)
    request = setup.request(run.seed, run.device, progress=bar, max_steps=run.cap(cell))
    try:
        with cost.measure(run.device) as meter:
            outcome = method.unlearn(setup.base, request)
    finally:
        bar.close()
    return outcome, meter


def _evaluate(run: RunPlan, cell: MethodCell, model: Any, fp: str, path: Path, shared: _Shared,
              show_progress: bool, timings: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any], Path]:
    from tqdm.auto import tqdm

    sc, setup = run.scenario, shared.setup
    t0 = time.time()
    samples = setup.sample(model, run.tier, run.seed, fp, shared.cache, show_progress, f"sample {cell.name}")
    timings["sampling"] = time.time() - t0
    grid = setup.save_grid(samples, path.with_suffix(".png"))
    t0 = time.time()
    ctx = setup.eval_context(run.tier, samples, shared.cache)
    if any(getattr(METRICS.get(m), "needs_original_samples", False) for m in sc.metrics):
        if shared.original_draw is None:
            shared.original_draw = setup.sample(setup.base, run.tier, run.seed + ORIGINAL_DRAW_SEED_OFFSET,
                                                shared.base_fp, shared.cache, show_progress,
                                                "sample original (reference draw)")
        ctx.original_samples = shared.original_draw
    values = {}
    for metric_name in tqdm(sc.metrics, desc=f"metrics {cell.name}", leave=False, disable=not show_progress):
        for v in METRICS.get(metric_name)().compute(ctx):
            values[v.name] = v.to_dict()
    bad = [k for k, v in values.items() if v["value"] is not None and not math.isfinite(v["value"])]
    if bad:
        raise CellFailure("evaluation", f"non-finite metric value(s) {bad}")
    timings["metrics"] = time.time() - t0
    attack_results = {**_previous_attacks(path, sc, fp, run.attacks),
                      **_run_attacks(run, shared.attack_context(run) if run.attacks else None, model, path,
                                     show_progress, timings)}
    return values, attack_results, grid


def _record(run: RunPlan, cell: MethodCell, ident: CellIdentity, shared: _Shared, *, status: str = "ok",
            failure: dict[str, str] | None = None, meter: Any = None, timings: dict[str, float],
            outcome: Any = None, fp: str | None = None, values: dict[str, Any] | None = None,
            attacks: dict[str, Any] | None = None, grid: Path | None = None,
            warnings: list[str] | None = None, weights: Path | None = None) -> dict[str, Any]:
    sc, setup = run.scenario, shared.setup
    compute = {"steps": outcome.steps if outcome is not None else None, "max_steps": ident.max_steps,
               "unlearn_seconds": round(meter.seconds, 3) if meter is not None else None,
               **(meter.to_dict() if meter is not None else {"device": run.device})}
    record = new_record(
        status=status,
        identity=ident.key,
        scenario={"name": sc.name, "version": sc.version, "config_hash": sc.config_hash, "track": sc.track,
                  "tier": run.tier, **setup.record_fields(run.tier), **_overlay_fields(sc)},
        seed=run.seed,
        method={"name": cell.name, "class": f"{cell.cls.__module__}:{cell.cls.__qualname__}",
                "origin": METHODS.origin(cell.name), "paper": getattr(cell.cls, "paper", ""),
                "config": _config_dict(cell.config), "budget": cell.budget, "code": ident.code},
        model=({"base_fingerprint": shared.base_fp, "fingerprint": fp, "changed": fp != shared.base_fp}
               if fp is not None else {"base_fingerprint": shared.base_fp}),
        compute=compute,
        timings={k: round(v, 3) for k, v in timings.items()},
        judges={setup.judge.label: setup.judge.sha256},
        metrics=values or {},
        method_stats=outcome.stats if outcome is not None else {},
        attacks=attacks or {},
        artifacts={**({"sample_grid": grid.name} if grid is not None else {}),
                   **({"weights": weights.name} if weights is not None else {})},
        environment=environment(run.device),
    )
    if failure:
        record["failure"] = failure
    if warnings:
        record["warnings"] = warnings
    return record


def _save_weights(model: Any, path: Path) -> Path:
    """``model`` in diffusers format (safetensors) at ``<record>.weights/``, written whole or not at all."""
    import tempfile

    folder = path.with_suffix(".weights")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        model.save_pretrained(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _overlay_fields(sc: Scenario) -> dict[str, Any]:
    overlay = getattr(sc, "overlay", None)
    return {"overlay": overlay} if overlay else {}


def _previous_attacks(path: Path, sc: Scenario, fingerprint: str, rerun: list[MethodCell]) -> dict[str, Any]:
    """Attack entries of an earlier record of the same model that this run does not redo (kept, not lost)."""
    rec = _read(path)
    if (rec is None or rec.get("model", {}).get("fingerprint") != fingerprint
            or rec.get("scenario", {}).get("config_hash") != sc.config_hash):
        return {}
    redo = {a.name for a in rerun}
    return {name: entry for name, entry in (rec.get("attacks") or {}).items() if name not in redo}


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


def _non_finite(values: dict[str, Any]) -> list[str]:
    """Names of the attack values whose value or interval bound is NaN or infinite."""
    def bad(x: Any) -> bool:  # numbers.Real: a numpy float32 NaN too
        return isinstance(x, numbers.Real) and not isinstance(x, bool) and not math.isfinite(x)

    return [k for k, v in values.items() if bad(v.get("value")) or any(bad(c) for c in (v.get("ci") or []))]


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
        bad = _non_finite(entry.get("values") or {}) if result.status == "ok" else []
        if bad:  # a NaN AUC or ASR measured nothing: never compared, plotted or cached as a finding
            result = AttackResult("failed", reason=f"non-finite value(s) {bad}")
            entry = result.to_dict()
        if getattr(ctx, "judge_rule", ""):
            entry["conventions"] = {**entry["conventions"], "judge_rule": ctx.judge_rule}
        entry["config"] = cell.config_dict
        entry["code"] = attack_code_identity(cell.cls)
        entry["cost"] = meter.to_dict()
        if result.per_item:
            item_path = record_path.with_suffix(".attacks") / f"{cell.name}.csv"
            write_text_atomic(item_path, pd.DataFrame(result.per_item).to_csv(index=False))
            entry["per_item_file"] = f"{item_path.parent.name}/{item_path.name}"
        out[cell.name] = entry
    timings["attacks"] = time.time() - t0
    return out
