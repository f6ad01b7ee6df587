"""The Dask executor (local 2-worker cluster) writes the same records as the in-process loop."""

from __future__ import annotations

import json

import pytest

from benchmark.cli import main

pytest.importorskip("distributed")

GRID = ["run", "--tier", "smoke", "--methods", "original,finetune", "--seeds", "0,1", "--attacks", "none",
        "--no-progress"]


def _numbers(folder) -> dict[str, dict]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("kind") == "unlearnbench.result":
            out[path.name] = {"metrics": {k: v["value"] for k, v in rec["metrics"].items()},
                              "fingerprint": rec["model"]["fingerprint"], "config": rec["method"]["config"],
                              "identity": rec["identity"], "steps": rec["compute"]["steps"]}
    return out


def test_dask_records_equal_the_in_process_records(tmp_path, capsys):
    local, dask = tmp_path / "local", tmp_path / "dask"
    # bitwise equality needs the same torch thread count on both sides (CPU reductions are ordered by it)
    assert main(["--threads", "1", *GRID, "--out", str(local)]) == 0
    assert main(["--threads", "1", *GRID, "--out", str(dask), "--executor", "dask", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "dask: local cluster, 2 worker process(es)" in out and "dask: 4 cells in" in out
    a, b = _numbers(local), _numbers(dask)
    assert len(a) == 4 and a == b
    board = lambda folder: [ln for ln in (folder / "leaderboard.md").read_text().splitlines() if "|" in ln]  # noqa: E731
    strip = lambda rows: [r.rsplit("|", 5)[0] for r in rows]  # noqa: E731 - drop the time/cost columns
    assert strip(board(local)) == strip(board(dask))


def test_dask_needs_its_flags_together(tmp_path, capsys):
    assert main([*GRID, "--out", str(tmp_path), "--workers", "2"]) == 2
    assert "--scheduler and --workers need --executor dask" in capsys.readouterr().err
