"""Grids survive broken methods and SIGKILL; records are keyed by identity; --set is typed (real smoke cells)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.results import load_records

ADAPTERS = textwrap.dedent('''
    from dataclasses import dataclass

    from benchmark.api import UnlearningMethod, UnlearnOutcome
    from methods.base import FineTuneConfig, FineTuningMethod


    @dataclass
    class NanConfig(FineTuneConfig):
        steps: int = 400
        batch_size: int = 16


    class NanLoss(FineTuningMethod):
        name = "nan-loss"
        paper = "test"
        Config = NanConfig

        def loss(self, model, batch, state, gen):
            r = batch.retain
            loss = model.loss(r.x, model.encode(r.conditions), generator=gen).mean() * float("nan")
            return loss, {"loss": float(loss.detach())}


    class Raises(UnlearningMethod):
        name = "raises"
        paper = "test"

        def unlearn(self, model, request):
            raise RuntimeError("boom in unlearn")


    class Unchanged(UnlearningMethod):
        name = "unchanged"
        paper = "test"

        def unlearn(self, model, request):
            return UnlearnOutcome(model.clone(), steps=0)


    class Overspends(UnlearningMethod):
        name = "overspends"
        paper = "test"

        def unlearn(self, model, request):
            return UnlearnOutcome(model.clone(), steps=10_000)
''')


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("adapters") / "bad_methods.py"
    path.write_text(ADAPTERS)
    return path


def test_broken_methods_fail_their_cells_and_the_grid_goes_on(adapters, tmp_path, capsys):
    out = tmp_path / "r"
    names = ["original"] + [f"{adapters}:{c}" for c in ("NanLoss", "Raises", "Unchanged", "Overspends")]
    code = main(["run", "--tier", "smoke", "--methods", ",".join(names), "--attacks", "none", "--out", str(out),
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    records = {r["method"]["name"]: r for r in load_records(out)}
    assert set(records) == {"original", "nan-loss", "raises", "unchanged", "overspends"}
    assert records["nan-loss"]["status"] == "failed" and "non-finite loss" in records["nan-loss"]["failure"]["reason"]
    assert records["nan-loss"]["metrics"] == {}  # never scored as "forget accuracy 1.000"
    assert records["raises"]["failure"] == {"stage": "unlearn", "reason": "RuntimeError: boom in unlearn"}
    assert "exceeded its budget" in records["overspends"]["failure"]["reason"]
    assert records["unchanged"]["status"] == "ok" and "identical" in records["unchanged"]["warnings"][0]
    failed_lines = [ln for ln in captured.err.splitlines() if ln.startswith("unlearnbench: failed cell:")]
    assert len(failed_lines) == 3 and "3 of 5 cells failed" in captured.err
    assert "FAILED nan-loss seed 0" in captured.out and "(not scored)" in captured.out
    table = (out / "leaderboard.md").read_text()
    assert "FAILED raises" in table and "| raises" not in table  # a failed cell is never a scored row

    # a rerun retries failed cells and reuses the rest
    main(["run", "--tier", "smoke", "--methods", ",".join(names), "--attacks", "none", "--out", str(out),
          "--no-progress"])
    rerun = capsys.readouterr().out
    assert "[original] record exists, skipped" in rerun and "[raises] recomputing: the stored record is failed" in rerun


def test_record_identity_keeps_configs_apart_and_recomputes_a_changed_method(adapters, tmp_path, capsys):
    out = tmp_path / "r"
    src = tmp_path / "mine.py"
    src.write_text(textwrap.dedent('''
        from methods.finetune import Finetune

        class Mine(Finetune):
            name = "mine"
            tier_budgets = {"smoke": {"steps": 3, "batch_size": 16}}
    '''))
    base = ["run", "--tier", "smoke", "--attacks", "none", "--out", str(out), "--no-progress"]
    assert main([*base, "--methods", f"original,{src}:Mine"]) == 0
    assert main([*base, "--methods", f"{src}:Mine", "--set", "lr=1e-5"]) == 0
    mine = sorted(out.glob("mnist-class__c0__mine__seed0__smoke__*.json"))
    assert len(mine) == 2  # the override is another cell, not an overwrite of the first
    configs = {json.loads(p.read_text())["method"]["config"]["lr"] for p in mine}
    assert configs == {1e-5, Finetune_lr()}
    rec = json.loads(mine[0].read_text())
    assert rec["method"]["budget"]["source"] == "adapter tier_budgets" and rec["compute"]["steps"] == 3
    assert rec["method"]["code"]["source_sha256"] and any("mine.py" in f for f in rec["method"]["code"]["files"])
    capsys.readouterr()
    main(["leaderboard", str(out), "--no-write"])
    board = capsys.readouterr().out
    assert "mine [lr=1e-05]" in board and f"mine [lr={Finetune_lr()}]" in board

    # documentation only (a docstring, a comment): the same code, so the record stands
    src.write_text(src.read_text().replace("class Mine(Finetune):", 'class Mine(Finetune):\n    """Departs from X."""  # see Y'))
    assert main([*base, "--methods", f"{src}:Mine"]) == 0
    assert "record exists, skipped" in capsys.readouterr().out
    src.write_text(src.read_text() + "    extra = 1\n")  # the method's code changes → its record is stale
    assert main([*base, "--methods", f"{src}:Mine"]) == 0
    assert "recomputing: stale: the method's code changed" in capsys.readouterr().out


def Finetune_lr() -> float:
    from methods.finetune import Finetune

    return Finetune.Config().lr


@pytest.mark.parametrize("args, message", [
    (["--methods", "finetune", "--set", "stepz=4"], "unknown option 'stepz' (did you mean 'steps'?)"),
    (["--methods", "finetune", "--set", "lr=abc"], "lr must be a float, got 'abc'"),
    (["--methods", "finetune,neggrad", "--set", "lr=1e-4"], "name the method as METHOD.lr=VALUE"),
    (["--methods", "finetune", "--set", "neggrad.lr=1e-4"], "does not include"),
    (["--forget-class", "0,x"], "--forget-class must be comma-separated integers"),
])
def test_bad_overrides_are_one_line_errors(args, message, tmp_path, capsys):
    assert main(["run", "--tier", "smoke", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unlearnbench: error:") and message in err[0], err


def _env(cache: Path | None = None) -> dict[str, str]:
    """The child's environment, read when the test runs (the session's cache folder the conftest sets, or
    ``cache``: an empty one, so that no cached sample or attack result shortens the cell)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **({"UNLEARNBENCH_CACHE": str(cache)} if cache else {})}


def _run_until(out: Path, methods: str, attacks: str, pattern: str,
               cache: Path | None = None) -> tuple[list[str], subprocess.Popen]:
    """A smoke run in a child process, returned (command, process) once a file matching ``pattern`` is in
    ``out`` (or the process ended, or 10 minutes passed)."""
    cmd = [sys.executable, "-m", "benchmark.cli", "run", "--tier", "smoke", "--methods", methods,
           "--attacks", attacks, "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(cache),
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list(out.glob(pattern)) and proc.poll() is None:
        time.sleep(0.05)
    return cmd, proc


def test_sigkill_mid_grid_loses_nothing_finished_and_corrupts_nothing(tmp_path):
    out = tmp_path / "r"
    cmd, proc = _run_until(out, "original,finetune,neggrad", "none", "*.json")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = sorted(out.glob("*.json"))
    assert first, "no record was written before the deadline"
    stamps = {p: p.stat().st_mtime_ns for p in first}
    for p in first:
        json.loads(p.read_text())  # every record on disk is whole
    load_records(out)  # a half-written temp file (hidden, .tmp) is never read as a record
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert {r["method"]["name"] for r in load_records(out)} == {"original", "finetune", "neggrad"}
    for p, stamp in stamps.items():
        assert p.stat().st_mtime_ns == stamp, f"{p.name} was recomputed"
    assert "record exists, skipped" in rerun.stdout


def test_sigterm_mid_cell_leaves_no_side_files_without_a_record(tmp_path):
    """SIGTERM (timeout, a scheduler) stops a run as Ctrl-C does: the cell in flight has written its sample grid
    but not its record, and takes the grid with it; exit 130 and one line."""
    out = tmp_path / "r"
    _, proc = _run_until(out, "original", "loss_threshold,relearning", "*.png", cache=tmp_path / "cache")
    assert proc.poll() is None and not list(out.glob("*.json")), "the cell ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted; finished records are kept" in err, err[-3000:]
    assert not [p for p in out.iterdir() if not p.with_suffix(".json").exists()], list(out.iterdir())


def test_an_overlay_card_adds_budgets_without_changing_the_table(tmp_path, capsys):
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("extends: mnist-class\ntiers:\n  smoke:\n    methods:\n      finetune: {steps: 2, batch_size: 16}\n")
    out = tmp_path / "r"
    base = ["run", "--tier", "smoke", "--methods", "finetune", "--attacks", "none", "--out", str(out), "--no-progress"]
    assert main(base) == 0
    assert main([*base[:1], "--scenario", str(overlay), *base[1:]]) == 0
    recs = load_records(out)
    assert len({r["scenario"]["config_hash"] for r in recs}) == 1  # one table identity
    over = next(r for r in recs if r["scenario"].get("overlay"))
    assert over["method"]["config"]["steps"] == 2 and over["scenario"]["overlay"]["methods"] == ["finetune"]
    capsys.readouterr()
    main(["leaderboard", str(out), "--no-write"])
    board = capsys.readouterr().out
    assert board.count("mnist-class v2") == 1 and "finetune [batch_size=16, steps=2]" in board

    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: mnist-class\nsampling: {guidance: 5}\n")
    assert main(["run", "--scenario", str(bad), "--tier", "smoke", "--out", str(out)]) == 2
    assert "may only set" in capsys.readouterr().err


def test_leaderboard_merges_comparable_baselines_and_refuses_the_rest(tmp_path, capsys):
    import shutil

    mine, shared = tmp_path / "mine", tmp_path / "shared"
    assert main(["run", "--tier", "smoke", "--methods", "finetune", "--attacks", "none", "--out", str(mine),
                 "--no-progress"]) == 0
    assert main(["run", "--tier", "smoke", "--methods", "original,finetune", "--attacks", "none", "--out",
                 str(shared), "--no-progress"]) == 0
    other = next(shared.glob("*original*.json"))
    rec = json.loads(other.read_text())
    rec["scenario"]["config_hash"], rec["scenario"]["version"] = "0" * 16, 1
    (shared / "old-card.json").write_text(json.dumps(rec))
    shutil.copy(other.with_suffix(".png"), shared / "old-card.png")
    capsys.readouterr()
    assert main(["leaderboard", str(mine), str(shared), "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "rows from" in out and "original" in out.split("rows from")[1]
    assert "already has this cell" in out  # shared finetune: the author's own record is used
    assert "card v1 config 0000000000000000 differs" in out
