"""Wall time of the smoke and quick tiers with a per-stage breakdown → docs/performance.md.

Usage:  python perf/run_perf.py [--scenarios mnist-class,mnist-text-object,mnist-text-style]
        [--tiers smoke,quick] [--device cpu] [--methods M,...] [--attacks A,...|none] [--out docs/performance.md]
        [--skip-cost-ratios] [--keep DIR]
        python perf/run_perf.py --from-records DIR [--seed 0]   # the tables of shipped records, no rerun

Each tier runs in a fresh cache (cold: the original model's samples and the FID reference features
are computed, as on a user's first run) and writes its records to a temp folder. Targets: smoke ≤ 2 min;
quick ≤ 15 min for the whole embedded leaderboard (all ten methods) on 2 CPU cores. Then the cost of
SA, SalUn and EraseDiff at their default budgets (perf/cost_ratios.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

TARGETS_S = {"smoke": 120, "quick": 900}
MANUAL = "<!-- kept by perf/run_perf.py: everything below is maintained by hand -->"


def run_tier(tier: str, device: str, methods: list[str] | None, keep: Path | None = None,
             scenario: str = "mnist-class", attacks: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UNLEARNBENCH_CACHE"] = str(Path(tmp) / "cache")
        from benchmark import runner
        from benchmark.results import load_records

        t0 = time.time()
        results = (keep / scenario / tier if scenario != "mnist-class" else keep / tier) if keep else Path(tmp) / "results"
        plan = runner.plan(scenario, methods, None, tier, 0, device, results, attacks=attacks)
        runner.execute(plan, show_progress=False, force=True, log=lambda *_: None)
        wall = time.time() - t0
        r = from_records(load_records(results), [m.name for m in plan.cells])
    return {"tier": tier, "scenario": scenario, "wall_s": wall, **r, "setup_s": wall - sum(x["total"] for x in r["rows"])}


def from_records(records: list[dict], order: list[str]) -> dict:
    """Per-method stage times and per-attack costs of ``records`` (one seed), in the order of ``order``
    (the run's method order: its first method pays for the reference models' attacks)."""
    rows, attack_rows = [], []
    for rec in records:
        t = rec["timings"]
        rows.append({"method": rec["method"]["name"], "steps": rec["compute"]["steps"], "attacks": 0.0, **t,
                     "total": sum(t.values())})
        for name, entry in (rec.get("attacks") or {}).items():
            c = entry.get("cost") or {}
            attack_rows.append({"method": rec["method"]["name"], "attack": name, "status": entry["status"],
                                "seconds": c.get("seconds", 0.0), "forward": c.get("forward_images", 0),
                                "backward": c.get("backward_images", 0)})
    rank = {m: i for i, m in enumerate(order)}
    rows.sort(key=lambda r: rank.get(r["method"], len(rank)))
    attack_rows.sort(key=lambda r: rank.get(r["method"], len(rank)))
    return {"rows": rows, "attack_rows": attack_rows}


def records_markdown(folder: Path, seed: int) -> str:
    """The stage and attack-cost tables of a shipped records folder (one seed), without re-running it:
    ``python perf/run_perf.py --from-records docs/records/mnist-text-object-v3-quick --seed 0``."""
    from benchmark.results import load_records
    from benchmark.scenarios import load_scenario

    records = [r for r in load_records(folder) if r["seed"] == seed]
    if not records:
        raise SystemExit(f"run_perf: no records of seed {seed} in {folder}")
    scenario, tier = records[0]["scenario"]["name"], records[0]["scenario"]["tier"]
    r = {"tier": tier, "scenario": scenario,
         **from_records(records, list(load_scenario(scenario).default_methods))}
    total = sum(x["total"] for x in r["rows"])
    attacks = sum(x["attacks"] for x in r["rows"])
    lines = [f"`{folder}`, seed {seed}: {len(r['rows'])} methods, {total:.0f} s of cells "
             f"({attacks:.0f} s of it attacks; loading not included)", "", *stage_table(r["rows"])]
    return "\n".join(lines + [""] + attack_cost_markdown(r))


def stage_table(rows: list[dict]) -> list[str]:
    """Markdown rows of per-method stage times (header included)."""
    lines = ["| method | steps | unlearn s | sampling s | metrics s | attacks s | total s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['steps']} | {row['unlearn']:.1f} | {row['sampling']:.1f} | "
                     f"{row['metrics']:.1f} | {row['attacks']:.1f} | {row['total']:.1f} |")
    return lines


def attack_cost_markdown(r: dict) -> list[str]:
    """Per-attack cost over all methods of a tier: the first method also pays for the reference models
    (original and oracle), whose scores are cached for the rest of the run."""
    import pandas as pd

    if not r.get("attack_rows"):
        return []
    df = pd.DataFrame(r["attack_rows"])
    first = df["method"].iloc[0]
    lines = [f"Attack cost, {r['tier']} tier (UNet image passes and wall time per attacked model; the first "
             f"model, `{first}`, also pays for scoring the original and the oracle, cached afterwards):", "",
             "| attack | first model s | later models s (mean) | k-img fwd (later, mean) | k-img bwd (later, mean) "
             "| total s | not ok |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, g in df.groupby("attack", sort=False):
        later = g[g.method != first]
        lines.append(f"| {name} | {g[g.method == first].seconds.sum():.1f} | {later.seconds.mean():.1f} | "
                     f"{later.forward.mean() / 1e3:.1f} | {later.backward.mean() / 1e3:.1f} | {g.seconds.sum():.1f} | "
                     f"{int((g.status != 'ok').sum())} |")
    return lines + [""]


def markdown(results: list[dict], device: str) -> str:
    import torch

    lines = [
        "# Performance",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python perf/run_perf.py` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device `{device}`. Cold cache: every run computes the "
        "original model's samples and the FID reference features once.",
        "",
    ]
    for r in results:
        target = TARGETS_S.get(r["tier"])
        verdict = "" if target is None else (f" — target ≤ {target / 60:.0f} min: "
                                             f"{'met' if r['wall_s'] <= target else 'MISSED'}")
        where = "" if r.get("scenario", "mnist-class") == "mnist-class" else f"{r['scenario']}, "
        lines += [f"## {where}{r['tier']} tier: {r['wall_s']:.0f} s wall{verdict}", "", *stage_table(r["rows"])]
        lines += [f"| (loading models, data, judge) | | | | | | {r['setup_s']:.1f} |", ""]
        lines += attack_cost_markdown(r)
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="mnist-class", help="comma-separated scenario names")
    ap.add_argument("--tiers", default="smoke,quick")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default=None, help="comma-separated; default: the scenario's list")
    ap.add_argument("--attacks", default=None,
                    help="comma-separated, or 'none' (e.g. while a card's oracle is not shipped); default: the card's")
    ap.add_argument("--skip-cost-ratios", action="store_true", help="skip the default-budget cost ratios")
    ap.add_argument("--keep", type=Path, default=None, help="keep each tier's records in KEEP/<tier>")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "performance.md")
    ap.add_argument("--from-records", type=Path, default=None,
                    help="print the tables of an existing records folder (one --seed) instead of running")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.from_records is not None:
        print(records_markdown(args.from_records, args.seed))
        return
    methods = args.methods.split(",") if args.methods else None
    attacks = None if args.attacks is None else [a for a in args.attacks.split(",") if a and a != "none"]
    results = []
    for scenario in args.scenarios.split(","):
        for tier in args.tiers.split(","):
            r = run_tier(tier, args.device, methods, args.keep, scenario, attacks)
            print(json.dumps({"scenario": scenario, "tier": tier, "wall_s": round(r["wall_s"], 1)}))
            results.append(r)
    from benchmark.atomic import write_text_atomic

    text = markdown(results, args.device)
    if not args.skip_cost_ratios:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import cost_ratios

        ratios = cost_ratios.cost_ratios(args.device)
        print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "budget"} for k, v in ratios.items()
                          if k != "phases"}, default=float))
        text += "\n" + cost_ratios.markdown(ratios, args.device)
    if args.out.is_file() and MANUAL in args.out.read_text():
        text += "\n" + MANUAL + args.out.read_text().split(MANUAL, 1)[1]  # keep hand-kept sections
    write_text_atomic(args.out, text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
