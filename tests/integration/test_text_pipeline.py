"""The text track end to end through the CLI, on a tiny text UNet (random weights) over the shipped tiny
CLIP and judge: the runner, records, metrics and leaderboard work for the text track, and bad input
gets one line and exit 2. Numbers here are not meaningful (the base is untrained); the wiring is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.scenarios import MNIST_TEXT_OBJECT


@pytest.fixture(scope="module")
def tiny_card(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    import os

    from benchmark import zoo
    from benchmark.models.text_unet import TextConditionalUNet, tiny_text_unet_config

    root = tmp_path_factory.mktemp("textcard")
    cache = root / "cache"
    text = zoo.load_clip_text_states()
    model = TextConditionalUNet.from_config(tiny_text_unet_config((8, 16), text.width, heads=2), text, seed=0,
                                            text_source={"zoo": zoo.TEXT_CLIP, "sha256": None})
    model.save_pretrained(cache / "zoo" / "tiny-text-base")
    card = yaml.safe_load(MNIST_TEXT_OBJECT.read_text())
    card["name"] = "tiny-text-object"
    card["models"]["base"] = {"zoo": "tiny-text-base", "sha256": None}
    card["models"]["oracles"] = {"digit0": {"zoo": "tiny-text-oracle", "sha256": None}}  # none: never the real one
    card["tiers"]["smoke"]["samples_per_class"] = 1
    card["tiers"]["smoke"]["ddim_steps"] = 3
    path = root / "tiny-text-object.yaml"
    path.write_text(yaml.safe_dump(card))
    env = {**os.environ, "UNLEARNBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return path, env


def _cli(args: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_text_card_runs_end_to_end(tiny_card, tmp_path):
    card, env = tiny_card
    out = tmp_path / "results"
    res = _cli(["run", "--scenario", str(card), "--tier", "smoke", "--methods", "original,uce,esd-x,finetune",
                "--out", str(out), "--no-progress"], env)
    assert res.returncode == 0, res.stderr[-2000:]
    records = sorted(out.glob("tiny-text-object__digit0__*__seed0__smoke__*.json"))
    assert len(records) == 4
    uce = next(out.glob("tiny-text-object__digit0__uce__seed0__smoke__*.json"))
    rec = json.loads(uce.read_text())
    s = rec["scenario"]
    assert s["track"] == "text" and s["forget_target"] == "digit:0"
    assert s["erase_phrasings"] == ["zero", "the digit 0"] and s["paraphrases"] == ["cero", "nought"]
    m = rec["metrics"]
    for key in ("forget_accuracy", "forget_accuracy_paraphrase", "retain_accuracy", "retain_accuracy_neighbours",
                "clip_score_retain", "clip_score_forget", "fid"):
        assert key in m and m[key]["n"] > 0, key
    assert m["forget_accuracy"]["n"] == 4 and m["retain_accuracy"]["n"] == 36  # 4 forget cells, 36 retained
    assert rec["model"]["changed"] and "uce" in rec["method"]["name"]
    assert "mnist-text-judge" in rec["judges"]
    assert "forget acc (paraphrase)" in res.stdout and "CLIP score retained" in res.stdout
    assert uce.with_suffix(".png").is_file()
    attacks = rec["attacks"]
    assert {"loss_threshold", "secmi", "pia", "relearning", "concept_asr", "unlearndiffatk",
            "concept_inversion"} <= set(attacks)
    assert all(a["status"] == "ok" for a in attacks.values()), {k: a["reason"] for k, a in attacks.items()}
    pia = attacks["pia"]["values"]["auc_forget"]
    # digit-0 members and held-out images (400 + 100), capped at the smoke tier's max_per_split (card v3)
    assert pia["extra"]["n_members"] == 50 and pia["extra"]["n_nonmembers"] == 50
    assert "digit 0" in pia["protocol"]
    assert "no oracle" in res.stdout or "oracle" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--concept", "purple"], "unknown concept"),
    (["--methods", "blindspot"], "does not support the text track"),
    (["--attacks", "class_inversion"], "does not support the text track"),
])
def test_bad_text_input_is_one_line_and_exit_2(tiny_card, tmp_path, args, message):
    card, env = tiny_card
    cheap = ([] if "--methods" in args else ["--methods", "original"]) + ([] if "--attacks" in args else
                                                                         ["--attacks", "none"])
    res = _cli(["run", "--scenario", str(card), "--tier", "smoke", "--out", str(tmp_path), *cheap, *args], env,
               timeout=120)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("unlearnbench: error:") and message in lines[0], res.stderr


def test_audit_of_a_text_model_measures_the_prompt_file(tiny_card, tmp_path):
    card, env = tiny_card
    prompts = tmp_path / "prompts.csv"
    prompts.write_text('prompt,seed,guidance\nzero | nought,3,\n"<script>alert(1)</script> a red digit 0",4,2.0\n')
    out = tmp_path / "audit"
    model = Path(env["UNLEARNBENCH_CACHE"]) / "zoo" / "tiny-text-base"
    res = _cli(["audit", str(model), "--scenario", str(card), "--tier", "smoke", "--attacks", "none", "--prompts",
                str(prompts), "--out", str(out), "--no-progress"], env)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["scenario"]["track"] == "text" and report["oracle"] is None  # no oracle for the tiny card
    rows = report["prompts"]
    assert [r["seed"] for r in rows] == [3, 4] and rows[1]["guidance_used"] == 2.0
    assert all(0.0 <= r["audited_concept_rate"] <= 1.0 and "reference_concept_rate" in r for r in rows)
    page = (out / "report.html").read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    md = (out / "report.md").read_text()  # the same prompt table, escaped for Markdown: no HTML, no broken row
    assert "## Prompts" in md and "<script>" not in md and "&lt;script>alert(1)&lt;/script>" in md
    assert "| zero \\| nought | 3 |" in md
    # the prompt file's samples are cached by weights like run's: a repeated audit reuses them
    from benchmark.audit import PROMPT_SAMPLES
    from benchmark.sampling import prompts_cache_key

    steps = yaml.safe_load(card.read_text())["tiers"]["smoke"]["ddim_steps"]
    stem = prompts_cache_key(['<script>alert(1)</script> a red digit 0'] * PROMPT_SAMPLES, steps, 2.0, 4)
    files = list((Path(env["UNLEARNBENCH_CACHE"]) / "samples").rglob(f"{stem}.pt"))
    assert len(files) == 1  # the audited model is the base here: one fingerprint, one file for both roles
    before = {f: f.stat().st_mtime_ns for f in files}
    res = _cli(["audit", str(model), "--scenario", str(card), "--tier", "smoke", "--attacks", "none", "--prompts",
                str(prompts), "--out", str(out), "--no-progress"], env)
    assert res.returncode == 0 and {f: f.stat().st_mtime_ns for f in files} == before
    # in a real browser: the prompt shows as text, runs nothing, and the page fetches nothing
    from tests.browser import open_report

    seen = open_report(out / "report.html")
    assert not seen["errors"] and not seen["dialogs"] and seen["offline"], seen
    assert "<script>alert(1)</script> a red digit 0" in seen["text"] and seen["script_tags"] == 0
