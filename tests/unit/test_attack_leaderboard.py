"""The leaderboard's attack table reads every attack against the oracle and ranks by closeness to it."""

from __future__ import annotations

from reports.leaderboard import attack_table, render


def _record(method, auc, oracle_auc, recovery, relearn, status="ok", seed=0):
    def mv(value, ci=None, n=500, extra=None):
        return {"value": value, "n": n, "ci": ci, "higher_is_better": None, "protocol": "p", "extra": extra or {}}

    pia = {"status": status, "reason": "model lacks eps" if status == "skipped" else "", "values": {} if status != "ok"
           else {"auc_forget": mv(auc, [auc - 0.05, auc + 0.05], extra={"n_members": 400, "n_nonmembers": 100}),
                 "auc_forget_oracle": mv(oracle_auc), "auc_forget_gap": mv(auc - oracle_auc)}}
    inv = {"status": "ok", "values": {"recovery_rate": mv(recovery, [0, 1], n=50),
                                      "recovery_rate_oracle": mv(0.2, n=50), "recovery_gap": mv(recovery - 0.2, n=50)}}
    rel = {"status": "ok", "values": {"relearn_steps": mv(relearn, n=32, extra={"censored": relearn >= 200}),
                                      "relearn_steps_oracle": mv(200, n=32, extra={"censored": True})}}
    return {"scenario": {"name": "mnist-class", "version": 1, "config_hash": "h", "tier": "quick", "forget_class": 0,
                         "samples_per_class": 100, "ddim_steps": 25, "guidance": 2.0},
            "method": {"name": method}, "seed": seed, "metrics": {},
            "compute": {"unlearn_seconds": 1.0, "steps": 1, "device": "cpu"},
            "attacks": {"pia": pia, "class_inversion": inv, "relearning": rel}, "judges": {}}


def test_closeness_to_the_oracle_ranks_and_signs_are_shown():
    records = [_record("original", 0.70, 0.52, 1.0, 0), _record("retrain", 0.52, 0.52, 0.2, 200),
               _record("salun", 0.40, 0.52, 0.1, 60), _record("erasediff", 0.60, 0.52, 0.9, 10),
               _record("mine", 0.55, 0.52, 0.3, 20, status="skipped")]
    tab = attack_table(records)
    cols = list(tab.columns)
    assert cols[0] == "PIA AUC forget (oracle 0.52, n=400+100)"
    assert "relearn steps ↑ (oracle ≥200)" in cols and "inversion recovery ↓ (oracle 0.20, n=50)" in cols
    assert tab.loc["original", cols[0]] == "0.70 [0.65, 0.75] Δ+0.18"
    assert tab.loc["salun", cols[0]].endswith("Δ-0.12")  # over-unlearning shows as a negative gap
    assert tab.loc["mine", cols[0]] == "skipped"
    assert tab.loc["retrain", "relearn steps ↑ (oracle ≥200)"] == "≥200"
    # only PIA separates two unlearning methods (salun 0.35-0.45 vs erasediff 0.55-0.65); inversion's
    # intervals overlap and one-seed relearning has none, so the rank is over PIA alone
    rank = tab["oracle-closeness rank ↓ (over PIA)"].astype(float)
    assert rank["retrain"] == 1 and rank["erasediff"] < rank["salun"] < rank["original"]
    assert rank["mine"] == rank.max()  # skipped ranks last, not out


def test_without_separating_attacks_there_is_no_rank():
    records = [_record("original", 0.70, 0.52, 1.0, 0), _record("retrain", 0.52, 0.52, 0.2, 200),
               _record("salun", 0.50, 0.52, 0.1, 60), _record("erasediff", 0.53, 0.52, 0.9, 10)]
    assert not any(c.startswith("oracle-closeness") for c in attack_table(records).columns)


def test_several_seeds_give_the_mean_and_a_t_interval_across_seeds():
    import numpy as np
    from scipy import stats

    from reports.leaderboard import caption

    records = [_record(m, auc, 0.52, rec, rel, seed=s) for s, (auc, rec, rel) in
               enumerate([(0.40, 0.10, 50), (0.44, 0.20, 60), (0.42, 0.30, 70)]) for m in ("salun",)]
    records += [_record("erasediff", 0.60 + 0.01 * s, 0.52, 0.9, 10, seed=s) for s in range(3)]
    tab = attack_table(records)
    col = "PIA AUC forget (oracle 0.52, n=400+100)"
    half = stats.t.ppf(0.975, 2) * np.std([0.40, 0.44, 0.42], ddof=1) / np.sqrt(3)
    assert tab.loc["salun", col] == f"0.42 [{0.42 - half:.2f}, {0.42 + half:.2f}] Δ-0.10"
    assert tab.loc["salun", "relearn steps ↑ (oracle ≥200)"].startswith("60 [")
    assert "mean over 3 seeds (0, 1, 2)" in caption(records)


def test_records_without_attacks_render_without_the_table():
    rec = _record("original", 0.7, 0.5, 1.0, 0)
    rec["attacks"] = {}
    rec["metrics"] = {"forget_accuracy": {"value": 1.0, "n": 8, "ci": [1, 1], "higher_is_better": False}}
    assert attack_table([rec]) is None
    assert "attacks (scored against" not in render([rec])


def test_concept_attacks_get_one_column_per_headline_value():
    def rec(method, asr, seed=0):
        r = _record(method, 0.5, 0.5, 0.2, 200, seed=seed)
        mv = lambda v: {"value": v, "n": 8, "ci": [max(v - 0.1, 0), min(v + 0.1, 1)], "protocol": "p"}  # noqa: E731
        r["attacks"] = {"unlearndiffatk": {"status": "ok", "values": {
            "asr": mv(asr), "asr_oracle": mv(0.1), "asr_gap": mv(asr - 0.1), "pre_asr4": mv(0.0)}}}
        return r

    tab = attack_table([rec("original", 1.0), rec("retrain", 0.1), rec("esd-x", 0.9), rec("uce", 0.2)])
    col = "unlearndiffatk asr ↓ (oracle 0.10, n=8)"
    assert tab.loc["esd-x", col] == "0.90 [0.80, 1.00] Δ+0.80"
    rank = tab["oracle-closeness rank ↓ (over unlearndiffatk.asr)"].astype(float)
    assert rank["retrain"] < rank["uce"] < rank["esd-x"]


def _concept_record(method, asr, pre, oracle=None, seed=0):
    """A text-track record carrying one prompt attack (post-attack ASR and the no-attack level as headline
    values, as ``against_references`` flags them) and a probe with grid points."""
    def mv(value, ci=None, headline=False):
        return {"value": value, "n": 8, "ci": ci, "higher_is_better": None, "protocol": "p",
                "extra": {"headline": True} if headline else {}}

    uda = {"asr": mv(asr, [max(asr - 0.1, 0), min(asr + 0.1, 1)], True), "pre_asr4": mv(pre, None, True),
           "asr_original": mv(0.9), "pre_asr4_original": mv(0.8)}
    probe = {"recovery": mv(asr, [0, 1], True), "recovery_original": mv(0.9),
             **{f"recovery_s{s}": mv(0.5) for s in (0.2, 0.6)}, **{f"recovery_s{s}_original": mv(0.9) for s in (0.2, 0.6)}}
    if oracle is not None:
        uda.update({"asr_oracle": mv(oracle), "asr_gap": mv(asr - oracle), "pre_asr4_oracle": mv(0.0),
                    "pre_asr4_gap": mv(pre)})
    return {"scenario": {"name": "mnist-text-object", "version": 1, "config_hash": "h", "tier": "quick",
                         "forget_class": 0, "samples_per_class": 10, "ddim_steps": 20, "guidance": 5.0},
            "method": {"name": method}, "seed": seed, "metrics": {},
            "compute": {"unlearn_seconds": 1.0, "steps": 1, "device": "cpu"},
            "attacks": {"unlearndiffatk": {"status": "ok", "values": uda},
                        "context_probe": {"status": "ok", "values": probe}}, "judges": {}}


def test_concept_attacks_show_without_an_oracle_and_rank_once_per_attack():
    without = attack_table([_concept_record("original", 0.9, 0.8), _concept_record("uce", 0.75, 0.0)])
    cols = list(without.columns)
    assert cols == ["unlearndiffatk asr ↓ (no oracle, n=8)", "context_probe recovery ↓ (no oracle, n=8)"]
    assert without.loc["uce", cols[0]] == "0.75 [0.65, 0.85] (pre 0.00)"  # the probe's grid stays in the record
    records = [_concept_record("original", 0.9, 0.8, 0.1), _concept_record("retrain", 0.1, 0.0, 0.1),
               _concept_record("uce", 0.75, 0.0, 0.1), _concept_record("esd-u", 0.2, 0.0, 0.1)]
    tab = attack_table(records)
    assert tab.loc["uce", "unlearndiffatk asr ↓ (oracle 0.10, n=8)"] == "0.75 [0.65, 0.85] Δ+0.65 (pre 0.00)"
    assert not any("pre_asr4" in c for c in tab.columns)  # the no-attack level is not its own ranked column
    rank_col = [c for c in tab.columns if c.startswith("oracle-closeness")]
    assert rank_col == ["oracle-closeness rank ↓ (over unlearndiffatk.asr)"]
    rank = tab[rank_col[0]].astype(float)
    assert rank["retrain"] < rank["esd-u"] < rank["uce"]


def test_relearning_cells_count_the_seeds_faster_than_every_oracle_run():
    def ranked(method, relearn, as_fast, seed):
        rec = _record(method, 0.5, 0.52, 0.2, relearn, seed=seed)
        rel = rec["attacks"]["relearning"]["values"]
        rel["relearn_steps"]["extra"]["oracle_rank"] = {"test": "rank_among_oracle_runs", "oracle_runs": 19,
                                                         "oracle_runs_as_fast": as_fast, "p_value": (1 + as_fast) / 20}
        rel["relearn_steps_oracle"]["extra"] = {"censored": False, "runs": [{"run": i, "step": 30, "curve": []}
                                                                             for i in range(1, 20)]}
        rel["relearn_steps_oracle"]["value"] = 30
        return rec

    records = [ranked("salun", 10, 0, 0), ranked("salun", 10, 0, 1), ranked("salun", 20, 3, 2),
               ranked("retrain", 30, 9, 0), ranked("retrain", 30, 12, 1), ranked("retrain", 40, 17, 2)]
    tab = attack_table(records)
    col = "relearn steps ↑ (oracle 30, median of 19 runs; *k/n seeds faster than all)"
    assert col in tab.columns
    assert tab.loc["salun", col].endswith("*2/3") and tab.loc["retrain", col].endswith("*0/3")
    # records from before the oracle had several runs: no count, the header as before
    old = [_record("salun", 0.5, 0.52, 0.2, 10), _record("retrain", 0.52, 0.52, 0.2, 200)]
    assert "*" not in attack_table(old).loc["salun", "relearn steps ↑ (oracle ≥200)"]


def test_relearning_cells_mark_seeds_where_the_model_was_destroyed():
    """† counts seeds with under half the oracle's retain utility (the audit's caveat): NegGrad-like, not UCE-like."""
    def with_retain(method, relearn, retain, seed):
        rec = _record(method, 0.5, 0.52, 0.2, relearn, seed=seed)
        rec["metrics"] = {"retain_accuracy": {"value": retain, "ci": [max(retain - 0.02, 0), min(retain + 0.02, 1)],
                                              "n": 900}}
        return rec

    records = [with_retain("neggrad", 10, 0.0, 0), with_retain("neggrad", 10, 0.9, 1),
               with_retain("uce", 20, 0.78, 0), with_retain("uce", 20, 0.8, 1),
               with_retain("retrain", 200, 0.99, 0), with_retain("retrain", 200, 0.99, 1)]
    tab = attack_table(records)
    col = next(c for c in tab.columns if c.startswith("relearn steps"))
    assert "†k/n seeds destroyed: retain < ½ the oracle's" in col
    assert tab.loc["neggrad", col].endswith("†1/2")
    assert "†" not in tab.loc["uce", col] and "†" not in tab.loc["retrain", col]
