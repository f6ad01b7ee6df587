"""A smoke-tier grid in the local loop vs on a local 2-worker Dask cluster, and the thread cliff.

Usage:  python perf/grid_scaling.py [--seeds 0,1,2] [--workers 2] [--skip-threads]

1. Runs ``unlearnbench run --tier smoke --seeds … --attacks none`` (every default method of the class
   card) once with ``--executor local`` and once with ``--executor dask --workers N``, each in a fresh
   results folder and a fresh cache (both cold), and checks that the aggregated leaderboards (every
   metric's mean and interval across seeds, per method) are equal. Prints wall times and their ratio.
2. The thread cliff: the wall time of one BlindSpot smoke cell with 2 torch threads and with the
   thread count the CLI chooses, alone and beside one busy process (a 1-thread torch matmul loop).

Prints a markdown section for docs/performance.md (the hand-maintained part).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY = ("import torch; torch.set_num_threads(1); a = torch.randn(512, 512)\n"
        "while True: a = (a @ a).tanh()")


def cli(args: list[str], env: dict[str, str]) -> float:
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{res.stderr[-2000:]}")
    return time.time() - t0


def aggregated(folder: Path, digits: int | None = None):
    """Per (method, metric): mean over seeds and interval; rounded to ``digits`` significant digits if given."""
    import numpy as np

    from benchmark.results import load_records
    from reports.leaderboard import aggregate, groups, tidy

    out = {}
    for grp in groups(load_records(folder)):
        agg = aggregate(tidy(grp))
        agg = agg[~agg.metric.isin(["unlearn_seconds", "image_passes"])].sort_values(["method", "metric"])
        agg = agg.reset_index(drop=True)
        if digits is not None:
            for col in ("value", "ci_low", "ci_high"):
                v = agg[col].astype(float).to_numpy()
                with np.errstate(divide="ignore", invalid="ignore"):
                    mag = np.where(v == 0, 0, np.floor(np.log10(np.abs(v))))
                agg[col] = np.where(np.isfinite(v), np.round(v / 10 ** mag, digits - 1) * 10 ** mag, v)
        out[grp[0]["scenario"]["config_hash"]] = agg
    return out


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


def grid(seeds: str, workers: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = ["run", "--tier", "smoke", "--seeds", seeds, "--attacks", "none", "--no-progress"]
        env = {**os.environ}
        env.pop("OMP_NUM_THREADS", None)
        walls = {}
        runs = (("local", [], []), ("local1", ["--threads", "1"], []),
                ("dask", [], ["--executor", "dask", "--workers", str(workers)]))
        for name, pre, extra in runs:
            env["UNLEARNBENCH_CACHE"] = str(tmp / f"cache-{name}")
            walls[name] = cli([*pre, *base, "--out", str(tmp / name), *extra], env)
        exact_1 = same(aggregated(tmp / "local1"), aggregated(tmp / "dask"))
        exact_2 = same(aggregated(tmp / "local"), aggregated(tmp / "dask"))
        close_2 = same(aggregated(tmp / "local", 4), aggregated(tmp / "dask", 4))
        n_cells = len(list((tmp / "local").glob("*.json")))
    return [f"## Grids: local loop vs a local {workers}-worker Dask cluster",
            "",
            f"`python perf/grid_scaling.py` — `unlearnbench run --tier smoke --seeds {seeds} --attacks none` "
            f"(all {n_cells // len(seeds.split(','))} default methods of `mnist-class`, {n_cells} cells), cold cache each, "
            f"{os.cpu_count()} cores ({time.strftime('%Y-%m-%d')}).",
            "",
            "| executor | wall s |", "|---|---|",
            f"| local (one process, threads chosen by the CLI) | {walls['local']:.0f} |",
            f"| local (one process, `--threads 1`) | {walls['local1']:.0f} |",
            f"| dask, {workers} workers × 1 thread | {walls['dask']:.0f} |",
            "",
            f"Wall-time ratio dask / local: **{walls['dask'] / walls['local']:.2f}** (vs the 1-thread local loop: "
            f"{walls['dask'] / walls['local1']:.2f}). Aggregated leaderboards (per method and metric: mean over seeds "
            f"and 95% interval): dask vs the 1-thread local loop **{'bitwise equal' if exact_1 else 'DIFFER'}**; vs the "
            f"local loop at its own thread count {'bitwise equal' if exact_2 else 'not bitwise equal'}, "
            f"{'equal' if close_2 else 'DIFFERENT'} to 4 significant digits (torch's CPU reductions depend on the "
            "thread count).",
            ""]


def cell_seconds(threads: int | None, busy: bool) -> float:
    env = {**os.environ}
    env.pop("OMP_NUM_THREADS", None)
    with tempfile.TemporaryDirectory() as tmp:
        env["UNLEARNBENCH_CACHE"] = str(Path(tmp) / "cache")
        hog = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
        try:
            if busy:
                time.sleep(5)  # let the load average see it
            args = (["--threads", str(threads)] if threads else []) + [
                "run", "--tier", "smoke", "--methods", "blindspot", "--attacks", "none", "--no-progress",
                "--out", str(Path(tmp) / "r")]
            return cli(args, env)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()


def threads_section() -> list[str]:
    from benchmark.threads import available_cores

    rows = []
    for busy in (False, True):
        for threads in (available_cores(), None):
            rows.append((busy, threads, cell_seconds(threads, busy)))
    lines = ["## Thread counts: one BlindSpot smoke cell, alone and beside a busy process", "",
             "`python perf/grid_scaling.py` — wall seconds of `unlearnbench run --tier smoke --methods blindspot "
             "--attacks none` (process start, model loading, sampling and metrics included), cold cache; the busy "
             "process is a 1-thread torch matmul loop.", "",
             "| other process | threads | wall s |", "|---|---|---|"]
    for busy, threads, secs in rows:
        lines.append(f"| {'busy' if busy else 'none'} | {threads if threads else 'chosen by the CLI'} | {secs:.0f} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-threads", action="store_true")
    args = ap.parse_args()
    lines = grid(args.seeds, args.workers)
    if not args.skip_threads:
        lines += threads_section()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
