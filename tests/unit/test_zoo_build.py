"""``zoo.build`` writes an entry atomically and clears what a build killed by a signal left behind."""

from __future__ import annotations

import json

import torch

from benchmark import zoo
from benchmark.zoo import recipes


class _TinyNet(torch.nn.Linear):
    config = {"in_features": 2, "out_features": 1}


def test_a_killed_builds_temp_folder_is_cleared_and_the_entry_lands_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "train_judge", lambda recipe, show_progress: (_TinyNet(2, 1), {"acc": 1.0}))
    stale = tmp_path / ".mnist-judge.killed01"  # SIGTERM/SIGKILL skip the except clause that removes it
    stale.mkdir()
    other = tmp_path / ".mnist-unet-base.running"  # another entry's build is left alone
    other.mkdir()
    final = zoo.build("mnist-judge", out_root=tmp_path, show_progress=False)
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mnist-unet-base.running", "mnist-judge"]
    manifest = json.loads((final / "recipe.json").read_text())
    assert manifest["quality"] == {"acc": 1.0} and len(manifest["sha256"]) == 64
