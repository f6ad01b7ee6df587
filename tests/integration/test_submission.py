"""The submission flow: new-method scaffolding, check-method, and an out-of-tree entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from benchmark.cli import main


def test_new_method_scaffold_passes_check_method(tmp_path, capsys):
    assert main(["new-method", "my-method", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "my_method.py").is_file() and (tmp_path / "test_my_method.py").is_file()
    assert main(["new-method", "my-method", "--dir", str(tmp_path)]) == 2  # never overwrites
    capsys.readouterr()
    target = f"{tmp_path / 'my_method.py'}:MyMethod"
    # not ready while the citation is a TODO: that check fails, and says what to do
    assert main(["check-method", target, "--out", str(tmp_path / "records")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "replace the TODO in `paper`" in out and "ready to submit" not in out
    source = (tmp_path / "my_method.py").read_text()
    (tmp_path / "my_method.py").write_text(source.replace('paper = "TODO: authors, title, venue year"',
                                                          'paper = "Doe et al., A method, Venue 2026"'))
    code = main(["check-method", target, "--set", "steps=3", "--set",
                 "batch_size=16", "--out", str(tmp_path / "records")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "9/9 checks passed" in out and "smoke tier runs end to end" in out
    assert len(list((tmp_path / "records").glob("mnist-class__c0__my-method__seed0__smoke__*.json"))) == 1


def test_check_method_fails_a_broken_adapter(tmp_path, capsys):
    (tmp_path / "broken.py").write_text(textwrap.dedent('''
        from methods.finetune import Finetune

        class Broken(Finetune):
            name = "broken"
            paper = ""          # missing citation
    '''))
    assert main(["check-method", str(tmp_path / "broken.py")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "set `paper`" in out


def test_bad_check_method_target_is_one_line(tmp_path, capsys):
    assert main(["check-method", str(tmp_path / "nope.py")]) == 2
    assert "no such adapter file" in capsys.readouterr().err


def test_out_of_tree_entry_point_runs_without_editing_the_repo(tmp_path):
    """A throwaway distribution on sys.path declares an unlearnbench.methods entry point; a fresh
    process discovers it through importlib.metadata, lists it and runs it on the smoke tier."""
    site = tmp_path / "site"
    (site / "ub_plugin_demo").mkdir(parents=True)
    (site / "ub_plugin_demo" / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass

        from methods.base import FineTuneConfig, FineTuningMethod


        @dataclass
        class PluginConfig(FineTuneConfig):
            steps: int = 3
            batch_size: int = 16


        class PluginMethod(FineTuningMethod):
            name = "plugin-demo"
            paper = "test plug-in"
            Config = PluginConfig

            def loss(self, model, batch, state, gen):
                r = batch.retain
                return model.loss(r.x, model.encode(r.y), generator=gen).mean(), {}
    '''))
    dist = site / "ub_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ub-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[unlearnbench.methods]\nplugin-demo = ub_plugin_demo:PluginMethod\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "benchmark.cli"]
    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0 and "plugin-demo" in listed.stdout and "ub-plugin-demo" in listed.stdout
    ran = subprocess.run([*cli, "run", "--tier", "smoke", "--methods", "plugin-demo", "--out", str(tmp_path / "r"),
                          "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert len(list((tmp_path / "r").glob("mnist-class__c0__plugin-demo__seed0__smoke__*.json"))) == 1
