"""End to end through the CLI on the shipped zoo: the smoke tier, the leaderboard, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from benchmark.cli import main

NINE = ["original", "retrain", "finetune", "neggrad", "blindspot", "selective_amnesia", "salun", "erasediff",
        "erasediff-fixed"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    assert main(["run", "--tier", "smoke", "--out", str(out), "--no-progress"]) == 0
    return out


def test_smoke_tier_writes_one_record_per_method(smoke_run):
    records = {p.stem.split("__")[2]: json.loads(p.read_text()) for p in smoke_run.glob("mnist-class__*.json")}
    assert sorted(records) == sorted(NINE)
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


def test_rerun_skips_existing_cells_and_leaderboard_renders(smoke_run, capsys):
    assert main(["run", "--tier", "smoke", "--out", str(smoke_run), "--methods", "original", "--no-progress"]) == 0
    assert "record exists, skipped" in capsys.readouterr().out
    assert main(["leaderboard", str(smoke_run), "--no-write"]) == 0
    text = capsys.readouterr().out
    assert "forget acc ↓ (n=8)" in text and "FID[mnist-judge] ↓" in text and "retain acc ↑ (n=72)" in text
    for name in NINE:
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
