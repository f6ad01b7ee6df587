"""Text-track records render into their own table: concept caption, paraphrase and CLIP-score columns."""

from __future__ import annotations

from reports.leaderboard import caption, groups, table


def _record(method, forget, paraphrase, concept="digit:0", clip=30.0):
    def mv(value, n, hib):
        return {"value": value, "n": n, "ci": [value - 0.05, value + 0.05], "higher_is_better": hib, "protocol": "p"}

    return {"scenario": {"name": "mnist-text-object", "version": 1, "config_hash": "h", "track": "text",
                         "tier": "quick", "forget_target": concept, "forget_concept": "digit 0",
                         "erase_phrasings": ["zero", "the digit 0"], "paraphrases": ["cero", "nought"],
                         "samples_per_class": 10, "ddim_steps": 20, "guidance": 5.0},
            "method": {"name": method}, "seed": 0, "judges": {"mnist-text-judge": "ab" * 32},
            "metrics": {"forget_accuracy": mv(forget, 40, False), "forget_accuracy_paraphrase": mv(paraphrase, 40, False),
                        "retain_accuracy": mv(0.9, 360, True), "clip_score_retain": mv(clip, 360, True),
                        "fid": mv(3.0, 360, False)},
            "compute": {"unlearn_seconds": 1.0, "steps": 100, "device": "cpu"}, "attacks": {}}


def test_text_records_get_paraphrase_and_clip_columns_and_their_own_caption():
    records = [_record("original", 0.95, 0.9), _record("uce", 0.05, 0.7), _record("esd-x", 0.1, 0.2)]
    tab = table(records)
    cols = list(tab.columns)
    assert "forget acc (paraphrase) ↓ (n=40)" in cols and "CLIP score retained ↑ (n=360)" in cols
    assert "FID[mnist-text-judge] ↓ (n=360)" in cols
    assert list(tab.index) == ["original", "esd-x", "uce"]  # the method order of the field
    assert tab.loc["uce", "forget acc (paraphrase) ↓ (n=40)"].startswith("0.700")
    cap = caption(records)
    assert "forget digit 0 (erase phrasings zero, the digit 0; paraphrases cero, nought)" in cap
    assert "s=5.0" in cap and "per prompt cell" in cap


def test_different_concepts_are_never_mixed_in_one_table():
    records = [_record("original", 0.9, 0.9), _record("original", 0.9, 0.9, concept="digit:3")]
    assert len(groups(records)) == 2
