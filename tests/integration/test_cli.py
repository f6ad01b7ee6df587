"""End to end through the CLI on the shipped zoo: the smoke tier, the leaderboard, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from benchmark.cli import main

METHODS_RUN = ["original", "retrain", "finetune", "neggrad", "blindspot", "selective_amnesia", "salun", "erasediff",
        "erasediff-fixed", "erasediff-remap"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    assert main(["run", "--tier", "smoke", "--out", str(out), "--no-progress"]) == 0
    return out


def test_smoke_tier_writes_one_record_per_method(smoke_run):
    records = {p.stem.split("__")[2]: json.loads(p.read_text()) for p in smoke_run.glob("mnist-class__*.json")}
    assert sorted(records) == sorted(METHODS_RUN)
    for name, rec in records.items():
        assert rec["schema_version"] == 1 and rec["scenario"]["tier"] == "smoke"
        assert rec["scenario"]["config_hash"] and rec["judges"]["mnist-judge"]
        assert rec["environment"]["packages"]["torch"]
        for key in ("forget_accuracy", "p_forgotten", "retain_accuracy", "fid", "kid"):
            m = rec["metrics"][key]
            assert m["n"] > 0 and isinstance(m["higher_is_better"], bool) and m["protocol"]
        assert rec["model"]["changed"] == (name != "original")
    assert records["original"]["metrics"]["forget_accuracy"]["value"] >= 0.75
    assert records["retrain"]["metrics"]["forget_accuracy"]["value"] <= 0.25
    assert records["erasediff"]["method_stats"]["lambda"]["mean"] >= 0
    assert (smoke_run / "leaderboard.md").is_file() and (smoke_run / "leaderboard.csv").is_file()
    for rec in records.values():
        assert (smoke_run / rec["artifacts"]["sample_grid"]).stat().st_size > 100
    assert "![erasediff](" in (smoke_run / "leaderboard.md").read_text()


ATTACKS = ["loss_threshold", "secmi", "pia", "class_inversion", "relearning"]


def test_every_method_is_attacked_and_scored_against_the_oracle(smoke_run):
    records = {p.stem.split("__")[2]: json.loads(p.read_text()) for p in smoke_run.glob("mnist-class__*.json")}
    for name, rec in records.items():
        assert sorted(rec["attacks"]) == sorted(ATTACKS), name
        for attack, entry in rec["attacks"].items():
            assert entry["status"] == "ok", (name, attack, entry["reason"])
            assert entry["config"] and entry["cost"]["seconds"] >= 0
            assert (smoke_run / entry["per_item_file"]).stat().st_size > 20
        for mia in ("loss_threshold", "secmi", "pia"):
            values = rec["attacks"][mia]["values"]
            assert {"auc_forget", "auc_forget_original", "auc_forget_oracle", "auc_forget_gap"} <= set(values)
            assert values["auc_forget"]["ci"][0] <= values["auc_forget"]["value"] <= values["auc_forget"]["ci"][1]
        assert rec["timings"]["attacks"] > 0
    # the retrain method *is* the oracle, and the original is the original: zero gaps by construction
    for mia in ("loss_threshold", "secmi", "pia"):
        assert records["retrain"]["attacks"][mia]["values"]["auc_forget_gap"]["value"] == 0
        orig = records["original"]["attacks"][mia]["values"]
        assert orig["auc_forget"]["value"] == orig["auc_forget_original"]["value"]
    assert records["retrain"]["attacks"]["class_inversion"]["values"]["recovery_gap"]["value"] == 0
    assert records["original"]["attacks"]["relearning"]["values"]["relearn_steps"]["value"] == 0
    text = (smoke_run / "leaderboard.md").read_text()
    for column in ("LT AUC forget (oracle", "SecMI AUC forget", "PIA AUC forget", "inversion recovery",
                   "relearn steps"):
        assert column in text
    tidy = (smoke_run / "leaderboard.csv").read_text()
    assert "pia.auc_forget_gap" in tidy and "relearning.relearn_steps_oracle" in tidy


def test_attacks_can_be_chosen_and_earlier_attack_results_are_kept(smoke_run, tmp_path, capsys):
    import shutil as sh

    out = tmp_path / "r"
    out.mkdir()
    src = next(smoke_run.glob("mnist-class__c0__neggrad__*.json"))
    sh.copy(src, out / src.name)
    before = json.loads(src.read_text())["attacks"]
    # a subset that is already in the record: nothing to do
    assert main(["run", "--tier", "smoke", "--methods", "neggrad", "--attacks", "pia", "--out", str(out),
                 "--no-progress"]) == 0
    assert "record exists, skipped" in capsys.readouterr().out
    # forcing a rerun of one attack keeps the other attacks' results of the same weights
    assert main(["run", "--tier", "smoke", "--methods", "neggrad", "--attacks", "pia", "--out", str(out),
                 "--no-progress", "--force"]) == 0
    after = json.loads((out / src.name).read_text())["attacks"]
    assert sorted(after) == sorted(before)
    assert after["secmi"] == before["secmi"]
    assert after["pia"]["values"]["auc_forget"] == before["pia"]["values"]["auc_forget"]  # deterministic


def test_rerun_skips_existing_cells_and_leaderboard_renders(smoke_run, capsys):
    assert main(["run", "--tier", "smoke", "--out", str(smoke_run), "--methods", "original", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "record exists, skipped" in out and f"the folder's {len(METHODS_RUN) - 1} other record(s)" in out
    board = (smoke_run / "leaderboard.md").read_text()  # one method run into a folder adds, never replaces
    assert all(f"| {name} " in board for name in METHODS_RUN)
    assert main(["leaderboard", str(smoke_run), "--no-write"]) == 0
    text = capsys.readouterr().out
    assert "forget acc ↓ (n=8)" in text and "FID[mnist-judge] ↓" in text and "retain acc ↑ (n=72)" in text
    for name in METHODS_RUN:
        assert name in text


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("unlearnbench")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "benchmark.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--methods", "erasedif"], "did you mean 'erasediff'"),
    (["run", "--forget-class", "10"], "forget class must be an integer in 0..9"),
    (["run", "--tier", "smoke", "--scenario", "nope"], "unknown scenario 'nope'"),
    (["leaderboard", "/no/such/dir"], "no such results directory"),
    (["run", "--tier", "smoke", "--attacks", "pai"], "did you mean 'pia'"),
    (["zoo", "train", "mnist-unet-bse"], "did you mean mnist-unet-base"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    proc = _cli(*args, *(["--out", str(tmp_path / "r")] if args[0] == "run" else []))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("unlearnbench: error:")
    assert not (tmp_path / "r").exists(), "bad input must not leave anything behind"


def test_tampered_base_weights_refused(tmp_path, monkeypatch, capsys):
    """A card whose recorded sha256 disagrees with the shipped file is refused before any compute."""
    from benchmark.scenarios import MNIST_CLASS

    card = MNIST_CLASS.read_text()
    from benchmark.scenarios import load_scenario

    real = load_scenario("mnist-class").models["base"]["sha256"]
    bad = tmp_path / "tampered.yaml"
    bad.write_text(card.replace(real, "e" * 64))
    assert main(["run", "--scenario", str(bad), "--tier", "smoke", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "does not match the recorded" in capsys.readouterr().err
    assert not list((tmp_path / "r").glob("*.json")) if (tmp_path / "r").exists() else True


def test_card_hash_must_be_a_quoted_hex_string(tmp_path, capsys):
    from benchmark.scenarios import MNIST_CLASS

    bad = tmp_path / "unquoted.yaml"
    bad.write_text(MNIST_CLASS.read_text().replace('sha256: "5469e3', "sha256: 5469e3", 1).replace(
        '"5469e3cdc55181e0ad66bcf5eeab2c25d593d1c8d3c93e3c5e86f9908c7d1b74"', "0" * 64))
    assert main(["run", "--scenario", str(bad), "--tier", "smoke", "--out", str(tmp_path / "r")]) == 2
    assert "must be 64 lowercase hex characters" in capsys.readouterr().err


def test_stale_attacks_rerun_on_the_saved_weights_and_keep_the_method_and_metrics(tmp_path, capsys):
    args = ["run", "--tier", "smoke", "--methods", "neggrad", "--attacks", "pia,loss_threshold", "--save-weights",
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    path = next(tmp_path.glob("mnist-class__c0__neggrad__*.json"))
    first = json.loads(path.read_text())
    assert first["attacks"]["pia"]["code"]["behaviour_sha256"] and "attacks/mia/pia.py" in first["attacks"]["pia"]["code"]["files"]
    # the attack code "changed" since the record: only that attack runs again, on the saved weights
    edited = json.loads(path.read_text())
    edited["attacks"]["pia"]["code"].update(source_sha256="an older version of the attack", behaviour_sha256="an older version of the attack")
    edited["attacks"]["pia"]["values"]["auc_forget"]["value"] = -1.0
    path.write_text(json.dumps(edited))
    capsys.readouterr()
    assert main(args) == 0
    log = capsys.readouterr().out
    assert "attacks ['pia'] stale or missing: running them on the saved weights" in log
    after = json.loads(path.read_text())
    assert after["created_utc"] == first["created_utc"] and after["timings"]["unlearn"] == first["timings"]["unlearn"]
    assert after["metrics"] == first["metrics"] and after["model"] == first["model"]
    assert after["attacks"]["loss_threshold"] == first["attacks"]["loss_threshold"]  # not rerun
    assert after["attacks"]["pia"]["values"]["auc_forget"]["value"] == first["attacks"]["pia"]["values"]["auc_forget"]["value"]
    assert after["attacks_updated"]["attacks"] == ["pia"]
    # saved weights that are not the record's model are never used: the cell is recomputed whole
    edited = json.loads(path.read_text())
    edited["model"]["fingerprint"] = "0" * 64
    edited["attacks"]["pia"]["code"].update(source_sha256="stale again", behaviour_sha256="stale again")
    path.write_text(json.dumps(edited))
    assert main(args) == 0
    assert "recomputing the cell" in capsys.readouterr().out  # the loader's own fingerprint check refuses them
    assert json.loads(path.read_text())["model"]["fingerprint"] == first["model"]["fingerprint"]


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "0,,1"], "--seeds must be comma-separated integers, got '0,,1'"),
    (["--seeds", ""], "--seeds is empty"),
    (["--out", "FILE"], "exists and is not a directory"),
    (["--out", "FILE/sub"], "is not a directory"),  # under a file: refused up front, not a traceback later
    (["--seed", str(2**31)], "seed must be a non-negative integer below 2^31"),
    (["--tier", "nope"], "argument --tier: invalid choice: 'nope'"),
])
def test_bad_run_arguments_are_refused_before_any_work(args, message, tmp_path, capsys):
    existing = tmp_path / "a-file"
    existing.write_text("keep me")
    argv = ["run", "--tier", "smoke", *[a.replace("FILE", str(existing)) for a in args]]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "r")]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks (choices) exit from parse_args
        code = exc.code
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and message in err[0] and err[0].startswith("unlearnbench: error:")
    assert existing.read_text() == "keep me" and not (tmp_path / "r").exists()
