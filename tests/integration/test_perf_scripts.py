"""The GPU performance script's CPU path (issue: "without a GPU, the script must still run on CPU with a tiny
config"): one timed EraseDiff outer step on the tiny Stable Diffusion, with its FLOP count and MFU row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_mfu_script_runs_on_cpu_and_its_flop_count_matches_the_unet_passes(tmp_path):
    rows = tmp_path / "rows.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "perf/sd_erasediff_mfu.py", "--device", "cpu", "--batch", "2", "--steps", "1",
                           "--warmup", "0", "--threads", "1", "--json", str(rows)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(rows.read_text().splitlines()[-1])
    assert (row["config"].startswith("tiny"), row["device"], row["batch"], row["inner_steps"]) == (True, "cpu", 2, 2)
    # (K + 2) forward+backward passes and one forward pass of the UNet, each on the batch
    assert (row["forward_images_per_step"], row["backward_images_per_step"]) == (10.0, 8.0)
    assert abs(row["unet_flops_per_step"] / row["expected_unet_flops"] - 1) < 0.05
    assert row["s_per_step"] > 0 and 0 < row["mfu"] < 1 and 0 < row["unet_only_mfu"] < 1
    assert "| tiny" in done.stdout and "MFU %" in done.stdout
