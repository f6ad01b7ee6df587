"""Record identity, thread choice, expectations and row labels: the pieces under run/leaderboard/suites."""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import pytest

from benchmark.expectations import check_expectation, parse_expectation
from benchmark.identity import behaviour_source, cell_key, code_identity, same_code
from benchmark.threads import choose_threads
from reports.leaderboard import label_rows


def test_cell_key_tracks_card_config_and_cap():
    base = cell_key("h1", "m", {"lr": 1e-4}, None)
    assert base == cell_key("h1", "m", {"lr": 1e-4}, None)
    assert len({base, cell_key("h2", "m", {"lr": 1e-4}, None), cell_key("h1", "m", {"lr": 1e-5}, None),
                cell_key("h1", "m", {"lr": 1e-4}, 4), cell_key("h1", "n", {"lr": 1e-4}, None)}) == 5


def test_code_identity_changes_with_the_source(tmp_path):
    src = tmp_path / "adapter_mod.py"
    src.write_text("from methods.finetune import Finetune\n\nclass A(Finetune):\n    name = 'a'\n")

    def load():
        spec = importlib.util.spec_from_file_location("adapter_mod", src)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["adapter_mod"] = mod
        spec.loader.exec_module(mod)
        return code_identity(mod.A)

    first = load()
    assert any(f.endswith("methods/finetune.py") for f in first["files"]) and "methods/base.py" in first["files"]
    assert not any("api.py" in f for f in first["files"])  # the public contract is not the method's code
    src.write_text(src.read_text() + "# edited\n")  # documentation: other bytes, the same code
    commented = load()
    assert commented["source_sha256"] != first["source_sha256"]
    assert commented["behaviour_sha256"] == first["behaviour_sha256"] and same_code(first, commented)
    src.write_text(src.read_text().replace("name = 'a'", "name = 'b'"))  # code: stale by both hashes
    changed = load()
    assert changed["behaviour_sha256"] != first["behaviour_sha256"] and not same_code(first, changed)
    assert not same_code({"source_sha256": first["source_sha256"]}, commented)  # an old record: bytes only


def test_behaviour_source_sets_documentation_aside_and_nothing_else():
    plain = "def f(x):\n    return x + 1\n"
    documented = ('"""Module."""\n# a comment\ndef f(x):  # trailing\n    """Adds one (departs from the paper: none)."""\n'
                  '    "a note"\n    return (x +\n            1)\n')
    assert behaviour_source(documented) == behaviour_source(plain)
    assert behaviour_source("class A:\n    \"\"\"Only a docstring.\"\"\"\n") == "class A:\n    pass"
    assert behaviour_source(plain) != behaviour_source(plain.replace("+ 1", "+ 2"))
    assert behaviour_source("x = 'a string value'\n") != behaviour_source("x = 'another'\n")  # data, not a note
    assert behaviour_source("f('log message')\n") != behaviour_source("f('other message')\n")


@pytest.mark.parametrize("cores, busy, workers, threads", [(2, 0, 1, 2), (2, 1, 1, 1), (2, 3, 1, 1), (8, 2, 2, 3),
                                                           (16, 0, 4, 4), (1, 0, 4, 1)])
def test_threads_never_exceed_the_free_cores(cores, busy, workers, threads):
    assert choose_threads(workers, cores=cores, busy=busy)[0] == threads


class _Row:
    method = "mine"

    def __init__(self, values, baselines=None):
        self.values, self.baselines = values, baselines or {}

    def __getitem__(self, metric):
        return SimpleNamespace(value=self.values[metric])

    def baseline(self, name):
        return self.baselines[name]


def test_expectations_parse_and_check():
    assert parse_expectation("<= 0.5 * original") == ("<=", 0.5, "original")
    assert parse_expectation(">= 0.8") == (">=", 1.0, 0.8)
    assert parse_expectation("< 1e-3") == ("<", 1.0, 1e-3)
    with pytest.raises(ValueError, match="OP"):
        parse_expectation("about the original")
    row = _Row({"forget_accuracy": 0.3}, {"original": _Row({"forget_accuracy": 1.0})})
    assert check_expectation(row, "forget_accuracy", "<= 0.5 * original") == ""
    miss = check_expectation(row, "forget_accuracy", "<= 0.1")
    assert "expected <= 0.1" in miss and "0.3" in miss


def _rec(name, config, cap=None):
    return {"method": {"name": name, "config": config}, "compute": {"max_steps": cap}}


def test_rows_with_several_configs_are_labelled_by_what_differs():
    recs = label_rows([_rec("a", {"lr": 1, "steps": 4}), _rec("a", {"lr": 2, "steps": 4}), _rec("b", {"lr": 1}),
                       _rec("c", {"lr": 1}), _rec("c", {"lr": 1}, cap=4)])
    names = [r["method"]["name"] for r in recs]
    assert names == ["a [lr=1]", "a [lr=2]", "b", "c [cap=None]", "c [cap=4]"]
