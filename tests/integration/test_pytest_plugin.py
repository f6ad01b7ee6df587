"""The pytest plugin and the shipped suites, as a method author uses them: real smoke cells, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

USER_TESTS = textwrap.dedent('''
    def test_forgets(unlearnbench):
        r = unlearnbench.run("finetune", scenario="mnist-class", tier="smoke", seeds=[0])
        assert r["forget_accuracy"].upper <= 1.0        # the CI bound, not just the mean
        assert r["fid"].value <= 10 * r.baseline("original")["fid"].value


    def test_a_broken_bound_prints_the_rows(unlearnbench):
        r = unlearnbench.run("finetune", scenario="mnist-class", tier="smoke", seeds=[0])
        r.baseline("original")
        assert r["forget_accuracy"].upper <= -1.0
''')


def _pytest(args: list[str], cwd, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=900)


def test_plugin_runs_cells_caches_records_and_reports_rows(tmp_path):
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    results = tmp_path / "records"
    first = _pytest(["test_user.py", f"--unlearnbench-results={results}"], tmp_path)
    assert "1 failed, 1 passed" in first.stdout, first.stdout[-3000:]
    assert "unlearnbench rows (method, then its baselines)" in first.stdout
    report = first.stdout.split("unlearnbench rows")[1]
    assert "finetune" in report and "original" in report and "forget_accuracy" in report
    records = sorted(results.glob("*.json"))
    assert {p.name.split("__")[2] for p in records} == {"finetune", "original"}  # baselines computed once
    stamps = {p: p.stat().st_mtime_ns for p in records}

    again = _pytest(["test_user.py", f"--unlearnbench-results={results}"], tmp_path)
    assert "1 failed, 1 passed" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in sorted(results.glob("*.json"))} == stamps  # reused across runs


def test_plugin_autoload_can_be_disabled_and_loaded_by_name(tmp_path):
    (tmp_path / "test_user.py").write_text(USER_TESTS.split("\n\n\n")[0])
    off = _pytest(["test_user.py"], tmp_path, {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "fixture 'unlearnbench' not found" in off.stdout
    on = _pytest(["test_user.py", "-p", "benchmark.pytest_plugin", f"--unlearnbench-results={tmp_path / 'r'}"],
                 tmp_path, {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "1 passed" in on.stdout, on.stdout[-3000:]


def test_shipped_suite_tests_a_registered_method(tmp_path):
    res = _pytest(["--pyargs", "benchmark.suites", "-k", "finetune or neggrad", "-q",
                   f"--unlearnbench-results={tmp_path / 'r'}"], tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "4 passed" in res.stdout, res.stdout[-3000:]
