"""Leaderboard tables rendered from stored result records only (never re-running a model).

Records are grouped by what makes numbers comparable — scenario name, version and config hash,
tier and forget class — so a table never mixes incompatible versions. Within a group, one row per
method; every column names its metric, its direction (↑/↓) and n. With one seed a cell shows the
value and its 95% CI over samples (bootstrap); with k ≥ 2 seeds it shows the mean over seeds and the
95% Student-t interval across seeds (the unlearning run's own variability), and the caption says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark import UnlearnbenchError
from benchmark.atomic import write_text_atomic
from reports.audit import damaged_utility


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    higher_is_better: bool | None
    digits: int


COLUMNS: tuple[Column, ...] = (
    Column("forget_accuracy", "forget acc", False, 3),
    Column("forget_accuracy_paraphrase", "forget acc (paraphrase)", False, 3),
    Column("p_forgotten", "P(forgotten)", False, 3),
    Column("p_forgotten_digits", "P(forgotten ∣ digit)", False, 3),
    Column("forget_reject_rate", "not-a-digit", None, 2),
    Column("retain_accuracy", "retain acc", True, 3),
    Column("retain_accuracy_neighbours", "retain acc (neighbours)", True, 3),
    Column("retain_accuracy_others", "retain acc (others)", True, 3),
    Column("clip_score_retain", "CLIP score retained", True, 1),
    Column("clip_score_forget", "CLIP score forget", False, 1),
    Column("fid", "FID[{judge}]", False, 2),
    Column("fid_to_original", "FID-to-original[{judge}]", False, 2),
    Column("kid", "KID[{judge}]", False, 1),
)
METHOD_ORDER = ("original", "retrain", "finetune", "neggrad", "blindspot", "selective_amnesia", "salun",
                "esd-u", "esd-x", "uce", "erasediff", "erasediff-fixed",
                "erasediff-remap")


def _arrow(hib: bool | None) -> str:
    return "↑" if hib else ("↓" if hib is False else "")


def group_key(rec: dict[str, Any]) -> tuple:
    s = rec["scenario"]
    return (s["name"], s["version"], s["config_hash"], s["tier"], target_of(s))


def target_of(s: dict[str, Any]) -> Any:
    """The forget target of a record's scenario block (a class id, or a concept such as 'digit:0')."""
    return s.get("forget_target", s.get("forget_class"))


def tidy(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Long format: one row per (record, metric) with value, CI, n and direction."""
    rows = []
    for rec in records:
        s = rec["scenario"]
        base = {"scenario": s["name"], "version": s["version"], "config_hash": s["config_hash"], "tier": s["tier"],
                "forget_class": target_of(s), "method": rec["method"]["name"], "seed": rec["seed"]}
        for key, m in rec["metrics"].items():
            ci = m.get("ci") or [None, None]
            rows.append({**base, "metric": key, "value": m["value"], "ci_low": ci[0], "ci_high": ci[1], "n": m["n"],
                         "higher_is_better": m.get("higher_is_better"), "protocol": m.get("protocol", "")})
        rows.append({**base, "metric": "unlearn_seconds", "value": rec["compute"]["unlearn_seconds"], "ci_low": None,
                     "ci_high": None, "n": 1, "higher_is_better": False, "protocol": f"wall time on {rec['compute']['device']}"})
        rows.append({**base, "metric": "steps", "value": rec["compute"]["steps"], "ci_low": None, "ci_high": None,
                     "n": 1, "higher_is_better": None, "protocol": "optimiser steps"})
        c = rec["compute"]
        if "forward_images" in c:
            rows.append({**base, "metric": "image_passes", "value": c["forward_images"] + c["backward_images"],
                         "ci_low": None, "ci_high": None, "n": 1, "higher_is_better": False,
                         "protocol": "UNet image passes during unlearning: forward + backward, incl. one-off "
                                     "preparation (Fisher, replay sampling, proxy, saliency)"})
        for attack, entry in (rec.get("attacks") or {}).items():
            for key, m in (entry.get("values") or {}).items():
                ci = m.get("ci") or [None, None]
                rows.append({**base, "metric": f"{attack}.{key}", "value": m["value"], "ci_low": ci[0],
                             "ci_high": ci[1], "n": m["n"], "higher_is_better": m.get("higher_is_better"),
                             "protocol": m.get("protocol", "")})
    return pd.DataFrame(rows)


def _order(methods: Sequence[str]) -> list[str]:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(methods, key=lambda m: (rank.get(m.split(" [")[0], len(rank)), m))


def _variant(rec: dict[str, Any]) -> str:
    """What besides the method name makes a record's numbers: resolved config and step cap."""
    import json

    return json.dumps({"config": rec["method"].get("config"), "max_steps": rec["compute"].get("max_steps")},
                      sort_keys=True, default=str)


def label_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records whose method ran with more than one config in a table get row names that say which
    (``erasediff [lr=0.0001]``): rows are (method, config), never two configs averaged as one method."""
    import copy
    import json

    by_method: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in records:
        by_method.setdefault(rec["method"]["name"], {})[_variant(rec)] = json.loads(_variant(rec))
    out = []
    for rec in records:
        variants = by_method[rec["method"]["name"]]
        if len(variants) == 1:
            out.append(rec)
            continue
        mine = json.loads(_variant(rec))
        keys = sorted({k for v in variants.values() for k in (v["config"] or {})
                       if any((w["config"] or {}).get(k) != (mine["config"] or {}).get(k) for w in variants.values())})
        parts = [f"{k}={(mine['config'] or {}).get(k)}" for k in keys]
        if any(v["max_steps"] != mine["max_steps"] for v in variants.values()):
            parts.append(f"cap={mine['max_steps']}")
        rec = copy.deepcopy(rec)
        rec["method"]["name"] = f"{rec['method']['name']} [{', '.join(parts) or 'code differs'}]"
        out.append(rec)
    return out


def merge_folders(folders: Sequence[Sequence[dict[str, Any]]],
                  names: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The first folder's records plus those of later folders (shared baselines) that are comparable with
    one of its tables: same scenario name, version, config hash, tier and target, and the same judge. A
    record of a cell the first folder already has (same method, config and seed) is not merged. Returns
    (records, one line per record not merged, with the reason)."""
    primary = [dict(r, _source=names[0]) for r in folders[0]]
    tables = {group_key(r): r for r in primary}
    have = {(group_key(r), r["method"]["name"], _variant(r), r["seed"]) for r in primary}
    merged, refused = list(primary), []
    for recs, name in zip(folders[1:], names[1:]):
        for rec in recs:
            key = group_key(rec)
            label = f"{name}: {rec['method']['name']} seed {rec['seed']} ({key[0]} v{key[1]}, tier {key[3]})"
            if key not in tables:
                near = [k for k in tables if (k[0], k[3], k[4]) == (key[0], key[3], key[4])]
                reason = (f"card v{key[1]} config {key[2]} differs from {names[0]}'s v{near[0][1]} config {near[0][2]}"
                          if near else f"{names[0]} has no table of that scenario, tier and target")
                refused.append(f"{label}: {reason}")
            elif rec.get("judges") != tables[key].get("judges"):
                refused.append(f"{label}: judged by {rec.get('judges')}, {names[0]} by {tables[key].get('judges')}")
            elif (key, rec["method"]["name"], _variant(rec), rec["seed"]) in have:
                refused.append(f"{label}: {names[0]} already has this cell (its record is used)")
            else:
                have.add((key, rec["method"]["name"], _variant(rec), rec["seed"]))
                merged.append(dict(rec, _source=name))
    return merged, refused


def _fmt(value: float, lo: float | None, hi: float | None, digits: int, with_ci: bool) -> str:
    if value is None or pd.isna(value):
        return "–"
    text = f"{value:.{digits}f}"
    if with_ci and lo is not None and hi is not None and not pd.isna(lo):
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, metric): the mean over seeds; CI = the record's own CI for one seed, the
    95% t-interval across seeds for several (``interval`` says which)."""
    from benchmark.metrics.stats import seed_interval

    rows = []
    for (method, metric), g in df.groupby(["method", "metric"], sort=False):
        per_seed = g.groupby("seed").agg(value=("value", "mean"), ci_low=("ci_low", "mean"),
                                         ci_high=("ci_high", "mean"), n=("n", "max"))
        k = len(per_seed)
        if k >= 2:
            ci = seed_interval(per_seed["value"].to_numpy(dtype=float))
            lo, hi, kind = (ci[0], ci[1], "seeds") if ci else (None, None, "seeds")
        else:
            lo, hi, kind = per_seed["ci_low"].iloc[0], per_seed["ci_high"].iloc[0], "samples"
        rows.append({"method": method, "metric": metric, "value": float(per_seed["value"].mean()),
                     "ci_low": lo, "ci_high": hi, "n": per_seed["n"].max(), "seeds": k, "interval": kind})
    return pd.DataFrame(rows, columns=["method", "metric", "value", "ci_low", "ci_high", "n", "seeds", "interval"])


def table(records: Sequence[dict[str, Any]], with_ci: bool = True) -> pd.DataFrame:
    """The wide leaderboard of one comparable group: rows = methods, columns = labelled metrics."""
    agg = aggregate(tidy(records))
    methods = _order(agg["method"].unique().tolist())
    out = pd.DataFrame(index=pd.Index(methods, name="method"))
    judge = next(iter(records[0].get("judges") or {"judge": ""}))
    for col in COLUMNS:
        sub = agg[agg.metric == col.key].set_index("method")
        if sub.empty:
            continue
        ns = sorted(set(int(n) for n in sub["n"]))
        n_label = f"n={ns[0]}" if len(ns) == 1 else "n varies"
        label = " ".join(part for part in (col.label.format(judge=judge), _arrow(col.higher_is_better), f"({n_label})")
                         if part)
        out[label] = [(_fmt(sub.loc[m, "value"], sub.loc[m, "ci_low"], sub.loc[m, "ci_high"], col.digits, with_ci)
                       if m in sub.index else "–") for m in methods]
    secs = agg[agg.metric == "unlearn_seconds"].set_index("method")
    steps = agg[agg.metric == "steps"].set_index("method")
    passes = agg[agg.metric == "image_passes"].set_index("method")
    out["cost k-img fwd+bwd ↓"] = [f"{passes.loc[m, 'value'] / 1000:.1f}" if m in passes.index else "–"
                                   for m in methods]
    out["unlearn time s ↓"] = [f"{secs.loc[m, 'value']:.1f}" if m in secs.index else "–" for m in methods]
    out["steps"] = [f"{int(steps.loc[m, 'value'])}" if m in steps.index else "–" for m in methods]
    seeds = agg.groupby("method")["seeds"].max()
    out["seeds"] = [int(seeds.get(m, 0)) for m in methods]
    return out


SPREAD_METRICS = ("forget_accuracy", "retain_accuracy", "fid", "fid_to_original")


def seed_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame | None:
    """Per-seed values of the headline metrics (seed order) and their spread (max − min), for groups
    with ≥ 2 seeds: the interval in the main table says how sure the mean is, this shows the runs."""
    df = tidy(records)
    if df.empty or df.groupby("method")["seed"].nunique().max() < 2:
        return None
    methods = _order(df["method"].unique().tolist())
    out = pd.DataFrame(index=pd.Index(methods, name="method"))
    for key in SPREAD_METRICS:
        sub = df[df.metric == key]
        if sub.empty:
            continue
        digits = next(c.digits for c in COLUMNS if c.key == key)
        cells = []
        for m in methods:
            vals = sub[sub.method == m].sort_values("seed")
            if vals.empty:
                cells.append("–")
                continue
            v = vals["value"].astype(float)
            seeds = ",".join(str(int(x)) for x in vals["seed"])
            cells.append(f"{' / '.join(f'{x:.{digits}f}' for x in v)} (seeds {seeds}; spread {v.max() - v.min():.{digits}f})")
        label = next(c.label for c in COLUMNS if c.key == key).format(judge="judge")
        out[label] = cells
    return out


MIA_LABELS = {"loss_threshold": "LT", "secmi": "SecMI", "pia": "PIA"}


def _extra(record: dict[str, Any], attack: str, value: str) -> dict[str, Any]:
    return ((record.get("attacks") or {}).get(attack, {}).get("values", {}).get(value, {}).get("extra") or {})


def _headline(records: Sequence[dict[str, Any]], attack: str) -> list[str]:
    """The attack's headline value names over the records, in the attack's own order
    (``benchmark.api.headline_keys``): not every point of a probe's grid."""
    from benchmark.api import headline_keys

    keys: list[str] = []
    for r in records:
        entry = (r.get("attacks") or {}).get(attack) or {}
        for k in headline_keys(entry.get("values") or {}):
            if k not in keys and not k.endswith(("_gap", "_oracle", "_original")):
                keys.append(k)
    return keys


def _attack_status(records: Sequence[dict[str, Any]], method: str, attack: str) -> str:
    """'' when some seed ran ``attack`` for ``method``, else its status (skipped/failed) or '–'."""
    entries = [r.get("attacks", {}).get(attack) for r in records if r["method"]["name"] == method]
    entries = [e for e in entries if e]
    if any(e["status"] == "ok" for e in entries):
        return ""
    return entries[0]["status"] if entries else "–"


def attack_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame | None:
    """Attack columns of one comparable group, each read against the retrained oracle.

    MIA: forget-set AUC [CI] and the signed gap Δ to the oracle's AUC (both signs leak). Inversion:
    recovery rate [CI] and its excess over the oracle's. Relearning: steps until the judge sees the class
    again (≥ = censored) — fewer than the oracle leaks; ``*k/n``: seeds faster than every oracle run, ``†k/n``:
    seeds on which the model lost over half the oracle's retain utility, where fast relearning shows damage
    (``reports.audit.damaged_utility``). Concept attacks: one column per post-attack
    headline value (``benchmark.api.headline_keys``, so a probe's grid points stay in the record) with its
    excess over the oracle's, the first also showing the no-attack level on the same prompts ("pre");
    only that first value enters the rank, once per attack. The last column ranks methods by closeness to
    the oracle: the mean of each method's rank by |Δ AUC|, recovery excess and relearning shortfall
    (1 = closest), over the attacks that *separate* the unlearning methods at this tier — those where at
    least two methods other than the original and the oracle have disjoint 95% intervals (``separating``);
    the column names them, and is omitted when no attack separates. Returns None when no record
    carries attacks.
    """
    order = list(MIA_LABELS) + ["class_inversion", "relearning", "concept_asr", "unlearndiffatk", "ring_a_bell",
                                "p4d", "concept_inversion", "context_probe", "noise_probe"]
    attacks = sorted({a for r in records for a in (r.get("attacks") or {})},
                     key=lambda a: (order.index(a) if a in order else len(order), a))
    if not attacks:
        return None
    agg = aggregate(tidy(records)).set_index(["method", "metric"])
    methods = _order(agg.index.get_level_values(0).unique().tolist())

    def get(method: str, metric: str, field: str = "value") -> float | None:
        return float(agg.loc[(method, metric), field]) if (method, metric) in agg.index else None

    def ref(metric: str) -> float | None:
        vals = [get(m, metric) for m in methods if get(m, metric) is not None]
        return sum(vals) / len(vals) if vals else None

    out = pd.DataFrame(index=pd.Index(methods, name="method"))
    distance: dict[str, pd.Series] = {}
    for attack in attacks:
        if attack in MIA_LABELS or attack == "class_inversion":
            mia = attack in MIA_LABELS
            variants = ([("auc_forget", "auc_forget_gap", f"{MIA_LABELS.get(attack)} AUC forget")] if mia else
                        [("recovery_rate", "recovery_gap", "inversion recovery ↓"),
                         ("recovery_rate_heldout", "recovery_gap_heldout", "inversion recovery, held-out images ↓")])
            for key, gap_key, head in variants:
                if not any(get(m, f"{attack}.{key}") is not None for m in methods) and key != variants[0][0]:
                    continue
                oracle = ref(f"{attack}.{key}_oracle")
                ns = {int(get(m, f"{attack}.{key}", "n")) for m in methods if get(m, f"{attack}.{key}") is not None}
                ref_text = f"oracle {oracle:.2f}" if oracle is not None else "no oracle"
                splits = {(e.get("n_members"), e.get("n_nonmembers")) for r in records
                          for e in [_extra(r, attack, key)] if e.get("n_members")}
                if mia and len(splits) == 1:
                    n_text = "n={}+{}".format(*splits.pop())
                else:
                    n_text = f"n={ns.pop()}" if len(ns) == 1 else ("n varies" if ns else "no values")
                cells, dist = [], {}
                for m in methods:
                    value = get(m, f"{attack}.{key}")
                    if value is None:
                        cells.append(_attack_status(records, m, attack) or "–")
                        continue
                    text = _fmt(value, get(m, f"{attack}.{key}", "ci_low"), get(m, f"{attack}.{key}", "ci_high"), 2, True)
                    gap = get(m, f"{attack}.{gap_key}")
                    if gap is not None:
                        text += f" Δ{gap:+.2f}"
                        dist[m] = abs(gap) if mia else max(gap, 0.0)
                    cells.append(text)
                out[f"{head} ({ref_text}, {n_text})"] = cells
                if dist:
                    distance[attack if key == variants[0][0] else f"{attack}.{key}"] = pd.Series(dist)
        elif attack != "relearning":  # any other attack: one column per post-attack headline value
            headline = _headline(records, attack)
            pre = [k for k in headline if k.startswith("pre_")]
            for i, key in enumerate(k for k in headline if not k.startswith("pre_")):
                metric = f"{attack}.{key}"
                oracle = ref(f"{metric}_oracle")
                ns = {int(get(m, metric, "n")) for m in methods if get(m, metric) is not None}
                cells, dist = [], {}
                for m in methods:
                    value = get(m, metric)
                    if value is None:
                        cells.append(_attack_status(records, m, attack) or "–")
                        continue
                    text = _fmt(value, get(m, metric, "ci_low"), get(m, metric, "ci_high"), 2, True)
                    gap = get(m, f"{metric}_gap")
                    if gap is not None:
                        text += f" Δ{gap:+.2f}"
                        dist[m] = max(gap, 0.0)  # attack success above the oracle's leaks
                    before = [get(m, f"{attack}.{k}") for k in pre]
                    if i == 0 and before and before[0] is not None:  # the no-attack level on the same prompts
                        text += f" (pre {before[0]:.2f})"
                    cells.append(text)
                ref_text = f"oracle {oracle:.2f}" if oracle is not None else "no oracle"
                n_text = f"n={ns.pop()}" if len(ns) == 1 else "n varies"
                out[f"{attack} {key} ↓ ({ref_text}, {n_text})"] = cells
                if dist and i == 0:  # one rank per attack: its first post-attack headline value
                    distance[metric] = pd.Series(dist)
        elif attack == "relearning":
            oracle = ref("relearning.relearn_steps_oracle")
            cells, dist = [], {}
            oracle_by_seed = {r.get("seed"): r for r in records if r["method"]["name"] == "retrain"}
            for m in methods:
                value = get(m, "relearning.relearn_steps")
                if value is None:
                    cells.append(_attack_status(records, m, attack) or "–")
                    continue
                censored = any(_extra(r, attack, "relearn_steps").get("censored") for r in records
                               if r["method"]["name"] == m)
                lo, hi = get(m, "relearning.relearn_steps", "ci_low"), get(m, "relearning.relearn_steps", "ci_high")
                interval = f" [{lo:.0f}, {hi:.0f}]" if lo is not None and hi is not None and not pd.isna(lo) else ""
                ranks = [_extra(r, attack, "relearn_steps").get("oracle_rank") for r in records
                         if r["method"]["name"] == m]
                flagged = (f" *{sum(k['p_value'] <= 0.05 for k in ranks)}/{len(ranks)}"
                           if ranks and all(ranks) else "")
                mine = [r for r in records if r["method"]["name"] == m and r.get("seed") in oracle_by_seed]
                damaged = sum(damaged_utility(r.get("metrics") or {}, oracle_by_seed[r["seed"]].get("metrics") or {})
                              is not None for r in mine)
                flagged += f" †{damaged}/{len(mine)}" if damaged else ""
                cells.append(f"{'≥' if censored else ''}{value:.0f}{interval}{flagged}")
                if oracle is not None:
                    dist[m] = max(oracle - value, 0.0) / max(oracle, 1.0)
            o_censored = any(_extra(r, attack, "relearn_steps_oracle").get("censored") for r in records)
            k_runs = {len(_extra(r, attack, "relearn_steps_oracle").get("runs") or []) for r in records} - {0}
            ref_text = f"oracle {'≥' if o_censored else ''}{oracle:.0f}" if oracle is not None else "no oracle"
            if oracle is not None and len(k_runs) == 1:  # *k/n: seeds faster than every oracle run (rank p <= 0.05)
                ref_text += f", median of {k_runs.pop()} runs; *k/n seeds faster than all"
            if any("†" in c for c in cells):  # reports.audit.damaged_utility, the audit's caveat
                ref_text += "; †k/n seeds destroyed: retain < ½ the oracle's"
            out[f"relearn steps ↑ ({ref_text})"] = cells
            if dist:
                distance[attack] = pd.Series(dist)
    primary = {a: ("relearning.relearn_steps" if a == "relearning" else a if "." in a else
                   f"{a}.{'auc_forget' if a in MIA_LABELS else 'recovery_rate'}") for a in distance}
    distance = {a: d for a, d in distance.items() if separating(agg, primary[a], methods)}
    if distance:
        # a method without a value for an attack (skipped / failed) ranks last on it, not out of it
        ranks = pd.DataFrame({a: d.reindex(methods).rank(method="min", na_option="bottom")
                              for a, d in distance.items()})
        mean_rank = ranks.mean(axis=1)
        label = ", ".join(MIA_LABELS.get(a, a.replace("class_", "")) for a in distance)
        out[f"oracle-closeness rank ↓ (over {label})"] = [f"{mean_rank[m]:.1f}" if m in mean_rank.index else "–"
                                                          for m in methods]
    return out


REFERENCE_METHODS = ("original", "retrain")


def separating(agg: pd.DataFrame, metric: str, methods: Sequence[str]) -> bool:
    """True when two unlearning methods (not the original or the oracle) have disjoint 95% intervals
    on ``metric`` — the attack tells methods apart at this tier, so ranking by it means something."""
    spans = []
    for m in methods:
        if m in REFERENCE_METHODS or (m, metric) not in agg.index:
            continue
        lo, hi = agg.loc[(m, metric), "ci_low"], agg.loc[(m, metric), "ci_high"]
        if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
            continue
        spans.append((float(lo), float(hi)))
    return any(a_hi < b_lo or b_hi < a_lo for i, (a_lo, a_hi) in enumerate(spans) for b_lo, b_hi in spans[i + 1:])


def caption(records: Sequence[dict[str, Any]]) -> str:
    s = records[0]["scenario"]
    judges = ", ".join(f"{k} sha256:{v[:12]}" for k, v in records[0].get("judges", {}).items())
    floor = records[0]["metrics"].get("fid", {}).get("extra", {}).get("real_floor")
    floor_text = f"; FID of real member images at the same n (floor): {floor:.2f}" if floor is not None else ""
    if "forget_target" in s:  # text track
        target = (f"forget {s.get('forget_concept', s['forget_target'])} (erase phrasings "
                  f"{', '.join(s.get('erase_phrasings', []))}; paraphrases {', '.join(s.get('paraphrases', []))}); "
                  f"{s['samples_per_class']} CFG samples per prompt cell on held-out templates (s={s['guidance']}, "
                  f"DDIM {s['ddim_steps']})")
    else:
        target = (f"forget class {s['forget_class']}; {s['samples_per_class']} CFG samples per class "
                  f"(w={s['guidance']}, DDIM {s['ddim_steps']})")
    seeds = sorted({r["seed"] for r in records})
    cells = ("value [95% bootstrap CI over samples]" if len(seeds) < 2 else
             f"mean over {len(seeds)} seeds ({', '.join(map(str, seeds))}) [95% t-interval across seeds]")
    return (f"{s['name']} v{s['version']} (config {s['config_hash']}), tier {s['tier']}, {target}; judge {judges}"
            f"{floor_text}; cells: {cells}")


def _sources(records: Sequence[dict[str, Any]]) -> str:
    """Caption part naming which rows came from which folder, when records were merged from several."""
    by: dict[str, set[str]] = {}
    for r in records:
        by.setdefault(r.get("_source", ""), set()).add(r["method"]["name"])
    if len(by) < 2:
        return ""
    return "; rows from " + "; ".join(f"{src}: {', '.join(_order(sorted(m)))}" for src, m in by.items())


def groups(records: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    by: dict[tuple, list[dict[str, Any]]] = {}
    for rec in records:
        by.setdefault(group_key(rec), []).append(rec)
    return list(by.values())


def render(records: Sequence[dict[str, Any]], out_dir: Path | None = None) -> str:
    """Terminal text for every comparable group; with ``out_dir``, also leaderboard.md and leaderboard.csv."""
    if not records:
        raise UnlearnbenchError("no result records to render")
    texts, mds, tidies = [], [], []
    for every in groups(records):
        failed = [r for r in every if r.get("status", "ok") != "ok"]
        grp = label_rows([r for r in every if r.get("status", "ok") == "ok"])
        failed_text = "".join(f"\nFAILED {r['method']['name']} seed {r['seed']}: {r['failure']['stage']}: "
                              f"{r['failure']['reason']} (not scored)" for r in failed)
        if not grp:
            texts.append(caption(every) + "\n(no successful cells)" + failed_text)
            mds.append(f"**{caption(every)}**\n\n(no successful cells)\n" + failed_text.replace("\n", "\n\n"))
            continue
        tab = table(grp)
        cap = caption(grp) + _sources(grp)
        att = attack_table(grp)
        ranked = ", ".join(_order(sorted({r["method"]["name"] for r in grp} - set(REFERENCE_METHODS))))
        att_cap = ("attacks (scored against the retrained oracle; Δ = model − oracle; see each record's "
                   "attacks.*.values for protocols, TPR@FPR and ROC points; the oracle-closeness rank ranks every "
                   "row, the original and the oracle (1 by construction) included, over the attacks on which at "
                   f"least two of these methods have disjoint 95% intervals: {ranked})")
        spread = seed_table(grp)
        spread_cap = "per-seed values and their spread (max − min)"
        texts.append(cap + "\n" + tab.to_markdown(tablefmt="simple")
                     + ("" if spread is None else f"\n\n{spread_cap}\n" + spread.to_markdown(tablefmt="simple"))
                     + ("" if att is None else f"\n\n{att_cap}\n" + att.to_markdown(tablefmt="simple"))
                     + failed_text)
        grids = {r["method"]["name"]: r.get("artifacts", {}).get("sample_grid") for r in grp}
        rows_are = ("rows: the concept's cells under erase phrasings, under paraphrases, then neighbouring and "
                    "other retained cells" if grp[0].get("scenario", {}).get("track") == "text" else "one row per class")
        gallery = "".join(f"\n<details><summary>{m} samples ({rows_are})</summary>\n\n![{m}]({grids[m]})\n"
                          "</details>\n" for m in _order(list(grids)) if grids[m])
        att_md = "" if att is None else f"\n*{att_cap}*\n\n" + att.to_markdown() + "\n"
        spread_md = "" if spread is None else f"\n*{spread_cap}*\n\n" + spread.to_markdown() + "\n"
        mds.append(f"**{cap}**\n\n" + tab.to_markdown() + "\n" + spread_md + att_md + failed_text.replace("\n", "\n\n")
                   + gallery)
        tidies.append(tidy(grp))
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_text_atomic(out_dir / "leaderboard.md", "\n".join(mds))
        write_text_atomic(out_dir / "leaderboard.csv", pd.concat(tidies).to_csv(index=False))
    return "\n\n".join(texts)
