"""Choose a tier's per-method learning rates by a written rule on a *validation* target, never the reported one.

Usage:  python perf/select_budgets.py [--scenario mnist-class] [--out docs/budget_selection_points]
        [--methods finetune,neggrad,...] [--doc docs/budget_selection.md]

The scenario card's ``budget_selection`` block fixes everything in advance: the tier, the validation
forget target (not the card's reported one), the validation seeds (not the reported seeds 0, 1, 2), the
grid (multiples of each method's paper lr, at the tier's fixed step budget) and the rule. Every method is
unlearnt on the validation target at each grid point and seed; its samples (``samples_per_class`` per
condition, the tier's DDIM steps and guidance) are judged by the card's judge metric only (forget and
retain accuracy — no FID, no attack, nothing the leaderboard reports on the reported target). The rule
then picks one lr per method. Each finished grid point is saved under ``--out`` at once, so a re-run
continues where it stopped (the default folder is committed with the doc: the raw points are the doc's
evidence, and a grid of hours of CPU survives the session that started it); the table of every grid point and the choices go to ``--doc``. The card's
tier is then edited by hand to the chosen values (its comment points here).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any


def grid_rows(sc: Any, sel: dict[str, Any], methods: list[str], out: Path) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    from benchmark import zoo
    from benchmark.registry import METHODS, METRICS
    from benchmark.scenarios.setup import setup_for

    tier = sel["tier"]
    spec = sc.tier(tier)
    small = dataclasses.replace(spec, samples_per_class=int(sel.get("samples_per_class", spec.samples_per_class)))
    scv = dataclasses.replace(sc, tiers={**sc.tiers, tier: small})
    setup = setup_for(scv, sel["validation_target"], "cpu", log=lambda *_: None)
    judge_metric = "classifier" if "classifier" in sc.metrics else "concept"
    jobs = [(m, mult, seed) for m in methods for mult in sel["lr_multipliers"] for seed in sel["validation_seeds"]]
    rows = []
    for m, mult, seed in tqdm(jobs, desc="budget selection", unit="run"):
        cls = METHODS.get(m)
        overrides = dict(sc.method_config(tier, m))
        path = out / grid_point_name(m, mult, seed, overrides)
        if path.is_file():
            rows.append(json.loads(path.read_text()))
            continue
        paper_lr = cls.Config().lr
        overrides["lr"] = paper_lr * mult
        method = cls(cls.make_config(overrides))
        t0 = time.time()
        model = method.unlearn(setup.base, setup.request(seed, "cpu")).model.eval()
        samples = setup.sample(model, tier, seed, model.fingerprint(), zoo.cache_dir(), False, m)
        values = {v.name: v.value for v in METRICS.get(judge_metric)().compute(setup.eval_context(tier, samples, None))}
        row = {"method": m, "lr_multiplier": mult, "lr": paper_lr * mult, "seed": seed,
               "forget_accuracy": values["forget_accuracy"], "retain_accuracy": values["retain_accuracy"],
               "n_forget_samples": small.samples_per_class, "seconds": round(time.time() - t0, 1)}
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(row))
        tmp.replace(path)
        rows.append(row)
    return rows


def grid_point_name(method: str, mult: float, seed: int, config: dict[str, Any]) -> str:
    """File name of one grid point: the method's tier config (all but lr) is part of it, so editing the card's
    config (e.g. a λ) recomputes the point instead of reusing a stale one."""
    rest = {k: v for k, v in config.items() if k != "lr"}
    key = hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{method}__x{mult}__seed{seed}__{key}.json"


def choose(rows: list[dict[str, Any]], sel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rule: the smallest lr whose mean validation forget accuracy ≤ ``forget_at_most`` while mean retain
    accuracy ≥ ``retain_at_least``; otherwise the lr with the lowest forget accuracy among those keeping
    retain accuracy ≥ ``retain_at_least``; otherwise the paper lr (multiplier 1)."""
    import pandas as pd

    df = pd.DataFrame(rows).groupby(["method", "lr_multiplier", "lr"], as_index=False)[
        ["forget_accuracy", "retain_accuracy"]].mean()
    chosen = {}
    for m, g in df.groupby("method"):
        g = g.sort_values("lr")
        safe = g[g.retain_accuracy >= sel["retain_at_least"]]
        good = safe[safe.forget_accuracy <= sel["forget_at_most"]]
        if len(good):
            pick, why = good.iloc[0], "smallest lr that forgets and keeps the rest"
        elif len(safe):
            pick, why = safe.sort_values(["forget_accuracy", "lr"]).iloc[0], "lowest forget acc keeping the rest"
        else:
            pick, why = g[g.lr_multiplier == 1].iloc[0], "no lr keeps the rest: paper lr"
        chosen[m] = {"lr": float(pick.lr), "lr_multiplier": pick.lr_multiplier, "why": why}
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="mnist-class")
    ap.add_argument("--methods", default=None, help="comma-separated (default: the block's list)")
    ap.add_argument("--out", default="docs/budget_selection_points")
    ap.add_argument("--doc", default="docs/budget_selection.md")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 2))
    from benchmark.scenarios import load_scenario

    sc = load_scenario(args.scenario)
    sel = sc.raw.get("budget_selection")
    if not sel:
        raise SystemExit(f"unlearnbench: error: scenario {sc.name!r} has no budget_selection block")
    methods = args.methods.split(",") if args.methods else list(sel["methods"])
    rows = grid_rows(sc, sel, methods, Path(args.out) / f"{sc.name}-v{sc.version}")
    chosen = choose(rows, sel)

    import pandas as pd

    df = pd.DataFrame(rows).sort_values(["method", "lr", "seed"])
    df["lr"] = df["lr"].map("{:.0e}".format)
    for col in ("forget_accuracy", "retain_accuracy"):
        df[col] = df[col].map("{:.3f}".format)
    lines = [f"## {sc.name} v{sc.version}, tier {sel['tier']}: validation target {sel['validation_target']}, "
             f"seeds {sel['validation_seeds']}",
             "", f"Rule: {' '.join(sel['rule'].split())}", "",
             f"Grid: lr = paper lr × {sel['lr_multipliers']} at the tier's step budget; "
             f"{sel.get('samples_per_class')} samples per condition; judged forget / retain accuracy only. "
             f"Measured {time.strftime('%Y-%m-%d')} by `python perf/select_budgets.py --scenario {sc.name}`.",
             "", df.to_markdown(index=False, disable_numparse=True), "", "| method | chosen lr | × paper lr | why |",
             "| --- | ---: | ---: | --- |"]
    lines += [f"| {m} | {c['lr']:.0e} | {c['lr_multiplier']} | {c['why']} |" for m, c in sorted(chosen.items())]
    text = "\n".join(lines) + "\n"
    doc = Path(args.doc)
    old = doc.read_text() if doc.is_file() else "# Budget selection (validation target, never the reported one)\n\n"
    head = f"## {sc.name} v{sc.version}, tier {sel['tier']}"
    blocks = old.split("\n## ")  # the title, then one block per scenario (its "## " heading split off)
    kept = "\n## ".join([blocks[0]] + [b for b in blocks[1:] if not ("## " + b).startswith(head)])
    from benchmark.atomic import write_text_atomic

    doc.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(doc, kept.rstrip() + "\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
