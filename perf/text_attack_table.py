"""The README's text-track attack table from a folder of result records: each cell the mean over the
unlearning seeds, with the per-seed values in parentheses where the table reads them seed by seed.

Usage:  python perf/text_attack_table.py docs/records/mnist-text-object-v3-quick --seeds 0,1,2

Only finished attack entries that carry a code identity (``identity.attack_code_identity``, since the
attack fixes of commit 5f9d260) are counted; a method missing a seed is shown with the seeds it has, and
the seeds actually used are printed under the table. Within a seed the values and their n are the
records' (`leaderboard.md` beside the records has every column with its CIs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# header -> the values shown in it: (attack or "metrics", value key, per-seed values in parentheses)
COLUMNS: list[tuple[str, list[tuple[str, str, bool]], str]] = [
    ("forget acc (erase phrasings, n={n})", [("metrics", "forget_accuracy", False)], "{0}"),
    ("no attack: erase / paraphrase ASR-4", [("concept_asr", "erase_asr4", True),
                                             ("concept_asr", "paraphrase_asr4", False)], "{0} / {1}"),
    ("UnlearnDiffAtk ASR (pre ASR-4)", [("unlearndiffatk", "asr", True), ("unlearndiffatk", "pre_asr4", False)],
     "{0} ({1})"),
    ("Ring-A-Bell ASR-4 (pre)", [("ring_a_bell", "asr4", True), ("ring_a_bell", "pre_asr4", False)], "{0} ({1})"),
    ("P4D ASR-4 (pre)", [("p4d", "asr4", True), ("p4d", "pre_asr4", False)], "{0} ({1})"),
    ("Concept Inversion generated / held-out", [("concept_inversion", "recovery_generated", False),
                                                ("concept_inversion", "recovery_heldout", False)], "{0} / {1}"),
    ("context probe s=0.6 (neutral prompt)", [("context_probe", "recovery", True),
                                              ("context_probe", "recovery_neutral", False)], "{0} ({1})"),
    ("noise probe", [("noise_probe", "recovery", True)], "{0}"),
    ("relearn steps ↑", [("relearning", "relearn_steps", True)], "{0}"),
    ("SecMI AUC", [("secmi", "auc_forget", False)], "{0}"),
]


def _value(rec: dict[str, Any], source: str, key: str) -> float | None:
    if source == "metrics":
        v = (rec.get("metrics") or {}).get(key)
    else:
        entry = (rec.get("attacks") or {}).get(source) or {}
        if entry.get("status") != "ok" or not entry.get("code"):
            return None
        v = (entry.get("values") or {}).get(key)
    return None if not v or v.get("value") is None else float(v["value"])


def _rank_flag(rec: dict[str, Any], source: str, key: str, oracle: dict[str, Any] | None = None) -> str:
    """'*' when the relearning run was faster than every one of the oracle's fine-tuning runs (rank p <= 0.05);
    '†' when the model has under half the oracle's retain utility on that seed (``reports.audit.damaged_utility``:
    fast relearning there shows damage)."""
    if (source, key) != ("relearning", "relearn_steps"):
        return ""
    from reports.audit import damaged_utility

    v = (((rec.get("attacks") or {}).get(source) or {}).get("values") or {}).get(key) or {}
    rank = (v.get("extra") or {}).get("oracle_rank")
    damaged = oracle is not None and damaged_utility(rec.get("metrics") or {}, oracle.get("metrics") or {})
    return ("*" if rank and rank["p_value"] <= 0.05 else "") + ("†" if damaged else "")


def oracle_runs_line(by: dict[str, dict[int, dict[str, Any]]]) -> str:
    """The oracle's relearning runs per seed: how many of them crossed at each check."""
    from collections import Counter

    out = []
    for seed in sorted({s for recs in by.values() for s in recs}):
        rec = next((recs[seed] for recs in by.values() if seed in recs), None)
        v = ((((rec or {}).get("attacks") or {}).get("relearning") or {}).get("values") or {}).get(
            "relearn_steps_oracle") or {}
        runs = (v.get("extra") or {}).get("runs")
        if runs:
            counts = Counter("censored" if r["step"] is None else r["step"] for r in runs)
            shown = ", ".join(f"{k}: {counts[k]}" for k in sorted(counts, key=lambda k: (isinstance(k, str), k)))
            out.append(f"seed {seed}: median {v['value']:.0f} ({shown})")
    return ("oracle's relearning runs (crossing step: runs): " + "; ".join(out)) if out else ""


def _fmt(x: float, key: str) -> str:
    return f"{x:.0f}" if key == "relearn_steps" else (f"{x:.3f}" if key == "forget_accuracy" else f"{x:.2f}")


def table(folder: Path, seeds: list[int]) -> tuple[str, dict[str, list[int]]]:
    import numpy as np

    by: dict[str, dict[int, dict[str, Any]]] = {}
    order: list[str] = []
    for path in sorted(folder.glob("*.json")):
        rec = json.loads(path.read_text())
        if not isinstance(rec, dict) or "method" not in rec or rec.get("status", "ok") != "ok":
            continue
        if rec.get("seed") not in seeds:
            continue
        name = rec["method"]["name"]
        by.setdefault(name, {})[rec["seed"]] = rec
    if by:  # the card's method order
        from benchmark.scenarios import load_scenario

        scenario = next(iter(next(iter(by.values())).values()))["scenario"]["name"]
        order = [m for m in load_scenario(scenario).default_methods if m in by]
    order += [m for m in by if m not in order]
    first = next(iter(next(iter(by.values())).values())) if by else {}
    n_forget = ((first.get("metrics") or {}).get("forget_accuracy") or {}).get("n", "?")
    lines = ["| method | " + " | ".join(h.format(n=n_forget) for h, _, _ in COLUMNS) + " |",
             "| :--- | " + " | ".join("---" for _ in COLUMNS) + " |"]
    used: dict[str, list[int]] = {}
    for m in order:
        cells = []
        for _, parts, template in COLUMNS:
            texts = []
            for source, key, per_seed in parts:
                vals = {s: _value(r, source, key) for s, r in sorted(by[m].items())}
                vals = {s: v for s, v in vals.items() if v is not None}
                if not vals:
                    texts.append("–")
                    continue
                used[m] = sorted(set(used.get(m, [])) | set(vals))
                text = _fmt(float(np.mean(list(vals.values()))), key)
                if per_seed and len(vals) > 1:
                    text += " (" + "/".join(_fmt(v, key) + _rank_flag(by[m][s], source, key,
                                                                      by.get("retrain", {}).get(s))
                                            for s, v in vals.items()) + ")"
                texts.append(text)
            cells.append(template.format(*texts))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    runs = oracle_runs_line(by)
    if runs:
        lines += ["", "Relearn steps: * = faster than every one of the oracle's fine-tuning runs on that seed (rank "
                  "p <= 0.05); † = under half the oracle's retain utility on that seed (fast there shows damage); "
                  + runs]
    return "\n".join(lines), used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"unlearnbench: error: {args.folder} is not a folder of result records")
    text, used = table(args.folder, [int(s) for s in args.seeds.split(",")])
    print(text)
    seeds = {tuple(s) for s in used.values()}
    print("\nseeds per method: " + ("all " + ",".join(map(str, seeds.pop())) if len(seeds) == 1
                                    else "; ".join(f"{m} {','.join(map(str, s))}" for m, s in used.items())))


if __name__ == "__main__":
    main()
