"""The leaderboard's attack table reads every attack against the oracle and ranks by closeness to it."""

from __future__ import annotations

from reports.leaderboard import attack_table, render


def _record(method, auc, oracle_auc, recovery, relearn, status="ok"):
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
            "method": {"name": method}, "seed": 0, "metrics": {},
            "compute": {"unlearn_seconds": 1.0, "steps": 1, "device": "cpu"},
            "attacks": {"pia": pia, "class_inversion": inv, "relearning": rel}, "judges": {}}


def test_closeness_to_the_oracle_ranks_and_signs_are_shown():
    records = [_record("original", 0.70, 0.52, 1.0, 0), _record("retrain", 0.52, 0.52, 0.2, 200),
               _record("salun", 0.40, 0.52, 0.1, 60), _record("mine", 0.55, 0.52, 0.3, 20, status="skipped")]
    tab = attack_table(records)
    cols = list(tab.columns)
    assert cols[0] == "PIA AUC forget (oracle 0.52, n=400+100)"
    assert "relearn steps ↑ (oracle ≥200)" in cols and "inversion recovery ↓ (oracle 0.20, n=50)" in cols
    assert tab.loc["original", cols[0]] == "0.70 [0.65, 0.75] Δ+0.18"
    assert tab.loc["salun", cols[0]].endswith("Δ-0.12")  # over-unlearning shows as a negative gap
    assert tab.loc["mine", cols[0]] == "skipped"
    assert tab.loc["retrain", "relearn steps ↑ (oracle ≥200)"] == "≥200"
    rank = tab["oracle-closeness rank ↓"].astype(float)
    assert rank["retrain"] == 1 and rank["original"] == rank.max()


def test_records_without_attacks_render_without_the_table():
    rec = _record("original", 0.7, 0.5, 1.0, 0)
    rec["attacks"] = {}
    rec["metrics"] = {"forget_accuracy": {"value": 1.0, "n": 8, "ci": [1, 1], "higher_is_better": False}}
    assert attack_table([rec]) is None
    assert "attacks (scored against" not in render([rec])
